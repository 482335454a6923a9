"""Network latency from a device's operator LUT (ChamNet Eq. 7: t_net = Σ t_operator).

Each LUT entry was timed as its own model, so each includes the runtime's fixed
per-invocation cost once; a network pays it once in all.  The estimate
therefore subtracts the LUT's measured overhead (its identity-model row) from
every entry and adds it back once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness import lut_store
from harness.errors import ChameleonError
from harness.signature import IDENTITY, OpSignature


class MissingSignatures(ChameleonError):
    """Signatures the LUT has no entry for."""


@dataclass(frozen=True)
class NetworkEstimate:
    latency_us: float
    operator_sum_us: float  # the plain sum of entries, before the overhead correction
    overhead_us: float
    operators: int


class LutLatencyModel:
    """Looks up operator latencies (median µs) of one device's LUT."""

    def __init__(self, median_us: dict[str, float], overhead_us: float, source: str = "", device: str = "") -> None:
        self.median_us = median_us
        self.overhead_us = overhead_us
        self.source = source
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path) -> "LutLatencyModel":
        table = lut_store.read_lut(path)
        keys = table.column("signature").to_pylist()
        medians = table.column("median_us").to_pylist()
        kinds = table.column("kind").to_pylist()
        overhead = next((m for k, m in zip(kinds, medians) if k == IDENTITY), 0.0)
        devices = sorted(set(table.column("device_id").to_pylist()))
        return cls(dict(zip(keys, medians)), overhead, str(path), ",".join(devices))

    def missing(self, signatures: Iterable[OpSignature]) -> list[str]:
        return sorted({s.key for s in signatures if s.key not in self.median_us})

    def estimate(self, signatures: Iterable[OpSignature]) -> NetworkEstimate:
        signatures = list(signatures)
        missing = self.missing(signatures)
        if missing:
            device = self.device or "DEVICE"
            raise MissingSignatures(
                f"{self.source}: {len(missing)} signature(s) not in the LUT, e.g. {missing[0]}; "
                f"measure them with: bench sweep --device {device} --plan PLAN --out {self.source} "
                f"(a plan listing them under 'signatures:')"
            )
        total = sum(self.median_us[s.key] for s in signatures)
        corrected = total - max(len(signatures) - 1, 0) * self.overhead_us
        return NetworkEstimate(latency_us=corrected, operator_sum_us=total, overhead_us=self.overhead_us, operators=len(signatures))
