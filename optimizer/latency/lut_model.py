"""Network latency from a device's operator LUT (ChamNet Eq. 7: t_net = Σ t_operator).

Each LUT entry was timed as its own model, so each includes the runtime's fixed
per-invocation cost once; a network pays it once in all.  The estimate
therefore subtracts the LUT's measured overhead (its identity-model row) from
every entry and adds it back once: the *plain* estimate.

Chaining units into one model changes more than that, and an optional
:class:`NetworkCorrection`, fitted on networks measured end to end on the
device (``benchmarks/lut_fidelity.py``), accounts for it.  On ONNX Runtime's
CPU provider the graph optimiser runs convolutions in a blocked channel layout
(NCHWc): a single-unit model converts its input into that layout and its
output back (``ReorderInput`` / ``ReorderOutput``), but a network converts once
at each end, so each boundary between two units is paid in the LUT and not in
the network, at a cost that grows with the boundary tensor's size.  And a unit
timed alone runs with its weights in cache, which a network's neighbours evict.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from harness.lut import store as lut_store
from harness.errors import ChameleonError
from harness.signature import IDENTITY, OpSignature


class MissingSignatures(ChameleonError):
    """Signatures the LUT has no entry for."""


class InvalidCorrection(ChameleonError):
    """A network correction file that cannot be read, or too few networks to fit one."""


@dataclass(frozen=True)
class NetworkEstimate:
    latency_us: float  # the estimate: the plain one, corrected when the model has a NetworkCorrection
    operator_sum_us: float  # the plain sum of entries, before the overhead correction
    overhead_us: float
    operators: int
    plain_us: float = math.nan  # Σ entries − (k − 1)·overhead
    boundary_elements: int = 0  # elements of the tensors passed between consecutive units


def boundary_elements(signatures: Sequence[OpSignature]) -> int:
    """Elements of the tensors that cross a unit boundary inside the network (every unit's output but the last)."""
    return sum(math.prod(s.output_shape) for s in list(signatures)[:-1])


@dataclass(frozen=True)
class NetworkCorrection:
    """What chaining a network's k units into one model changes, fitted on networks measured end to end.

    ``t = scale · plain − (k − 1) · boundary_us − boundary_element_us · E``

    where ``plain`` is Σ entries − (k − 1)·overhead and E the elements of the
    k − 1 tensors passed between units.  ``boundary_us`` and
    ``boundary_element_us`` price what a unit boundary costs in the LUT but
    not in the network (ONNX Runtime's NCHWc layout conversions, a fixed cost
    plus one proportional to the tensor); ``scale`` what every unit costs more
    inside a network (its weights evicted from cache by its neighbours).  Fitted
    by least squares on the relative error of calibration networks, which must
    not be the networks it is then judged on.
    """

    scale: float = 1.0
    boundary_us: float = 0.0
    boundary_element_us: float = 0.0
    networks: int = 0  # calibration networks it was fitted on
    calibration_mape: float | None = None  # on those networks
    device: str = ""  # the LUT's device_id(s)
    lut: str = ""  # the LUT it was fitted with

    @classmethod
    def fit(cls, estimates: Sequence[NetworkEstimate], measured_us: Sequence[float], *, device: str = "",
            lut: str = "") -> "NetworkCorrection":
        """Fit the three terms to calibration networks: their LUT estimates and their measured latencies."""
        measured = np.asarray(measured_us, dtype=np.float64)
        if len(estimates) != len(measured):
            raise ValueError(f"{len(estimates)} estimates but {len(measured)} measurements")
        if len(measured) < 3:
            raise InvalidCorrection(f"a network correction needs at least 3 calibration networks, got {len(measured)}")
        if not np.all(np.isfinite(measured) & (measured > 0)):
            raise InvalidCorrection("measured latencies must be finite and positive")
        plain = np.array([e.plain_us for e in estimates])
        boundaries = np.array([max(e.operators - 1, 0) for e in estimates], dtype=np.float64)
        elements = np.array([e.boundary_elements for e in estimates], dtype=np.float64)
        design = np.stack([plain, -boundaries, -elements], axis=1) / measured[:, None]
        coef, *_ = np.linalg.lstsq(design, np.ones_like(measured), rcond=None)
        scale, per_boundary, per_element = (float(v) for v in coef)
        fitted = scale * plain - per_boundary * boundaries - per_element * elements
        mape = float(np.mean(np.abs(fitted - measured) / measured))
        return cls(scale, per_boundary, per_element, len(measured), mape, device, lut)

    def apply(self, plain_us: Any, boundaries: Any, elements: Any) -> Any:
        """The corrected latency (µs) from the plain estimate, k − 1 and E (scalars or arrays)."""
        return self.scale * np.asarray(plain_us) - self.boundary_us * np.asarray(boundaries) \
            - self.boundary_element_us * np.asarray(elements)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "chameleon-network-correction", "version": 1, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, where: str = "network correction") -> "NetworkCorrection":
        if not isinstance(data, dict) or data.get("kind") != "chameleon-network-correction" or data.get("version") != 1:
            raise InvalidCorrection(f"{where}: not a version-1 chameleon network correction")
        try:
            values = {k: data[k] for k in ("scale", "boundary_us", "boundary_element_us")}
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values()):
                raise TypeError
            return cls(**{k: float(v) for k, v in values.items()}, networks=int(data.get("networks", 0)),
                       calibration_mape=data.get("calibration_mape"), device=str(data.get("device", "")),
                       lut=str(data.get("lut", "")))
        except (KeyError, TypeError, ValueError):
            raise InvalidCorrection(f"{where}: needs finite numbers scale, boundary_us and boundary_element_us") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "NetworkCorrection":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidCorrection(f"{path}: cannot read a network correction ({type(error).__name__})") from None
        return cls.from_json(data, str(path))


