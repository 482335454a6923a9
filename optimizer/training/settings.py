"""What a training is: its settings (the recipe), the record it leaves, and the checks of a space against a data set.

Training recipe (:class:`TrainingSettings`).  SGD with Nesterov momentum 0.9,
learning rate 0.1 for batches of 64, weight decay 5e-4, cosine decay to zero
over every step (weight decay on conv and fc weights only), fixed epochs and
seeds: MobileNetV2's own recipe (and ChamNet's, which trains with
PyTorch/Caffe2 on ImageNet), shortened.  AdamW (lr 3e-3, weight decay 0.05,
same schedule) was tried first on digits: lower held-out accuracies at 5
epochs (0.90-0.97 against 0.94-0.98 for 8 random chamnet-mobile-mini
networks) in the same time, so SGD it is; ``optimizer="adamw"`` keeps it
available.

Networks whose classifier has more outputs than the data set has classes
(chamnet-mobile's 1000) train with the labels on their first outputs
(cross-entropy over all of them; accuracy is the arg-max over all of them, as
the exported network would be read); fewer outputs than classes is an error.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from harness.errors import ChameleonError
from optimizer.training.datasets import ImageDataset

#: Bump whenever training changes what it computes: observations of another version are not reused.
#: 2: networks train in channels-last layout (1.7x faster; sums in another order: accuracies moved as by a new seed).
TRAINING_CODE_VERSION = 2


CHECKPOINT_FORMAT = "chameleon-trained-network"


class InvalidSettings(ChameleonError):
    """Training settings out of range."""


class DatasetMismatch(ChameleonError):
    """A data set the space's networks cannot be trained on (more classes than classifier outputs)."""


class TrainingFailed(ChameleonError):
    """A training that raised, or a worker process that died."""


class InvalidCheckpoint(ChameleonError):
    """A saved network that is unreadable or belongs to another architecture."""


def code_version() -> str:
    """This training code's version and the torch that ran it (reuse needs both to match)."""
    import torch

    return f"train-{TRAINING_CODE_VERSION}/torch-{torch.__version__}"


@dataclass(frozen=True)
class TrainingSettings:
    """How a network is trained: fixed epochs, batch size, optimiser, schedule and seed.

    Defaults: a median chamnet-mobile-mini network (about 2.3 MMACs, 48 px)
    trained on digits' 1,297 training images in 12-19 s on one thread (32 px
    networks 6 s, 64 px 12-16 s), about half that since issue 17 (4-12 s);
    8 random networks scored 0.954-0.974 on the held-out 500, and two of them
    0.958/0.960/0.964 and 0.972/0.978/0.976 with seeds 0/1/2: digits is near
    saturation, differences are real but small.
    """

    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adamw"
    lr: float = 0.1  # peak learning rate; cosine decay to 0 over all steps
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    recalibrate_bn: bool = True  # recompute batch-norm statistics with the final weights before measuring
    seed: int = 0
    # Train every network at this fraction of its resolution (1: as designed).  A proxy recipe for spaces
    # too costly to train here at full size (chamnet-mobile's 96-224 px): the architecture's depth,
    # widths and kernels are kept and its resolution keeps its rank among the others; the accuracies
    # are of the proxy trainings, and a predictor built on them says so.
    resolution_scale: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            problems.append(f"epochs must be an integer >= 1 (got {self.epochs!r})")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            problems.append(f"batch_size must be an integer >= 2 (got {self.batch_size!r})")
        if self.optimizer not in ("sgd", "adamw"):
            problems.append(f"optimizer must be 'sgd' or 'adamw' (got {self.optimizer!r})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be > 0 (got {self.lr!r})")
        if not (0 <= self.momentum < 1):
            problems.append(f"momentum must be in [0, 1) (got {self.momentum!r})")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0 (got {self.weight_decay!r})")
        if not (0 <= self.label_smoothing < 1):
            problems.append(f"label_smoothing must be in [0, 1) (got {self.label_smoothing!r})")
        if not (math.isfinite(self.resolution_scale) and 0 < self.resolution_scale <= 1):
            problems.append(f"resolution_scale must be in (0, 1] (got {self.resolution_scale!r})")
        if problems:
            raise InvalidSettings("training settings: " + "; ".join(problems))

    def to_json(self) -> str:
        settings = asdict(self)
        if settings["resolution_scale"] == 1.0:  # left out at its default: earlier observations keep their settings_id
            del settings["resolution_scale"]
        return json.dumps(settings, sort_keys=True)

    def training_resolution(self, resolution: int) -> int:
        """The input size a network designed for ``resolution`` is trained at (at least 8 px)."""
        return max(8, int(round(resolution * self.resolution_scale)))

    @property
    def settings_id(self) -> str:
        """Digest of every setting (the seed included): observations are reused only under the same one."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrainResult:
    """One finished training: the held-out accuracy (a fraction) and its provenance."""

    space: str
    genes: tuple[int, ...]
    accuracy: float  # on the held-out split, in [0, 1]
    epochs: int
    train_seconds: float  # network built to accuracy measured, one thread
    final_loss: float  # mean training loss of the last epoch
    dataset_id: str
    seed: int
    settings_id: str
    settings: str  # TrainingSettings as JSON
    code_version: str
    trained_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    checkpoint: str | None = None


def _space(space: Any) -> Any:
    from optimizer.spaces import get_space

    return get_space(space) if isinstance(space, str) else space


def classifier_outputs(space: Any) -> int:
    """Width of the space's classifier (the fc's outputs; the same for every architecture)."""
    space = _space(space)
    return int(space.signatures(space.low)[-1].c_out)


def check_dataset_fits(space: Any, dataset: ImageDataset) -> None:
    space = _space(space)
    outputs = classifier_outputs(space)
    if outputs < dataset.n_classes:
        raise DatasetMismatch(f"{dataset.name}: {dataset.n_classes} classes, but {space.name}'s networks have "
                              f"{outputs} outputs")
