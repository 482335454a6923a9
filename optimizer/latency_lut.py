"""Network latency from a device's operator LUT (ChamNet Eq. 7: t_net = Σ t_operator).

Each LUT entry was timed as its own model, so each includes the runtime's fixed
per-invocation cost once; a network pays it once in all.  The estimate
therefore subtracts the LUT's measured overhead (its identity-model row) from
every entry and adds it back once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

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


# ------------------------------------------------------------ many architectures at once
@dataclass(frozen=True)
class LatencyPrediction:
    latency_ms: np.ndarray  # [N]
    interpolated: np.ndarray  # [N] bool: some unit of the architecture was not in the LUT and was interpolated
    interpolated_signatures: tuple[str, ...]


class LatencyPredictor:
    """F(x, plat): network latency of many architectures of a search space from one device's LUT, vectorised.

    A search space describes its network as *slots* whose operator depends on
    a few genes.  For each slot, the distinct gene combinations among the
    architectures are looked up once (cached across calls) and gathered back,
    so the cost grows with the number of distinct units, not architectures.
    The LUT's per-invocation overhead is counted once per network.

    A unit missing from the LUT is an error listing the missing signatures
    and the sweep that measures them; with ``interpolate=True`` it is instead
    estimated from the nearest measured entry of the same kind and shape
    family, scaled by MACs, and the architectures using it are flagged.
    """

    def __init__(self, lut: LutLatencyModel, space: Any, interpolate: bool = False) -> None:
        self.lut, self.space, self.interpolate = lut, space, interpolate
        self._cache: list[dict[tuple[int, ...], tuple[float, bool]]] = [{} for _ in space.slots]
        self._neighbours: dict[tuple, list[tuple[float, float]]] | None = None
        self.interpolated_keys: set[str] = set()

    def _unit_us(self, signature: OpSignature) -> tuple[float, bool]:
        value = self.lut.median_us.get(signature.key)
        if value is not None:
            return value, False
        if not self.interpolate:
            return float("nan"), False
        return self._interpolated_us(signature), True

    def _interpolated_us(self, signature: OpSignature) -> float:
        if self._neighbours is None:
            from harness.signature import IDENTITY, parse_signature

            self._neighbours = {}
            for key, median in self.lut.median_us.items():
                other = parse_signature(key)
                if other.kind == IDENTITY:
                    continue
                for family in _families(other):
                    self._neighbours.setdefault(family, []).append((float(max(other.macs, 1)), median))
        # The closest family that has entries: same kind and shape rules, then same kind, then same dtype.
        candidates = next((self._neighbours[f] for f in _families(signature) if f in self._neighbours), None)
        if not candidates:
            raise MissingSignatures(f"{self.lut.source}: nothing to interpolate {signature.key} from (no {signature.dtype} entries)")
        macs = float(max(signature.macs, 1))
        nearest_macs, nearest_us = min(candidates, key=lambda c: abs(np.log(c[0]) - np.log(macs)))
        self.interpolated_keys.add(signature.key)
        return nearest_us * macs / nearest_macs

    def predict(self, X: np.ndarray) -> LatencyPrediction:
        X = np.atleast_2d(np.asarray(X))
        overhead = self.lut.overhead_us
        total = np.full(X.shape[0], overhead, dtype=np.float64)
        flagged = np.zeros(X.shape[0], dtype=bool)
        missing: set[str] = set()
        for slot, cache in zip(self.space.slots, self._cache):
            counts = np.asarray(slot.count(X))
            present = counts > 0
            if not present.any():
                continue
            params = np.asarray(slot.params(X))
            rows, inverse = _unique_rows(params)
            values = np.empty(len(rows))
            guessed = np.zeros(len(rows), dtype=bool)
            for i, row in enumerate(map(tuple, rows.tolist())):
                if row not in cache:
                    cache[row] = self._unit_us(slot.signature(row))
                values[i], guessed[i] = cache[row]
            inverse = inverse.reshape(-1)
            unit = values[inverse]
            absent_in_lut = np.isnan(unit) & present
            if absent_in_lut.any():
                for i in np.unique(inverse[absent_in_lut]):
                    missing.add(slot.signature(tuple(rows[i].tolist())).key)
                continue
            total += np.where(present, counts * (unit - overhead), 0.0)
            flagged |= guessed[inverse] & present
        if missing:
            keys = sorted(missing)
            device = self.lut.device or "DEVICE"
            raise MissingSignatures(
                f"{self.lut.source}: {len(keys)} signature(s) of {self.space.name} are not in the LUT, e.g. {keys[0]}; "
                f"measure them with: bench sweep --device {device} --plan {self.space.name} --out {self.lut.source} "
                f"(or pass --interpolate to estimate them, flagged)"
            )
        return LatencyPrediction(total / 1000.0, flagged, tuple(sorted(self.interpolated_keys)))


def _unique_rows(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(params, axis=0, return_inverse=True)``, fast for small non-negative integer rows.

    Each row is packed into one int64 (mixed radix over the columns' ranges)
    and deduplicated in 1-D, an order of magnitude faster than a row-wise
    unique; rows that cannot be packed fall back to it.
    """
    params = params.reshape(len(params), -1)
    if params.size and np.issubdtype(params.dtype, np.integer) and params.min() >= 0:
        radix = params.max(axis=0).astype(np.int64) + 1
        if np.prod(radix.astype(np.float64)) < 2**62:
            weights = np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]]).astype(np.int64)
            keys = params.astype(np.int64) @ weights
            unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            return params[first], inverse
    return np.unique(params, axis=0, return_inverse=True)


def _families(signature: OpSignature) -> tuple[tuple, ...]:
    """Interpolation neighbourhoods, closest first: same kind, dtype, kernel, stride and activation; same kind and dtype; same dtype."""
    return (
        (signature.kind, signature.dtype, signature.kernel, signature.stride, signature.activation),
        (signature.kind, signature.dtype),
        (signature.dtype,),
    )
