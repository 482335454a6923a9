"""A power trace: current and voltage sampled at a fixed rate (a Monsoon's main channel, or an import)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Trace:
    """Samples of the supply current and voltage, ``sample_rate_hz`` apart.

    Time is derived from the sample index and the rate (the Monsoon package's
    own time column is not reliable); ``start_time_s`` places sample 0 on the
    host's clock (``time.time()``) when the capture knows it, so the host's
    start/stop timestamps of a workload can be matched against the trace.
    """

    current_ma: np.ndarray
    voltage_v: np.ndarray
    sample_rate_hz: float
    start_time_s: float | None = None
    dropped_samples: int = 0
    source: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        current = np.asarray(self.current_ma, dtype=np.float64)
        voltage = np.asarray(self.voltage_v, dtype=np.float64)
        if current.ndim != 1 or voltage.shape != current.shape:
            raise ValueError(f"current and voltage must be 1-D of one length, got {current.shape} and {voltage.shape}")
        if not (np.isfinite(self.sample_rate_hz) and self.sample_rate_hz > 0):  # NaN passes `> 0`'s negation
            raise ValueError(f"sample rate must be a finite number > 0, got {self.sample_rate_hz}")
        object.__setattr__(self, "current_ma", current)
        object.__setattr__(self, "voltage_v", voltage)

    @property
    def samples(self) -> int:
        return int(self.current_ma.size)

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate_hz

    @property
    def times_s(self) -> np.ndarray:
        """Seconds since sample 0."""
        return np.arange(self.samples) / self.sample_rate_hz

    @property
    def power_mw(self) -> np.ndarray:
        return self.current_ma * self.voltage_v