class LutLatencyModel:
    """Looks up operator latencies (median µs) of one device's LUT, optionally with a :class:`NetworkCorrection`."""

    def __init__(self, median_us: dict[str, float], overhead_us: float, source: str = "", device: str = "",
                 correction: NetworkCorrection | None = None) -> None:
        self.median_us = median_us
        self.overhead_us = overhead_us
        self.source = source
        self.device = device
        if correction is not None and correction.device and device and correction.device != device:
            raise InvalidCorrection(f"{source}: the network correction was fitted on device {correction.device!r}, "
                                    f"this LUT is device {device!r}")
        self.correction = correction

    @classmethod
    def from_file(cls, path: str | Path, correction: NetworkCorrection | None = None) -> "LutLatencyModel":
        table = lut_store.read_lut(path)
        keys = table.column("signature").to_pylist()
        medians = table.column("median_us").to_pylist()
        kinds = table.column("kind").to_pylist()
        overhead = next((m for k, m in zip(kinds, medians) if k == IDENTITY), 0.0)
        devices = sorted(set(table.column("device_id").to_pylist()))
        return cls(dict(zip(keys, medians)), overhead, str(path), ",".join(devices), correction)

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
        boundaries = max(len(signatures) - 1, 0)
        plain = total - boundaries * self.overhead_us
        elements = boundary_elements(signatures)
        latency = plain if self.correction is None else float(self.correction.apply(plain, boundaries, elements))
        return NetworkEstimate(latency_us=latency, operator_sum_us=total, overhead_us=self.overhead_us,
                               operators=len(signatures), plain_us=plain, boundary_elements=elements)


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
    The LUT's per-invocation overhead is counted once per network, and the
    LUT model's :class:`NetworkCorrection`, if any, is applied.

    A unit missing from the LUT is an error listing the missing signatures
    and the sweep that measures them; with ``interpolate=True`` it is instead
    estimated from the nearest measured entry of the same kind and shape
    family, scaled by MACs, and the architectures using it are flagged.
    """

    def __init__(self, lut: LutLatencyModel, space: Any, interpolate: bool = False) -> None:
        self.lut, self.space, self.interpolate = lut, space, interpolate
        # One lookup table per slot of the space: a unit's LUT entry is found once, then by array indexing.
        self._tables = [_SlotTable(slot, self._unit_entry) for slot in space.slots]
        self._neighbours: dict[tuple, list[tuple[float, float]]] | None = None
        self.interpolated_keys: set[str] = set()

    def _unit_entry(self, signature: OpSignature) -> tuple[float, bool, int]:
        """A unit's median (µs, NaN when missing), whether it was interpolated, and its output elements."""
        return (*self._unit_us(signature), math.prod(signature.output_shape))

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
        correction = self.lut.correction
        total = np.full(X.shape[0], overhead, dtype=np.float64)
        if correction is not None:  # unit count, boundary elements, and the last unit's output (not a boundary)
            units, elements, last = (np.zeros(X.shape[0]) for _ in range(3))
        flagged = np.zeros(X.shape[0], dtype=bool)
        missing: set[str] = set()
        for slot, table in zip(self.space.slots, self._tables):
            counts = np.asarray(slot.count(X))
            present = counts > 0
            if not present.any():
                continue
            params = np.asarray(slot.params(X))
            index = table.lookup(params)
            unit = table.values[index]
            absent_in_lut = np.isnan(unit) & present
            if absent_in_lut.any():
                for i in np.unique(index[absent_in_lut]):
                    missing.add(slot.signature(tuple(int(v) for v in table.rows[i])).key)
                continue
            total += np.where(present, counts * (unit - overhead), 0.0)
            flagged |= table.guessed[index] & present
            if correction is not None:
                output = table.outputs[index]
                units += np.where(present, counts, 0)
                elements += np.where(present, counts * output, 0.0)
                last = np.where(present, output, last)
        if missing:
            keys = sorted(missing)
            device = self.lut.device or "DEVICE"
            raise MissingSignatures(
                f"{self.lut.source}: {len(keys)} signature(s) of {self.space.name} are not in the LUT, e.g. {keys[0]}; "
                f"measure them with: bench sweep --device {device} --plan {self.space.name} --out {self.lut.source} "
                f"(or pass --interpolate to estimate them, flagged)"
            )
        if correction is not None:
            total = correction.apply(total, np.maximum(units - 1, 0), elements - last)
        return LatencyPrediction(total / 1000.0, flagged, tuple(sorted(self.interpolated_keys)))


