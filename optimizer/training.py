"""Training sampled architectures for real: the :class:`~optimizer.trainers.Trainer` behind Algorithm 1.

:func:`train_architecture` trains one network of a search space on a data set
(:mod:`optimizer.datasets`) and measures its accuracy on the held-out split
(ChamNet §4: 50 images per class).  :class:`TorchTrainer` trains a batch of
architectures in parallel processes, appends every finished training to an
observations Parquet file at once, and reuses what that file already holds
for the same space, data set, settings and code version: re-running after a
kill trains only what is missing, which makes Algorithm 1 resumable.

Training recipe (:class:`TrainingSettings`).  SGD with Nesterov momentum 0.9,
learning rate 0.1 for batches of 64, weight decay 5e-4, cosine decay to zero
over every step (weight decay on conv and fc weights only), fixed epochs and
seeds: MobileNetV2's own recipe (and ChamNet's, which trains with
PyTorch/Caffe2 on ImageNet), shortened.  AdamW (lr 3e-3, weight decay 0.05,
same schedule) was tried first on digits: lower held-out accuracies at 5
epochs (0.90-0.97 against 0.94-0.98 for 8 random chamnet-mobile-mini
networks) in the same time, so SGD it is; ``optimizer="adamw"`` keeps it
available.  After the last step, batch-norm statistics are recomputed with the
final weights (one pass over the training images, no gradients): a short
training's running averages lag its weights, and without this one-epoch
networks scored chance (0.10) in eval mode with a training loss of 1.3.

Determinism: one thread, ``torch.use_deterministic_algorithms``, the network's
initialisation, the batch order and everything else seeded by
``settings.seed``: the same inputs give bit-identical accuracies, so a resumed
Algorithm 1 makes the very choices an uninterrupted one would have.

Networks whose classifier has more outputs than the data set has classes
(chamnet-mobile's 1000) train with the labels on their first outputs
(cross-entropy over all of them; accuracy is the arg-max over all of them, as
the exported network would be read); fewer outputs than classes is an error.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from optimizer.datasets import ImageDataset, load_dataset
from optimizer.trainers import InvalidObservations, _as_matrix

#: Bump whenever training changes what it computes: observations of another version are not reused.
TRAINING_CODE_VERSION = 1
OBSERVATIONS_FILE = "training-observations"
OBSERVATIONS_VERSION = "1"
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
    trains on digits' 1,297 training images in 12-19 s on one thread (32 px
    networks 6 s, 64 px 12-16 s); 8 random networks scored 0.954-0.974 on the
    held-out 500, and two of them 0.958/0.960/0.964 and 0.972/0.978/0.976 with
    seeds 0/1/2: digits is near saturation, differences are real but small.
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
        if problems:
            raise InvalidSettings("training settings: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

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


# -- one training -----------------------------------------------------------------------------


@contextmanager
def _deterministic(threads: int = 1) -> Iterator[None]:
    """One thread, deterministic kernels, the global RNG left as it was."""
    import torch

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


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


def _resized(images: np.ndarray, resolution: int):
    import torch
    from torch.nn import functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.shape[-1] == resolution:
        return tensor.clone()
    return F.interpolate(tensor, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=tensor.shape[-1] > resolution)


def checkpoint_path(folder: Path, space: Any, genes: Any, settings: TrainingSettings, dataset_id: str) -> Path:
    """Where a trained network's weights go: keyed by space, genes, settings, data set and code version."""
    space = _space(space)
    genes = [int(v) for v in np.asarray(genes).reshape(-1)]
    key = json.dumps([space.name, genes, settings.settings_id, dataset_id, code_version()])
    return Path(folder) / f"{space.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def train_architecture(space_name: str, genes: Sequence[int] | np.ndarray, dataset_spec: str | Path | ImageDataset,
                       settings: TrainingSettings = TrainingSettings(), checkpoint: Path | None = None) -> TrainResult:
    """Train one architecture of a space and measure its held-out accuracy (deterministic, one thread).

    ``dataset_spec`` is a spec for :func:`~optimizer.datasets.load_dataset` or
    a loaded data set; ``checkpoint`` (a file) receives the trained weights.
    """
    import torch

    from optimizer.torch_networks import build_torch_network

    space = _space(space_name)
    x = space._vector(np.asarray(genes))  # a point of the space, or InvalidArchitecture
    data = dataset_spec if isinstance(dataset_spec, ImageDataset) else load_dataset(dataset_spec)
    check_dataset_fits(space, data)
    resolution = space.resolution(x)
    started = time.perf_counter()
    with _deterministic(threads=1):
        torch.manual_seed(settings.seed)
        net = build_torch_network(space, x, seed=settings.seed)
        train_images, train_labels = data.train()
        held_images, held_labels = data.held_out()
        final_loss = fit_network(net, _resized(train_images, resolution), torch.from_numpy(train_labels), settings)
        accuracy = network_accuracy(net, _resized(held_images, resolution), held_labels)
    seconds = time.perf_counter() - started
    result = TrainResult(space=space.name, genes=tuple(int(v) for v in x), accuracy=float(accuracy),
                         epochs=settings.epochs, train_seconds=float(seconds), final_loss=float(final_loss),
                         dataset_id=data.dataset_id, seed=settings.seed, settings_id=settings.settings_id,
                         settings=settings.to_json(), code_version=code_version(),
                         checkpoint=None if checkpoint is None else str(checkpoint))
    if checkpoint is not None:
        _save_checkpoint(Path(checkpoint), net, result)
    return result


