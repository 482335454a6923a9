"""A NetAdapt run's inputs, :class:`RunInputs`: the fields of :class:`~optimizer.netadapt.loop.NetAdaptRun`, and
what every part of the run (the loop, the end-to-end measurement, the long-term trainings) reads through them: the
resource's unit, the table's estimate, the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.signature import OpSignature
from optimizer.netadapt.settings import RESOURCE_UNITS, NetAdaptSettings


@dataclass
class RunInputs:
    """Everything one NetAdapt run needs.

    ``table`` is the resource model (:mod:`optimizer.netadapt.layer_tables`);
    ``profile`` (a device profile, or None) measures whole networks end to end
    (latency only) and, through the table, missing layer entries;
    ``baselines`` are width multipliers trained from scratch with the
    original network's training plus the long-term fine-tune's epochs.
    """

    model: Path
    out: Path
    budgets: Sequence[str | float]
    table: Any
    data: Any  # an ImageDataset
    settings: NetAdaptSettings = field(default_factory=NetAdaptSettings)
    profile: Any = None
    baselines: Sequence[float] = (0.25, 0.5, 0.75, 1.0)
    calibration: int = 16  # random prunings measured end to end to fit the network correction (latency, with a device)
    workers: int = 1
    cluster: str | None = None  # fine-tune on this Ray cluster ("local" or the head's HOST:PORT) instead of `workers`
    console: Any = None  # rich console for steps and progress (stderr), or None

    @property
    def unit(self) -> str:
        return RESOURCE_UNITS[self.settings.resource]

    def _estimate(self, units: Sequence[OpSignature]) -> Any:
        return self.table.estimate(units)

    # ---- console
    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, soft_wrap=True)

    def _progress(self, label: str) -> Any:
        from optimizer.progress import ProgressContext

        # A bar on a terminal; in a log file, a plain line at least every 20 s (nothing for a short step).
        return ProgressContext(self.console, label)