class _SlotTable:
    """The LUT entries of one slot's units, found by array lookups at search batch sizes.

    A unit is a row of the slot's integer parameters.  Each row is packed into one int64 key (mixed
    radix, one power of two per column, grown when a larger value arrives) and the keys seen so far
    are kept sorted, so a batch of architectures costs a ``searchsorted``; only rows never seen
    before go through Python (the signature, the LUT dictionary).  EES asks for ~84 architectures
    at a time, thousands of times: np.unique and a loop over unique rows per call made the latency
    model most of a search's time (issue 17).
    """

    def __init__(self, slot: Any, entry: Any) -> None:
        self.slot, self.entry = slot, entry
        self.rows = np.zeros((0, 0), dtype=np.int64)
        self.values = np.zeros(0)
        self.guessed = np.zeros(0, dtype=bool)
        self.outputs = np.zeros(0)
        self._bits: np.ndarray | None = None
        self._shifts = np.zeros(0, dtype=np.int64)
        self._sorted_keys = np.zeros(0, dtype=np.int64)
        self._order = np.zeros(0, dtype=np.int64)

    def lookup(self, params: np.ndarray) -> np.ndarray:
        """Row indices into ``values``/``guessed``/``outputs`` of each row of ``params`` (new rows added)."""
        params = np.asarray(params, dtype=np.int64).reshape(len(params), -1)
        if self._bits is None:
            self._bits = np.zeros(params.shape[1], dtype=np.int64)
            self._shifts = np.zeros(params.shape[1], dtype=np.int64)
            self.rows = np.zeros((0, params.shape[1]), dtype=np.int64)
        if params.size and params.min() < 0:
            raise ValueError(f"slot {getattr(self.slot, 'name', '?')}: negative unit parameters")
        if len(params) and (params.max(axis=0) >> self._bits).any():  # a value wider than its column's bits
            needed = np.array([int(v).bit_length() for v in params.max(axis=0)], dtype=np.int64)
            self._bits = np.maximum(self._bits, needed)
            if self._bits.sum() > 62:
                raise ValueError("unit parameters too large to pack")
            self._shifts = np.concatenate([np.cumsum(self._bits[::-1])[::-1][1:], [0]]).astype(np.int64)
            self._rekey()
        keys = self._keys(params)
        position = np.searchsorted(self._sorted_keys, keys)
        found = position < len(self._sorted_keys)
        found[found] = self._sorted_keys[position[found]] == keys[found]
        if not found.all():
            _, first = np.unique(keys[~found], return_index=True)
            self._add(params[~found][first])
            position = np.searchsorted(self._sorted_keys, keys)
        return self._order[position]

    def _keys(self, params: np.ndarray) -> np.ndarray:
        return (params << self._shifts).sum(axis=1) if params.size else np.zeros(len(params), dtype=np.int64)

    def _rekey(self) -> None:
        keys = self._keys(self.rows)
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]

    def _add(self, rows: np.ndarray) -> None:
        entries = [self.entry(self.slot.signature(tuple(int(v) for v in row))) for row in rows]
        self.rows = np.vstack([self.rows, rows])
        self.values = np.concatenate([self.values, [e[0] for e in entries]])
        self.guessed = np.concatenate([self.guessed, np.array([e[1] for e in entries], dtype=bool)])
        self.outputs = np.concatenate([self.outputs, [float(e[2]) for e in entries]])
        self._rekey()


def _families(signature: OpSignature) -> tuple[tuple, ...]:
    """Interpolation neighbourhoods, closest first: same kind, dtype, kernel, stride and activation; same kind and dtype; same dtype."""
    return (
        (signature.kind, signature.dtype, signature.kernel, signature.stride, signature.activation),
        (signature.kind, signature.dtype),
        (signature.dtype,),
    )
