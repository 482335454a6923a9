"""The search space itself: integer genes, the slots they drive, and :class:`SearchSpace`.

An architecture is a vector of integer *genes* (resolution, channels, expansion
factors, repeats).  The network it describes is a sequence of *units*, each one
operator signature of the harness's vocabulary (:mod:`harness.signature`): the
latency LUT keys and the predictor's sum (ChamNet Eq. 7) run over these.

A space's network is a sequence of *slots* (:class:`Slot`), compiled from a stage table by
:mod:`optimizer.spaces.stages`; :class:`SearchSpace` derives everything else from them: the unit
list of one architecture, vectorised MACs and parameter counts of thousands, every signature a
LUT must hold.

Gene values are integers on a grid ``low, low + step, ..., high``.  The unit
box used by samplers and regressors maps the k allowed values of a gene to the
centres of k equal bins, ``(index + 0.5) / k``: :meth:`SearchSpace.from_unit`
reads the bin back, so ``from_unit(to_unit(X)) == X`` and a uniform point of
the box gives every allowed value the same probability (rounding to the
nearest value would give the two ends half the weight of the others).

MACs are :attr:`OpSignature.macs` summed over the units (adds and poolings
count one per element); parameters are conv weights plus biases (batch-norm
folded, as the harness builds its models) and the fc's weights and bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from harness.signature import BOTTLENECK, CONV2D, FC, INVERTED_RESIDUAL, OpSignature


class UnknownSpace(ChameleonError):
    """No search space by that name."""


class InvalidArchitecture(ChameleonError):
    """A gene vector that is not a point of its space (wrong length, off the grid, out of bounds)."""


# ------------------------------------------------------------------ building blocks
@dataclass(frozen=True)
class Gene:
    """An integer gene: values ``low, low + step, ..., high``."""

    name: str
    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.step < 1 or self.high < self.low or (self.high - self.low) % self.step:
            raise ValueError(f"gene {self.name}: [{self.low}, {self.high}] step {self.step} is not a grid")

    @property
    def size(self) -> int:
        """How many values the gene takes."""
        return (self.high - self.low) // self.step + 1

    @property
    def values(self) -> np.ndarray:
        return np.arange(self.low, self.high + 1, self.step, dtype=np.int64)


@dataclass(frozen=True)
class Slot:
    """One position of the network whose operator depends on a few genes.

    ``params(X)`` maps decoded architectures ``[N, genes]`` to the integer rows
    ``[N, p]`` that fix the slot's signature; ``signature(row)`` builds it;
    ``count(X)`` says how often the unit occurs in each architecture (0 when
    absent, e.g. the repeated block of a stage with n = 1).  ``genes`` are the
    columns of X that ``params`` and ``count`` read (a superset is allowed;
    None: not declared).  With them the latency predictor keeps one lookup
    table per slot indexed by those genes' grid positions, so a batch of
    architectures is priced by array indexing alone (issue 17); a slot
    without them is priced by computing its rows for every batch.
    """

    name: str
    params: Callable[[np.ndarray], np.ndarray]
    signature: Callable[[tuple[int, ...]], OpSignature]
    count: Callable[[np.ndarray], np.ndarray]
    genes: tuple[int, ...] | None = None


# ------------------------------------------------------------------ the space
class SearchSpace:
    """A named space of architectures: genes, the slots they drive, named baselines.

    ``stages`` are the rows of the stage table the slots were compiled from
    (:class:`optimizer.spaces.stages.Stage`; :meth:`describe` reads them).
    """

    def __init__(self, name: str, genes: Sequence[Gene], slots: Sequence[Slot], *,
                 stages: Sequence[Any] = (), resolution: int | str = 224,
                 baselines: Mapping[str, Sequence[int]] | None = None, description: str = "") -> None:
        self.name = name
        self.description = description
        self.genes: tuple[Gene, ...] = tuple(genes)
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.gene_names: tuple[str, ...] = tuple(g.name for g in self.genes)
        if len(set(self.gene_names)) != len(self.gene_names):
            raise ValueError(f"space {name}: duplicate gene names")
        self.low = np.array([g.low for g in self.genes], dtype=np.int64)
        self.high = np.array([g.high for g in self.genes], dtype=np.int64)
        self.steps = np.array([g.step for g in self.genes], dtype=np.int64)
        self.sizes = np.array([g.size for g in self.genes], dtype=np.int64)
        self._stages = tuple(stages)
        self._resolution = resolution
        self._cost_cache: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
        self._baselines: dict[str, np.ndarray] = {}
        for key, values in (baselines or {}).items():
            x = np.asarray(values, dtype=np.int64)
            if not self.contains(x):
                raise ValueError(f"space {name}: baseline {key} is not inside the space: {self._pairs(x)}")
            self._baselines[key] = x

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.genes)} genes, {len(self.slots)} slots)"

    @property
    def dim(self) -> int:
        return len(self.genes)

    def index(self, gene: str) -> int:
        """Column of a gene in X."""
        return self.gene_names.index(gene)

    # ---- the grid
    def snap(self, X: Any) -> np.ndarray:
        """Nearest allowed values (clipped to the bounds), as int64; ``[N, g]`` or ``[g]``."""
        def nearest(M: np.ndarray) -> np.ndarray:
            idx = np.rint((M.astype(np.float64) - self.low) / self.steps)
            return self.low + np.clip(idx, 0, self.sizes - 1).astype(np.int64) * self.steps
        return self._rowwise(X, "snap", nearest)

    def contains(self, X: Any) -> np.ndarray:
        """Whether each row is inside the bounds and on the step grid (a bool array; 0-d for one row)."""
        X = np.asarray(X)
        if X.ndim not in (1, 2) or X.shape[-1] != self.dim:
            return np.zeros(X.shape[:-1] if X.ndim == 2 else (), dtype=bool)
        Xf = np.asarray(X, dtype=np.float64)
        integral = np.isfinite(Xf) & (Xf == np.round(Xf))
        Xi = np.where(integral, Xf, 0).astype(np.int64)
        ok = integral & (Xi >= self.low) & (Xi <= self.high) & ((Xi - self.low) % self.steps == 0)
        return ok.all(axis=-1)

    def to_unit(self, X: Any) -> np.ndarray:
        """Genes → the unit box: the i-th allowed value maps to the centre of the i-th of k bins."""
        return self._rowwise(X, "to_unit",
                             lambda M: ((M.astype(np.float64) - self.low) / self.steps + 0.5) / self.sizes)

    def from_unit(self, U: Any) -> np.ndarray:
        """The unit box → allowed gene values (the bin each coordinate falls in; clipped)."""
        def binned(M: np.ndarray) -> np.ndarray:
            idx = np.clip(np.floor(M.astype(np.float64) * self.sizes), 0, self.sizes - 1).astype(np.int64)
            return self.low + idx * self.steps
        return self._rowwise(U, "from_unit", binned)

    def sobol_pool(self, k: int = 2048, seed: int = 0) -> np.ndarray:
        """Up to ``k`` distinct architectures from a scrambled Sobol sequence (first-seen order)."""
        from scipy.stats import qmc

        if k < 1:
            raise ValueError(f"sobol_pool: k must be >= 1, got {k}")
        rng = np.random.default_rng(seed)
        try:
            sampler = qmc.Sobol(d=self.dim, scramble=True, rng=rng)
        except TypeError:  # scipy < 1.15 names it seed
            sampler = qmc.Sobol(d=self.dim, scramble=True, seed=rng)
        U = sampler.random_base2(max(0, math.ceil(math.log2(k))))[:k]
        return _unique_rows(self.from_unit(U))

    def random(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` architectures, each gene uniform over its allowed values."""
        rng = np.random.default_rng(rng)
        idx = rng.integers(0, self.sizes, size=(n, self.dim))
        return self.low + idx * self.steps

    # ---- the network
    def resolution(self, x: Any) -> int:
        """Input size (square) of the architecture."""
        if isinstance(self._resolution, str):
            return int(self._vector(x)[self.index(self._resolution)])
        return int(self._resolution)

    def signatures(self, x: Any) -> list[OpSignature]:
        """The network's units in order, each occurrence listed."""
        X = self._vector(x)[None, :]
        units: list[OpSignature] = []
        for slot in self.slots:
            count = int(slot.count(X)[0])
            if count:
                sig = slot.signature(tuple(int(v) for v in slot.params(X)[0]))
                units.extend([sig] * count)
        return units

    def all_signatures(self) -> list[OpSignature]:
        """Every distinct signature that some architecture of the space contains (what a LUT must hold).

        Each slot depends on a few genes only (a stage's first block on the
        resolution, the previous and its own width and its t).  Those genes are
        found by changing one gene at a time on random architectures, and the
        slot's rows are enumerated over their product alone, so the whole space
        (10^20 points) is covered without enumerating it.  Order: slot by slot,
        rows sorted.
        """
        rng = np.random.default_rng(0)
        bases = self.random(48, rng)
        seen: dict[str, OpSignature] = {}
        for slot in self.slots:
            depends = [g for g in range(self.dim) if self._slot_depends_on(slot, g, bases)]
            grids = np.meshgrid(*[self.genes[g].values for g in depends], indexing="ij")
            X = np.repeat(self.low[None, :], grids[0].size if depends else 1, axis=0)
            for g, grid in zip(depends, grids):
                X[:, g] = grid.reshape(-1)
            present = np.asarray(slot.count(X)) > 0
            for row in np.unique(np.asarray(slot.params(X))[present], axis=0):
                sig = slot.signature(tuple(int(v) for v in row))
                seen.setdefault(sig.key, sig)
        return list(seen.values())

    def _slot_depends_on(self, slot: Slot, gene: int, bases: np.ndarray) -> bool:
        """Whether changing ``gene`` alone changes the slot's rows or counts on any of ``bases``."""
        params, counts = np.asarray(slot.params(bases)), np.asarray(slot.count(bases))
        for value in self.genes[gene].values:
            changed = bases.copy()
            changed[:, gene] = value
            if not (np.array_equal(np.asarray(slot.params(changed)), params)
                    and np.array_equal(np.asarray(slot.count(changed)), counts)):
                return True
        return False

    def macs_many(self, X: Any) -> np.ndarray:
        """Multiply-accumulates of many architectures ``[N, g]`` → int64 ``[N]``."""
        return self._costs(X)[0]

    def params_many(self, X: Any) -> np.ndarray:
        """Parameter counts of many architectures ``[N, g]`` → int64 ``[N]``."""
        return self._costs(X)[1]

    def macs(self, x: Any) -> int:
        """Multiply-accumulates of one architecture (sum of its units' :attr:`OpSignature.macs`)."""
        return sum(sig.macs for sig in self.signatures(x))

    def params(self, x: Any) -> int:
        """Parameters of one architecture (conv and fc weights and biases)."""
        return sum(unit_params(sig) for sig in self.signatures(x))

    def describe(self, x: Any) -> dict[str, Any]:
        """A readable view: resolution, the stage table with this architecture's values, MACs, params."""
        x = self._vector(x)
        values = dict(zip(self.gene_names, (int(v) for v in x)))
        stages = []
        for stage in self._stages:
            row: dict[str, Any] = {"stage": stage.name, "op": stage.op}
            for key in ("t", "c", "n"):
                spec = getattr(stage, key)
                if key == "t" and stage.op not in (INVERTED_RESIDUAL, BOTTLENECK):
                    continue
                if spec is not None:
                    row[key] = values[spec] if isinstance(spec, str) else spec
            if stage.op in (CONV2D, INVERTED_RESIDUAL, BOTTLENECK):
                row["s"] = stage.s
                row["k"] = stage.k
            if stage.op == BOTTLENECK:
                row["c_out"] = row["c"] * row["t"]
            stages.append(row)
        units = self.signatures(x)
        return {
            "space": self.name,
            "genes": values,
            "resolution": self.resolution(x),
            "stages": stages,
            "units": len(units),
            "macs": sum(s.macs for s in units),
            "params": sum(unit_params(s) for s in units),
        }

    def baselines(self) -> dict[str, np.ndarray]:
        """Named points of the space (copies)."""
        return {key: x.copy() for key, x in self._baselines.items()}

    def export_onnx(self, x: Any, path: str | Path, seed: int = 0) -> Path:
        """Write the whole network of ``x`` as one fp32 ONNX model (deterministic weights)."""
        from harness.models.onnx_models import build_network

        path = Path(path)
        model = build_network(self.signatures(x), seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model.SerializeToString())
        return path

    def export_pte(self, x: Any, path: str | Path, seed: int = 0, backend: str = "xnnpack") -> Path:
        """Write the whole network of ``x`` as one ExecuTorch program: the network :meth:`export_onnx` writes."""
        from harness.models.pte_models import network_program

        path = Path(path)
        program = network_program(self.signatures(x), seed=seed, backend=backend)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(program)
        return path

    # ---- internals
    def _costs(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise InvalidArchitecture(f"space {self.name}: expected an array [N, {self.dim}], got shape {X.shape}")
        bad = ~self.contains(X)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InvalidArchitecture(f"space {self.name}: row {row} is not a point of the space: {self._pairs(X[row])}")
        X = X.astype(np.int64)
        macs = np.zeros(len(X), dtype=np.int64)
        params = np.zeros(len(X), dtype=np.int64)
        for s, slot in enumerate(self.slots):
            counts = np.asarray(slot.count(X), dtype=np.int64)
            present = counts > 0
            if not present.any():
                continue
            rows, inverse = np.unique(np.asarray(slot.params(X))[present], axis=0, return_inverse=True)
            cost = np.array([self._unit_cost(s, slot, tuple(int(v) for v in row)) for row in rows], dtype=np.int64)
            inverse = inverse.reshape(-1)
            macs[present] += cost[inverse, 0] * counts[present]
            params[present] += cost[inverse, 1] * counts[present]
        return macs, params

    def _unit_cost(self, index: int, slot: Slot, row: tuple[int, ...]) -> tuple[int, int]:
        key = (index, row)
        cost = self._cost_cache.get(key)
        if cost is None:
            sig = slot.signature(row)
            cost = self._cost_cache[key] = (sig.macs, unit_params(sig))
        return cost

    def _rowwise(self, X: Any, what: str, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Apply ``fn`` to ``[N, g]`` rows; a single ``[g]`` vector comes back as a vector."""
        X = np.asarray(X)
        if X.ndim not in (1, 2) or X.shape[-1] != self.dim:
            raise InvalidArchitecture(f"space {self.name}: {what} expects [N, {self.dim}] or [{self.dim}], "
                                      f"got shape {X.shape}")
        out = fn(X.reshape(-1, self.dim))
        return out[0] if X.ndim == 1 else out

    def _vector(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 1 or x.shape[0] != self.dim:
            raise InvalidArchitecture(f"space {self.name}: expected {self.dim} genes "
                                      f"({', '.join(self.gene_names)}), got shape {x.shape}")
        if not self.contains(x):
            raise InvalidArchitecture(f"space {self.name}: not a point of the space: {self._pairs(x)} "
                                      f"(bounds: {self._bounds()})")
        return x.astype(np.int64)

    def _pairs(self, x: np.ndarray) -> str:
        return ", ".join(f"{n}={v}" for n, v in zip(self.gene_names, np.asarray(x).tolist()))

    def _bounds(self) -> str:
        return ", ".join(f"{g.name} [{g.low},{g.high}]/{g.step}" for g in self.genes)


def unit_params(sig: OpSignature) -> int:
    """Parameters of one unit as the harness builds it: conv weights + biases (BN folded), fc weights + bias."""
    kind, c_in, c_out, k2 = sig.kind, sig.c_in, sig.c_out, sig.kernel * sig.kernel
    if kind in (CONV2D, "pointwise_conv"):
        return c_out * (c_in // sig.groups) * k2 + c_out
    if kind == "depthwise_conv":
        return c_out * k2 + c_out
    if kind == INVERTED_RESIDUAL:
        mid = sig.mid_channels
        expand = c_in * mid + mid if mid != c_in else 0
        return expand + (mid * k2 + mid) + (mid * c_out + c_out)
    if kind == "inverted_residual_se":  # MobileNetV3: the inverted residual, and its squeeze-excite's two 1x1s
        mid, reduced = sig.mid_channels, sig.se_channels
        expand = c_in * mid + mid if mid != c_in else 0
        return expand + (mid * k2 + mid) + (2 * mid * reduced + reduced + mid) + (mid * c_out + c_out)
    if kind == "grouped_inverted_residual":  # FBNet's grouped block: both 1x1 convs in groups, the expansion always there
        mid, g = sig.mid_channels, sig.groups
        return (c_in // g * mid + mid) + (mid * k2 + mid) + (mid // g * c_out + c_out)
    if kind == "squeeze_excite":
        reduced = sig.se_channels
        return 2 * c_in * reduced + reduced + c_in
    if kind == BOTTLENECK:
        mid = sig.mid_channels
        shortcut = 0 if sig.has_residual else c_in * c_out + c_out
        return (c_in * mid + mid) + (mid * (mid // sig.groups) * k2 + mid) + (mid * c_out + c_out) + shortcut
    if kind == FC:
        return c_in * c_out + c_out
    return 0


def _unique_rows(X: np.ndarray) -> np.ndarray:
    """Rows of X without duplicates, in first-seen order."""
    if len(X) == 0:
        return X
    _, first = np.unique(X, axis=0, return_index=True)
    return X[np.sort(first)]
