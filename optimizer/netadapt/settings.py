"""NetAdapt's settings and inputs: :class:`NetAdaptSettings`, the budgets (:func:`parse_budget`), the resources'
units, the channel-step grid, and :class:`NetAdaptError` for a setting or input that cannot work."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from harness.errors import ChameleonError

RESOURCE_UNITS = {"latency": "ms", "energy": "mJ", "macs": "MMACs"}


class NetAdaptError(ChameleonError):
    """A NetAdapt setting or input that cannot work (a budget above the start, a run folder of another run...)."""


@dataclass(frozen=True)
class NetAdaptSettings:
    """How NetAdapt runs; everything but the budgets is part of a run's identity (a resumed run must match)."""

    resource: str = "latency"  # latency (ms) | energy (mJ) | macs (MMACs)
    initial_reduction: float | None = None  # ΔR_0 in the resource's unit; None: initial_fraction of the start
    # NetAdapt's 0.5 ms for the small MobileNetV1 is about 4% of its latency; with decay 0.96 the schedule can
    # remove ΔR_0 / (1 − decay) = all of it in the limit, half of it in 17 iterations.
    initial_fraction: float = 0.04
    decay: float = 0.96  # NetAdapt §4.1
    channel_step: int = 8  # the device profile's step: channel counts are multiples of it
    short_term_steps: int = 40  # mini-batches of the short-term fine-tune (NetAdapt: 10k-40k on ImageNet)
    short_term_lr: float = 0.01  # constant (the paper's short-term rate is 10x below the long-term one)
    long_term_epochs: int = 5
    long_term_lr: float = 0.05  # cosine to 0
    batch_size: int = 64
    selection_per_class: int = 20  # training images per class held back to pick proposals (§4.1 holds 10 per class)
    max_iterations: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.resource not in ("latency", "energy", "macs"):
            problems.append(f"resource must be latency, energy or macs (got {self.resource!r})")
        if self.initial_reduction is not None and not (self.initial_reduction > 0):
            problems.append(f"initial reduction must be > 0 (got {self.initial_reduction!r})")
        if not (0 < self.initial_fraction < 1):
            problems.append(f"initial fraction must be in (0, 1) (got {self.initial_fraction!r})")
        if not (0 < self.decay <= 1):
            problems.append(f"decay must be in (0, 1] (got {self.decay!r})")
        for name in ("channel_step", "short_term_steps", "long_term_epochs", "selection_per_class", "max_iterations"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                problems.append(f"{name.replace('_', ' ')} must be an integer >= 1 (got {getattr(self, name)!r})")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            problems.append(f"batch size must be an integer >= 2 (got {self.batch_size!r})")
        for name in ("short_term_lr", "long_term_lr"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                problems.append(f"{name.replace('_', ' ')} must be > 0 (got {getattr(self, name)!r})")
        if problems:
            raise NetAdaptError("netadapt settings: " + "; ".join(problems))

    def reduction(self, iteration: int, start: float) -> float:
        """ΔR_i: how much iteration ``i`` tightens the constraint."""
        first = self.initial_reduction if self.initial_reduction is not None else self.initial_fraction * start
        return first * self.decay ** iteration

    def short_term(self) -> Any:
        from optimizer.training.settings import TrainingSettings

        return TrainingSettings(epochs=1, batch_size=self.batch_size, lr=self.short_term_lr, seed=self.seed)

    def long_term(self) -> Any:
        from optimizer.training.settings import TrainingSettings

        return TrainingSettings(epochs=self.long_term_epochs, batch_size=self.batch_size, lr=self.long_term_lr,
                                seed=self.seed)


def parse_budget(text: str, resource: str) -> tuple[float, bool]:
    """``"5ms"``, ``"30mJ"``, ``"12MMACs"``, a plain number (the resource's unit) or ``"60%"`` (of the start).

    Returns (value, relative): relative values are fractions of the initial network's resource.
    """
    raw = str(text).strip()
    unit = RESOURCE_UNITS[resource]
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(%|ms|mj|mmacs|m)?", raw.lower())
    if not match:
        raise NetAdaptError(f"budget {raw!r}: expected a number with {unit} or %, e.g. 5{unit} or 60%")
    value, suffix = float(match.group(1)), match.group(2)
    if suffix == "%":
        if not 0 < value < 100:
            raise NetAdaptError(f"budget {raw!r}: a percentage of the initial network must be in (0, 100)")
        return value / 100.0, True
    expected = {"latency": ("ms",), "energy": ("mj",), "macs": ("mmacs", "m")}[resource]
    if suffix is not None and suffix not in expected:
        raise NetAdaptError(f"budget {raw!r}: the resource is {resource}, give it in {unit}")
    if value <= 0:
        raise NetAdaptError(f"budget {raw!r} must be > 0")
    return value, False


def grid_below(channels: int, step: int, include_current: bool = False) -> list[int]:
    """Counts on the step grid below ``channels``, largest first (``channels`` itself first if asked)."""
    below = [c for c in range((channels - 1) // step * step, 0, -step)]
    return ([channels] if include_current else []) + below
