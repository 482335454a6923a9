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
from optimizer.latency.slot_tables import GeneGridTables, PackedRowTable


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


# Below this many calibration networks a correction fits its scale only (the boundary terms stay 0).
MIN_NETWORKS_FOR_BOUNDARY_TERMS = 10


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
        """Fit the three terms to calibration networks: their LUT estimates and their measured latencies.

        With fewer than :data:`MIN_NETWORKS_FOR_BOUNDARY_TERMS` networks only the scale is fitted.
        """
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
        if len(measured) < MIN_NETWORKS_FOR_BOUNDARY_TERMS:
            # Three free terms on a handful of networks fit their noise (four noisy networks once gave a winner a
            # negative latency): the scale alone.
            design[:, 1:] = 0.0
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
        return cls.from_table(lut_store.read_lut(path), str(path), correction)

    @classmethod
    def from_table(cls, table: Any, source: str = "", correction: NetworkCorrection | None = None) -> "LutLatencyModel":
        """From a LUT already read (:func:`harness.lut.store.read_lut`); ``source`` names it in messages."""
        keys = table.column("signature").to_pylist()
        medians = table.column("median_us").to_pylist()
        kinds = table.column("kind").to_pylist()
        overhead = next((m for k, m in zip(kinds, medians) if k == IDENTITY), 0.0)
        devices = sorted(set(table.column("device_id").to_pylist()))
        return cls(dict(zip(keys, medians)), overhead, source, ",".join(devices), correction)

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
    a few genes.  Each slot's unit is looked up once per grid point of the
    genes it reads and kept in a table indexed by those genes
    (:class:`~optimizer.latency.slot_tables.GeneGridTables`), so pricing a
    batch of architectures is a matrix product and a few gathers, whatever
    its size (EES asks for ~84 at a time; issue 17).  A space whose slots do
    not declare their genes, or architectures off its grid, are priced slot
    by slot (:class:`~optimizer.latency.slot_tables.PackedRowTable`), with the
    same results.  The LUT's per-invocation overhead is counted once per
    network, and the LUT model's :class:`NetworkCorrection`, if any, is applied.

    A unit missing from the LUT is an error listing the missing signatures
    and the sweep that measures them; with ``interpolate=True`` it is instead
    estimated from the nearest measured entry of the same kind and shape
    family, scaled by MACs, and the architectures using it are flagged.
    ``interpolated_keys`` collects every unit interpolated so far (a slot's
    unit is looked up for every architecture of a batch in which some
    architecture uses the slot).
    """

    def __init__(self, lut: LutLatencyModel, space: Any, interpolate: bool = False) -> None:
        self.lut, self.space, self.interpolate = lut, space, interpolate
        self._grid: GeneGridTables | None = None  # built on the first prediction
        self._grid_built = False
        self._row_tables: list[PackedRowTable] | None = None
        self._entries: dict[str, tuple[float, bool, int]] = {}  # signature key -> entry, for every slot
        self._neighbours: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self.interpolated_keys: set[str] = set()
        self._interpolated_sorted: tuple[str, ...] = ()
        self._new_interpolated: list[str] = []

    def predict(self, X: np.ndarray) -> LatencyPrediction:
        X = np.atleast_2d(np.asarray(X))
        if not self._grid_built:
            self._grid, self._grid_built = GeneGridTables.for_space(self.space), True
        positions = None if self._grid is None else self._grid.positions(X)
        if positions is None:
            counts, unit, guessed, output = self._units_by_rows(X)
        else:
            counts, unit, guessed, output = self._units_by_grid(X, positions)
        present = counts > 0
        overhead = self.lut.overhead_us
        total = np.full(X.shape[0], overhead)
        for contribution in np.where(present, counts * (unit - overhead), 0.0):  # in slot order: the same float sum
            total += contribution  # (np.sum may pair terms up, e.g. for a single architecture)
        if np.isnan(total).any():  # a unit some architecture uses is missing from the LUT (NaN)
            missing = np.isnan(unit) & present
            if missing.any():
                raise self._missing(X, missing)
        flagged = (guessed & present).any(axis=0)
        correction = self.lut.correction
        if correction is not None:  # unit count, boundary elements, and the last unit's output (not a boundary)
            units = np.where(present, counts, 0).sum(axis=0).astype(np.float64)
            elements = np.where(present, counts * output, 0.0).sum(axis=0)
            last_slot = len(present) - 1 - np.argmax(present[::-1], axis=0)
            last = np.where(present.any(axis=0), output[last_slot, np.arange(X.shape[0])], 0.0) \
                if len(present) else np.zeros(X.shape[0])
            total = correction.apply(total, np.maximum(units - 1, 0), elements - last)
        return LatencyPrediction(total / 1000.0, flagged, self._interpolated_signatures())

    def _units_by_grid(self, X: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Counts, entries, interpolated flags and outputs ``[slots, N]`` from the gene-grid tables."""
        grid = self._grid
        counts = grid.count[positions]
        if (counts < 0).any():
            grid.fill_counts(X, positions)
            counts = grid.count[positions]
        used = (counts > 0).any(axis=1)  # a slot's unit is looked up when some architecture of the batch uses it
        state = grid.state[positions]
        if ((state < 0) & used[:, None]).any():
            grid.resolve(X, positions, np.flatnonzero(used), self._unit_entries)
            state = grid.state[positions]
        output = grid.output[positions] if self.lut.correction is not None else None
        return counts, grid.value[positions], state == 1, output

    def _units_by_rows(self, X: np.ndarray) -> tuple[np.ndarray, ...]:
        """The same from each slot's rows, computed for this batch (slots without declared genes, rows off the grid)."""
        if self._row_tables is None:
            self._row_tables = [PackedRowTable(slot, self._unit_entries) for slot in self.space.slots]
        shape = (len(self._row_tables), X.shape[0])
        counts, unit = np.zeros(shape, dtype=np.int64), np.zeros(shape)
        guessed, output = np.zeros(shape, dtype=bool), np.zeros(shape)
        for s, (slot, table) in enumerate(zip(self.space.slots, self._row_tables)):
            counts[s] = np.asarray(slot.count(X))
            if not (counts[s] > 0).any():
                continue
            index = table.lookup(np.asarray(slot.params(X)))
            unit[s], guessed[s], output[s] = table.values[index], table.guessed[index], table.outputs[index]
        return counts, unit, guessed, output

    def _missing(self, X: np.ndarray, missing: np.ndarray) -> MissingSignatures:
        keys: set[str] = set()
        for s in np.flatnonzero(missing.any(axis=1)):
            slot, rows = self.space.slots[s], X[missing[s]]
            params = np.asarray(slot.params(rows), dtype=np.int64).reshape(len(rows), -1)
            keys.update(slot.signature(tuple(int(v) for v in row)).key for row in np.unique(params, axis=0))
        keys = sorted(keys)
        device = self.lut.device or "DEVICE"
        return MissingSignatures(
            f"{self.lut.source}: {len(keys)} signature(s) of {self.space.name} are not in the LUT, e.g. {keys[0]}; "
            f"measure them with: bench sweep --device {device} --plan {self.space.name} --out {self.lut.source} "
            f"(or pass --interpolate to estimate them, flagged)"
        )

    def _interpolated_signatures(self) -> tuple[str, ...]:
        """``interpolated_keys`` sorted, by merging in the keys added since the last batch (a search interpolates
        ~10^4 units, ~100 a batch: sorting them all for every batch took a third of a search)."""
        if self._new_interpolated:
            self._interpolated_sorted = tuple(sorted([*self._interpolated_sorted, *self._new_interpolated]))
            self._new_interpolated.clear()
        if len(self._interpolated_sorted) != len(self.interpolated_keys):  # the set was changed from outside
            self._interpolated_sorted = tuple(sorted(self.interpolated_keys))
        return self._interpolated_sorted

    def _unit_entries(self, signatures: list[OpSignature]) -> list[tuple[float, bool, int]]:
        """Each unit's median (µs, NaN when missing), whether it was interpolated, and its output elements."""
        keys = [s.key for s in signatures]  # built anew on every access: once per unit here
        todo = [i for i, key in enumerate(keys) if key not in self._entries]
        guess = []
        for i in todo:
            value = self.lut.median_us.get(keys[i])
            if value is None and self.interpolate:
                guess.append(i)
            else:
                self._entries[keys[i]] = (float("nan") if value is None else value, False,
                                          math.prod(signatures[i].output_shape))
        if guess:
            values = self._interpolated_us([signatures[i] for i in guess], [keys[i] for i in guess])
            for i, value in zip(guess, values):
                self._entries[keys[i]] = (value, True, math.prod(signatures[i].output_shape))
        return [self._entries[key] for key in keys]

    def _interpolated_us(self, signatures: list[OpSignature], keys: list[str]) -> list[float]:
        """The nearest measured entries (by log-MACs) of each unit's closest family, scaled by MACs."""
        if self._neighbours is None:
            from harness.signature import IDENTITY, parse_signature

            families: dict[tuple, list[tuple[float, float]]] = {}
            for key, median in self.lut.median_us.items():
                other = parse_signature(key)
                if other.kind == IDENTITY:
                    continue
                for family in _families(other):
                    families.setdefault(family, []).append((float(max(other.macs, 1)), median))
            self._neighbours = {}
            for family, entries in families.items():
                macs = np.array([m for m, _ in entries], dtype=np.float64)
                self._neighbours[family] = (np.log(macs), macs, np.array([u for _, u in entries], dtype=np.float64))
        # The closest family that has entries: same kind and shape rules, then same kind, then same dtype.
        groups: dict[tuple, list[int]] = {}
        for i, (signature, key) in enumerate(zip(signatures, keys)):
            family = next((f for f in _families(signature) if f in self._neighbours), None)
            if family is None:
                raise MissingSignatures(f"{self.lut.source}: nothing to interpolate {key} from (no {signature.dtype} entries)")
            groups.setdefault(family, []).append(i)
        values = [0.0] * len(signatures)
        for family, members in groups.items():
            log_macs, all_macs, medians = self._neighbours[family]
            macs = np.array([float(max(signatures[i].macs, 1)) for i in members])
            # argmin: the first of equals, as min() over the family's entries in LUT order
            nearest = np.argmin(np.abs(log_macs[None, :] - np.log(macs)[:, None]), axis=1)
            for i, value in zip(members, (medians[nearest] * macs / all_macs[nearest]).tolist()):
                values[i] = value
        for key in keys:
            if key not in self.interpolated_keys:
                self.interpolated_keys.add(key)
                self._new_interpolated.append(key)
        return values


def _families(signature: OpSignature) -> tuple[tuple, ...]:
    """Interpolation neighbourhoods, closest first: same kind, dtype, kernel, stride and activation; same kind and dtype; same dtype."""
    return (
        (signature.kind, signature.dtype, signature.kernel, signature.stride, signature.activation),
        (signature.kind, signature.dtype),
        (signature.dtype,),
    )