def fit_network(net: Any, inputs: Any, labels: Any, settings: TrainingSettings, *, steps: int | None = None,
                schedule: str = "cosine") -> float:
    """Train ``net`` in place on tensors (NCHW inputs at its resolution, int64 labels); the last epoch's mean loss.

    ``settings.epochs`` passes over the data, or exactly ``steps`` mini-batches
    when given (NetAdapt's short-term fine-tune counts iterations), the data
    reshuffled at each pass; ``schedule`` is "cosine" (to 0 over all steps) or
    "constant".  Batch-norm statistics are recomputed at the end when the
    settings say so.  Call under :func:`_deterministic` for repeatable results.
    """
    import torch
    from torch.nn import functional as F

    n = len(labels)
    per_epoch = [slice(i, i + settings.batch_size) for i in range(0, n, settings.batch_size)]
    if n - per_epoch[-1].start < 2:  # batch norm needs 2 images where the last stage is 1x1
        per_epoch.pop()
    if not per_epoch:
        raise InvalidSettings(f"training needs at least 2 images, got {n}")
    total_steps = settings.epochs * len(per_epoch) if steps is None else int(steps)
    if total_steps < 1:
        raise InvalidSettings(f"steps must be >= 1 (got {steps!r})")
    decay, plain = [], []
    for parameter in net.parameters():  # weight decay on conv and fc weights, not on batch-norm or biases
        (plain if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum,
                                    nesterov=settings.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=settings.lr)
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif schedule == "constant":
        scheduler = None
    else:
        raise InvalidSettings(f"schedule must be 'cosine' or 'constant' (got {schedule!r})")
    order = torch.Generator().manual_seed(settings.seed)
    net.train()
    final_loss = math.nan
    taken = 0
    while taken < total_steps:
        permutation = torch.randperm(n, generator=order)
        total, count = 0.0, 0
        for batch in per_epoch[:total_steps - taken]:
            index = permutation[batch]
            loss = F.cross_entropy(net(inputs[index]), labels[index], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(index)
            count += len(index)
            taken += 1
        final_loss = total / count
    if settings.recalibrate_bn:
        _recalibrate_batch_norm(net, inputs, settings.batch_size)
    net.eval()
    return float(final_loss)


def network_accuracy(net: Any, images: Any, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on image tensors and numpy labels, as a fraction."""
    import torch

    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 500):
            correct += int((net(images[i:i + 500]).argmax(dim=1) == torch.from_numpy(np.asarray(labels[i:i + 500]))).sum())
    return correct / len(labels)


def _recalibrate_batch_norm(net: Any, inputs: Any, batch_size: int) -> None:
    """Batch-norm statistics recomputed over the training images with the final weights (no gradients).

    The running averages of a short training mix statistics of weights long
    gone (20 steps per epoch on digits): after one epoch, a network whose
    training loss is 1.3 can score chance in eval mode.  An exact average
    over one pass with the final weights costs a third of an epoch.
    """
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            if len(inputs) - i >= 2:
                net(inputs[i:i + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def _save_checkpoint(path: Path, net: Any, result: TrainResult) -> None:
    import torch

    from harness.atomic import write_atomically

    document = {"format": CHECKPOINT_FORMAT, "version": 1, "space": result.space, "genes": list(result.genes),
                "settings_id": result.settings_id, "settings": result.settings, "dataset_id": result.dataset_id,
                "code_version": result.code_version, "accuracy": result.accuracy, "state_dict": net.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(document, tmp))


def load_trained_network(space: Any, genes: Any, checkpoints: Path, settings: TrainingSettings,
                         dataset_id: str) -> Any | None:
    """The trained network (eval mode) saved by a training with these inputs, or None if there is none.

    ``dataset_id`` is the data set's (``load_dataset(spec).dataset_id``, or the
    observations file's column).  Export the winner with ``.export_onnx(path)``.
    """
    import torch

    from optimizer.torch_networks import build_torch_network

    space = _space(space)
    path = checkpoint_path(checkpoints, space, genes, settings, dataset_id)
    if not path.exists():
        return None
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise InvalidCheckpoint(f"{path}: cannot read the trained network ({type(problem).__name__})") from None
    wanted = [int(v) for v in np.asarray(genes).reshape(-1)]
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise InvalidCheckpoint(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if document.get("space") != space.name or document.get("genes") != wanted:
        raise InvalidCheckpoint(f"{path}: holds another architecture ({document.get('space')}, {document.get('genes')})")
    net = build_torch_network(space, wanted, seed=settings.seed)
    try:
        net.load_state_dict(document["state_dict"])
    except (KeyError, RuntimeError) as problem:
        raise InvalidCheckpoint(f"{path}: weights do not fit the network ({str(problem).splitlines()[0]})") from None
    return net.eval()


# -- the observations file --------------------------------------------------------------------


def observations_schema(gene_names: Sequence[str]):
    import pyarrow as pa

    fields = [pa.field(name, pa.int64(), nullable=False) for name in gene_names]
    fields += [
        pa.field("accuracy", pa.float64(), nullable=False),
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("train_seconds", pa.float64(), nullable=False),
        pa.field("final_loss", pa.float64()),
        pa.field("dataset_id", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("settings_id", pa.string(), nullable=False),
        pa.field("settings", pa.string(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("space", pa.string(), nullable=False),
        pa.field("trained_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    return pa.schema(fields, metadata={"chameleon.file": OBSERVATIONS_FILE,
                                       "chameleon.observations_version": OBSERVATIONS_VERSION})


def read_observations(path: Path, space: Any):
    """The training observations file as a pyarrow Table (None if there is no file yet), checked to be ours."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, space = Path(path), _space(space)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise InvalidObservations(f"{path}: training observations are written as Parquet (.parquet)")
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as problem:
        first = (str(problem).strip().splitlines() or [type(problem).__name__])[0]
        raise InvalidObservations(f"{path}: cannot read observations ({first})") from None
    metadata = table.schema.metadata or {}
    if metadata.get(b"chameleon.file") != OBSERVATIONS_FILE.encode():
        raise InvalidObservations(f"{path}: not a training observations file written by Chameleon "
                                  f"(give --observations a new file)")
    schema = observations_schema(space.gene_names)
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise InvalidObservations(f"{path}: observations of another space or version (no column {missing[0]!r})")
    spaces = set(table.column("space").to_pylist())
    if spaces - {space.name}:
        raise InvalidObservations(f"{path}: holds observations of {', '.join(sorted(spaces))}, not {space.name}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError) as problem:
        raise InvalidObservations(f"{path}: unexpected column types ({problem})") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``FILE.lock`` while the observations file is read, extended and rewritten."""
    lock = path.with_name(path.name + ".lock")
    try:
        handle = open(lock, "a")
    except OSError as problem:
        raise InvalidObservations(f"{lock}: cannot open the lock file ({problem.strerror or problem})") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_observation(path: Path, space: Any, result: TrainResult) -> None:
    """Add one training to the observations file (an atomic rewrite: readers see all of it or none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.atomic import write_atomically

    path, space = Path(path), _space(space)
    schema = observations_schema(space.gene_names)
    row = dict(zip(space.gene_names, result.genes))
    row |= {name: getattr(result, name) for name in schema.names if name not in row}
    new = pa.Table.from_pylist([row], schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        existing = read_observations(path, space)
        table = new if existing is None else pa.concat_tables([existing, new])
        write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def _row_key(genes: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in genes)


# -- parallel training ------------------------------------------------------------------------

_WORKER_DATASET: ImageDataset | None = None


def _worker_init(dataset: ImageDataset, parent: int) -> None:
    import signal

    import torch

    global _WORKER_DATASET
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)
    _WORKER_DATASET = dataset


def _die_with_parent(parent: int) -> None:
    """Make this worker die when the trainer does: a SIGKILLed trainer cannot stop its pool.

    Without this, workers of a killed run go on training queued networks whose
    results nobody records, on the cores the resumed run measures latency on.
    Linux only (prctl PR_SET_PDEATHSIG); elsewhere workers end when they next
    find their queue closed.
    """
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the trainer died before prctl took effect
        os._exit(1)


def _worker_train(space_name: str, genes: list[int], settings: TrainingSettings,
                  checkpoint: str | None) -> TrainResult:
    assert _WORKER_DATASET is not None
    return train_architecture(space_name, genes, _WORKER_DATASET, settings,
                              None if checkpoint is None else Path(checkpoint))


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _first_line(problem: BaseException) -> str:
    text = str(problem).strip()
    return f"{type(problem).__name__}: {text.splitlines()[0]}" if text else type(problem).__name__


@contextmanager
def _worker_pool(dataset: ImageDataset, workers: int) -> Iterator[ProcessPoolExecutor]:
    """Spawned training processes (one thread each, holding ``dataset``, dying with this one).

    Left normally, the pool is joined; left by an error, Ctrl-C or an
    abandoned generator, the trainings in flight are stopped at once.
    """
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(dataset, os.getpid()))
    finished = False
    try:
        yield pool
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            # Join the pool's manager thread now: left for interpreter exit, its wake-up pipe may already be
            # closed, and concurrent.futures' exit hook then prints a traceback after our one-line error.
            pool.shutdown(wait=True)


def run_in_workers(calls: Sequence[tuple[Any, tuple]], dataset: ImageDataset, workers: int,
                   describe: Any, after_death: str = "") -> Iterator[tuple[int, Any]]:
    """Run ``(function, args)`` calls in up to ``workers`` spawned processes; yield ``(index, result)`` as they finish.

    Functions run in the workers with the data set at hand (``_WORKER_DATASET``);
    results that finish together come in call order.  A failure is one
    :class:`TrainingFailed` line naming ``describe(index)`` (``after_death``
    is added when a worker process died), and the calls in flight are stopped.
    """
    with _worker_pool(dataset, min(workers, len(calls))) as pool:
        futures: dict[Future, int] = {pool.submit(function, *args): i for i, (function, args) in enumerate(calls)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.__getitem__):
                i = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise TrainingFailed(f"a training worker process died (killed, or out of memory?) while training "
                                         f"{describe(i)}{after_death}") from None
                except ChameleonError as problem:
                    raise problem from None
                except Exception as problem:
                    raise TrainingFailed(f"training {describe(i)} failed: {_first_line(problem)}") from None
                yield i, result


class TorchTrainer:
    """Trains architectures of ``space`` on a data set, in parallel, recording each in ``observations``.

    ``train(X)`` returns the held-out accuracies of the rows of ``X`` (the
    space's genes), in order.  Architectures the observations file already
    holds for this space, data set, settings and code version are read from it
    (their mean where repeated), not trained again; the rest are trained in
    ``workers`` spawned processes (one thread each) and appended to the file
    one by one as they finish, so a kill loses only the trainings in flight.
    ``checkpoints`` (a folder) keeps each trained network's weights
    (:func:`load_trained_network`).

    Counters: ``n_trained`` (trainings run by this object), ``n_reused``
    (answers read from the file), ``results`` (this object's TrainResults).
    """

    def __init__(self, space: Any, data_spec: str | Path | ImageDataset, settings: TrainingSettings = TrainingSettings(),
                 observations: Path = Path("observations.parquet"), workers: int | None = None,
                 checkpoints: Path | None = None, progress: bool = True) -> None:
        self.space = _space(space)
        self.dataset = data_spec if isinstance(data_spec, ImageDataset) else load_dataset(data_spec)
        check_dataset_fits(self.space, self.dataset)
        self.settings = settings
        self.observations = Path(observations)
        self.workers = available_cores() if workers is None else int(workers)
        if self.workers < 1:
            raise InvalidSettings(f"workers must be >= 1 (got {workers})")
        self.checkpoints = None if checkpoints is None else Path(checkpoints)
        self.progress = progress
        self.code_version = code_version()
        self.n_trained = 0
        self.n_reused = 0
        self.results: list[TrainResult] = []
        read_observations(self.observations, self.space)  # a foreign or corrupt file fails now, not after training

    def known(self) -> dict[tuple[int, ...], float]:
        """Accuracies already observed under this trainer's space, data set, settings and code version."""
        table = read_observations(self.observations, self.space)
        if table is None:
            return {}
        columns = table.to_pydict()
        sums: dict[tuple[int, ...], list[float]] = {}
        for i in range(table.num_rows):
            if (columns["dataset_id"][i] == self.dataset.dataset_id and columns["settings_id"][i] == self.settings.settings_id
                    and columns["code_version"][i] == self.code_version):
                key = _row_key(columns[name][i] for name in self.space.gene_names)
                sums.setdefault(key, []).append(columns["accuracy"][i])
        return {key: float(np.mean(values)) for key, values in sums.items()}

    def train(self, X: np.ndarray) -> np.ndarray:
        X = _as_matrix(X, self.space.dim)
        outside = ~self.space.contains(X)
        if outside.any():
            self.space._vector(X[int(np.argmax(outside))])  # raises InvalidArchitecture naming the genes
        keys = [_row_key(row) for row in X]
        known = self.known()
        todo = list(dict.fromkeys(key for key in keys if key not in known))
        self.n_reused += sum(1 for key in dict.fromkeys(keys) if key in known)
        for result in self._run(todo):
            append_observation(self.observations, self.space, result)
            known[_row_key(result.genes)] = result.accuracy
            self.results.append(result)
            self.n_trained += 1
        return np.array([known[key] for key in keys], dtype=np.float64)

    def _checkpoint(self, key: tuple[int, ...]) -> str | None:
        if self.checkpoints is None:
            return None
        return str(checkpoint_path(self.checkpoints, self.space, key, self.settings, self.dataset.dataset_id))

    def _run(self, todo: list[tuple[int, ...]]) -> Iterator[TrainResult]:
        if not todo:
            return
        bar = self._progress_bar(len(todo))
        try:
            if self.workers == 1:
                for key in todo:
                    try:
                        result = train_architecture(self.space.name, key, self.dataset, self.settings, self._checkpoint(key))
                    except ChameleonError:
                        raise
                    except Exception as problem:
                        raise TrainingFailed(f"training {self._describe(key)} failed: {_first_line(problem)}") from None
                    self._advance(bar, result)
                    yield result
            else:
                yield from self._run_pool(todo, bar)
        finally:
            if bar is not None:
                bar.stop()

    def _run_pool(self, todo: list[tuple[int, ...]], bar: Any) -> Iterator[TrainResult]:
        calls = [(_worker_train, (self.space.name, list(key), self.settings, self._checkpoint(key))) for key in todo]
        for _, result in run_in_workers(calls, self.dataset, self.workers, lambda i: self._describe(todo[i]),
                                        f"; the trainings finished before are kept in {self.observations}"):
            self._advance(bar, result)
            yield result

    def _describe(self, key: tuple[int, ...]) -> str:
        return f"{self.space.name} (" + ", ".join(f"{n}={v}" for n, v in zip(self.space.gene_names, key)) + ")"

    def _progress_bar(self, total: int) -> Any:
        from harness.cli_common import stderr

        if not self.progress or not stderr.is_terminal:  # a bar in a log file is noise (and breaks one-line errors)
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[last]}", style="dim"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), console=stderr, transient=True)
        bar.add_task(f"training {self.space.name} on {self.dataset.name}", total=total, last="")
        bar.start()
        return bar

    @staticmethod
    def _advance(bar: Any, result: TrainResult) -> None:
        if bar is not None:
            bar.update(bar.task_ids[0], advance=1,
                       last=f"{result.genes[0]} px: {result.accuracy:.3f} in {result.train_seconds:.0f} s")
