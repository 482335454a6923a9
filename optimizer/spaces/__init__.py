"""Declarative search spaces: ChamNet-Mobile (ChamNet, Table 1) and ChamNet-Res (Table 2).

An architecture is a vector of integer *genes* (resolution, channels, expansion
factors, repeats).  The network it describes is a sequence of *units*, each one
operator signature of the harness's vocabulary (:mod:`harness.signature`): the
latency LUT keys and the predictor's sum (ChamNet Eq. 7) run over these.

A space is written as a stage table, like the paper's tables, and compiled
into *slots*: positions of the network whose signature depends on a few genes
(a stage's first block depends on the previous stage's width, its own width,
its expansion factor and the spatial size, which depends on the resolution).
A slot maps many architectures at once to the rows of values that fix its
signature, and says how often its unit occurs (a stage's repeated block occurs
n - 1 times).  Everything else is derived from the slots: the unit list of one
architecture, and vectorised MACs / parameter counts of thousands (each
distinct row is turned into a signature once, then scaled by its count).
Slots are named after the table's rows: ``stem``, ``stageS.first`` and
``stageS.repeat`` (count n - 1) for a stage whose n can reach 2, a single
``stageS`` for a stage with n fixed at 1 (ChamNet-Mobile's stages 1 and 7),
``last_conv``, ``avgpool``, ``fc``.

Gene values are integers on a grid ``low, low + step, ..., high``.  The unit
box used by samplers and regressors maps the k allowed values of a gene to the
centres of k equal bins, ``(index + 0.5) / k``: :meth:`SearchSpace.from_unit`
reads the bin back, so ``from_unit(to_unit(X)) == X`` and a uniform point of
the box gives every allowed value the same probability (rounding to the
nearest value would give the two ends half the weight of the others).

Spaces
------
``chamnet-mobile`` (Table 1), 21 genes::

    resolution [96, 224] step 32
    c0 [8, 48] step 8                      stem conv2d 3x3 stride 2, relu6
    c1 [8, 32] step 8                      stage 1: inverted residual, t = 1, n = 1, s = 1
    t2..t7 [2, 6], c2..c7, n2..n6          stages 2..7 (strides 2, 2, 2, 1, 2, 1; n7 = 1)
      c2 [8,40] c3 [8,48] c4 [16,96] c5 [32,160] c6 [56,256] c7 [96,480] (step 8)
      n2 [1,2]  n3 [1,3]  n4 [1,4]  n5 [1,3]  n6 [1,3]
    c_last [1024, 2048] step 8             conv2d 1x1, relu6
    then global_avgpool and fc 1000

The units are exactly those the harness's ``chamnet-mobile`` plan generator
(:func:`harness.plans.mobilenet_v2_stages`) emits: inverted residuals 3x3 with
relu6 and ``mid_channels = c_in * t`` (the first block of a stage takes the
previous stage's width and the stage's stride; the repeated blocks map
c -> c at stride 1, sharing the stage's t), the last 1x1 conv as kind conv2d.

``chamnet-res`` (Table 2), 13 genes::

    c0 [16, 64] step 8                     stem conv2d 7x7 stride 2 padding 3, relu
    t1..t4 [2, 6], c1..c4, n1..n4          4 bottleneck stages, stride 2 each
      c1 [16,64] c2 [32,128] c3 [64,256] c4 [128,512] (step 8)
      n1 [1,3]   n2 [1,8]    n3 [1,36]   n4 [1,3]
    then global_avgpool and fc 1000

A bottleneck has ``mid_channels = c`` and ``c_out = c * t``, kernel 3, relu;
the first block of a stage takes the previous width with stride 2 (and a
projection shortcut), the others map c*t -> c*t at stride 1.  The resolution
is fixed at 224 and is *not* a gene (a gene with one value would only add a
dead dimension to every sampler); :meth:`SearchSpace.resolution` reports it.
ResNet's 3x3 stride-2 max pool after the stem is not in the operator
vocabulary, so it is left out and the first stage's stride 2 (Table 2 gives
s = 2 for every stage) does that downsampling instead: the spatial sizes are
ResNet's (112 after the stem, then 56, 28, 14, 7), but the first block's 1x1
reduce conv runs at 112x112 instead of 56x56 (+38.5 M MACs).  ResNet-50
counts 4.133 GMACs here (25.53 M parameters), against the usual 4.1 G
(torchvision's ResNet-50 v1.5: 4.09 G, without the residual adds and the
pooling this count includes).  ResNet-101: 7.849 G, ResNet-152: 11.565 G.
MobileNetV2 1.0x-224 counts 301.1 M MACs (the paper's 300 M), 3.49 M params.

MACs are :attr:`OpSignature.macs` summed over the units (adds and poolings
count one per element); parameters are conv weights plus biases (batch-norm
folded, as the harness builds its models) and the fc's weights and bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from harness.signature import BOTTLENECK, CONV2D, FC, GLOBAL_AVGPOOL, INVERTED_RESIDUAL, OpSignature, make_signature

SPACES: tuple[str, ...] = ("chamnet-mobile", "chamnet-res", "chamnet-mobile-mini")


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
    absent, e.g. the repeated block of a stage with n = 1).
    """

    name: str
    params: Callable[[np.ndarray], np.ndarray]
    signature: Callable[[tuple[int, ...]], OpSignature]
    count: Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------ the space
class SearchSpace:
    """A named space of architectures: genes, the slots they drive, named baselines."""

    def __init__(self, name: str, genes: Sequence[Gene], slots: Sequence[Slot], *,
                 stages: Sequence[_Stage] = (), resolution: int | str = 224,
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


# ------------------------------------------------------------------ stage tables
@dataclass(frozen=True)
class _Stage:
    """One row of a paper's stage table; t, c, n are a gene name or a fixed value."""

    name: str
    op: str
    c: str | int | None = None
    t: str | int = 1
    n: str | int = 1
    s: int = 1
    k: int = 1
    activation: str = "none"
    padding: int | None = None  # default k // 2


@dataclass
class _Value:
    """A column of X (a gene) or a constant, evaluated for many architectures."""

    gene: int | None = None
    const: int = 0
    fn: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.fn is not None:
            return self.fn(X)
        if self.gene is not None:
            return X[:, self.gene].astype(np.int64)
        return np.full(len(X), self.const, dtype=np.int64)


def _conv_out(size: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    return (size + 2 * p - k) // s + 1


def _stack(*columns: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(c, dtype=np.int64) for c in columns], axis=1)


def _compile(stages: Sequence[_Stage], genes: Sequence[Gene], resolution: int | str,
             input_channels: int = 3) -> list[Slot]:
    """Turn a stage table into slots (the same expansion as harness.plans.mobilenet_v2_stages)."""
    names = [g.name for g in genes]
    gene_max = {g.name: g.high for g in genes}

    def value(spec: str | int) -> _Value:
        return _Value(gene=names.index(spec)) if isinstance(spec, str) else _Value(const=int(spec))

    def max_of(spec: str | int) -> int:
        return gene_max[spec] if isinstance(spec, str) else int(spec)

    size = value(resolution)
    width = _Value(const=input_channels)
    slots: list[Slot] = []
    one = lambda X: np.ones(len(X), dtype=np.int64)

    for stage in stages:
        op, k, s, act = stage.op, stage.k, stage.s, stage.activation
        pad = k // 2 if stage.padding is None else stage.padding
        h_in, c_in = size, width
        t, n = value(stage.t), value(stage.n)
        c = value(stage.c) if stage.c is not None else c_in
        h_out = _Value(fn=lambda X, h_in=h_in, k=k, s=s, p=pad: _conv_out(h_in(X), k, s, p))
        first_count: Callable[[np.ndarray], np.ndarray] = one
        repeat_count = lambda X, n=n: n(X) - 1
        has_repeat = max_of(stage.n) >= 2

        if op == CONV2D:
            params = lambda X, h_in=h_in, c_in=c_in, c=c: _stack(h_in(X), c_in(X), c(X))
            make = lambda r, k=k, s=s, p=pad, a=act: make_signature(
                CONV2D, c_in=r[1], h=r[0], w=r[0], c_out=r[2], kernel=k, stride=s, padding=p, activation=a)
            rparams = lambda X, h=h_out, c=c: _stack(h(X), c(X), c(X))
            rmake = lambda r, k=k, p=pad, a=act: make_signature(
                CONV2D, c_in=r[1], h=r[0], w=r[0], c_out=r[2], kernel=k, stride=1, padding=p, activation=a)
            out_width = c
        elif op == INVERTED_RESIDUAL:
            params = lambda X, h_in=h_in, c_in=c_in, c=c, t=t: _stack(
                h_in(X), c_in(X), c(X), c_in(X) * t(X))
            make = lambda r, k=k, s=s, a=act: make_signature(
                INVERTED_RESIDUAL, c_in=r[1], h=r[0], w=r[0], c_out=r[2], kernel=k, stride=s,
                mid_channels=r[3], activation=a)
            rparams = lambda X, h=h_out, c=c, t=t: _stack(h(X), c(X), c(X), c(X) * t(X))
            rmake = lambda r, k=k, a=act: make_signature(
                INVERTED_RESIDUAL, c_in=r[1], h=r[0], w=r[0], c_out=r[2], kernel=k, stride=1,
                mid_channels=r[3], activation=a)
            out_width = c
        elif op == BOTTLENECK:
            params = lambda X, h_in=h_in, c_in=c_in, c=c, t=t: _stack(
                h_in(X), c_in(X), c(X) * t(X), c(X))
            make = lambda r, k=k, s=s, a=act: make_signature(
                BOTTLENECK, c_in=r[1], h=r[0], w=r[0], c_out=r[2], kernel=k, stride=s,
                mid_channels=r[3], activation=a)
            rparams = lambda X, h=h_out, c=c, t=t: _stack(h(X), c(X) * t(X), c(X) * t(X), c(X))
            rmake = lambda r, k=k, a=act: make_signature(
                BOTTLENECK, c_in=r[1], h=r[0], w=r[0], c_out=r[2], kernel=k, stride=1,
                mid_channels=r[3], activation=a)
            out_width = _Value(fn=lambda X, c=c, t=t: c(X) * t(X))
        elif op == GLOBAL_AVGPOOL:
            params = lambda X, h_in=h_in, c_in=c_in: _stack(h_in(X), c_in(X))
            make = lambda r: make_signature(GLOBAL_AVGPOOL, c_in=r[1], h=r[0], w=r[0])
            h_out = _Value(const=1)
            out_width, has_repeat = c_in, False
        elif op == FC:
            params = lambda X, c_in=c_in, c=c: _stack(c_in(X), c(X))
            make = lambda r, a=act: make_signature(FC, c_in=r[0], c_out=r[1], activation=a)
            h_out = _Value(const=1)
            out_width, has_repeat = c, False
        else:  # pragma: no cover - the tables below use the ops above only
            raise ValueError(f"stage op {op} not supported")

        slots.append(Slot(f"{stage.name}.first" if has_repeat else stage.name, params, make, first_count))
        if has_repeat:
            slots.append(Slot(f"{stage.name}.repeat", rparams, rmake, repeat_count))
        size, width = h_out, out_width
    return slots


def _space(name: str, genes: list[Gene], stages: list[_Stage], resolution: int | str,
           baselines: Mapping[str, Sequence[int]], description: str) -> SearchSpace:
    return SearchSpace(name, genes, _compile(stages, genes, resolution), stages=stages, resolution=resolution,
                       baselines=baselines, description=description)


# ---- ChamNet-Mobile (Table 1)
_MOBILE_STAGES_TABLE = (
    # stage, t range, c range, n range (or fixed), stride
    (2, (8, 40), (1, 2), 2),
    (3, (8, 48), (1, 3), 2),
    (4, (16, 96), (1, 4), 2),
    (5, (32, 160), (1, 3), 1),
    (6, (56, 256), (1, 3), 2),
    (7, (96, 480), 1, 1),
)
# MobileNetV2 1.0x (the paper's default column): (t, c, n) of stages 1..7.
_MOBILENET_V2 = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
MOBILENET_V2_WIDTHS: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_V2_RESOLUTIONS: tuple[int, ...] = (96, 128, 160, 192, 224)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNetV2's channel rounding: nearest multiple of ``divisor``, never more than 10 % down."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _mobile_stages(stem: tuple[int, int, int], stage1: tuple[int, int, int],
                   table: Sequence[tuple[int, tuple[int, int, int], tuple[int, int] | int, int]],
                   last: tuple[int, int, int], classes: int,
                   resolution: tuple[int, int, int], t_range: tuple[int, int, int] = (2, 6, 1)) -> tuple[list[Gene], list[_Stage]]:
    """Genes and stage table of a MobileNetV2-style space: stem, stage 1 (t = 1), stages 2.., last 1x1, pool, fc.

    Channel ranges are ``(low, high, step)``; ``table`` rows are ``(stage, c range, n range or fixed n, stride)``.
    """
    genes = [Gene("resolution", *resolution), Gene("c0", *stem), Gene("c1", *stage1)]
    stages = [
        _Stage("stem", CONV2D, c="c0", s=2, k=3, activation="relu6"),
        _Stage("stage1", INVERTED_RESIDUAL, c="c1", t=1, n=1, s=1, k=3, activation="relu6"),
    ]
    for s, c_range, n_range, stride in table:
        genes += [Gene(f"t{s}", *t_range), Gene(f"c{s}", *c_range)]
        if isinstance(n_range, tuple):
            genes.append(Gene(f"n{s}", *n_range, 1))
        stages.append(_Stage(f"stage{s}", INVERTED_RESIDUAL, c=f"c{s}", t=f"t{s}",
                             n=f"n{s}" if isinstance(n_range, tuple) else n_range, s=stride, k=3,
                             activation="relu6"))
    genes.append(Gene("c_last", *last))
    stages += [
        _Stage("last_conv", CONV2D, c="c_last", s=1, k=1, activation="relu6"),
        _Stage("avgpool", GLOBAL_AVGPOOL),
        _Stage("fc", FC, c=classes),
    ]
    return genes, stages


def _chamnet_mobile() -> SearchSpace:
    table = [(s, (lo, hi, 8), n, stride) for s, (lo, hi), n, stride in _MOBILE_STAGES_TABLE]
    genes, stages = _mobile_stages((8, 48, 8), (8, 32, 8), table, (1024, 2048, 8), 1000, (96, 224, 32))
    baselines = {}
    for m in MOBILENET_V2_WIDTHS:
        for res in MOBILENET_V2_RESOLUTIONS:
            baselines[f"mobilenetv2-{m}x-{res}"] = mobilenet_v2_genes(m, res)
    return _space("chamnet-mobile", genes, stages, "resolution", baselines,
                  "ChamNet-Mobile (ChamNet Table 1): MobileNetV2 inverted residual stages")


# ---- ChamNet-Mobile-mini: the main job's reduced space (small images, 10 classes)
# Table 1's structure (same stages, strides, kinds) with a third of the widths,
# n up to 2, t in {2, 4, 6}, 32-64 px inputs and a 10-way classifier, so that
# every operator of the space can be measured (1,5xx signatures) and networks
# trained on a small data set in minutes on two cores.
_MINI_TABLE = (
    (2, (8, 24, 8), (1, 2), 2),
    (3, (16, 32, 8), (1, 2), 2),
    (4, (24, 48, 12), (1, 2), 2),
    (5, (32, 64, 16), (1, 2), 1),
    (6, (48, 96, 24), (1, 2), 2),
    (7, (64, 128, 32), 1, 1),
)
MINI_CLASSES = 10


def _chamnet_mobile_mini() -> SearchSpace:
    genes, stages = _mobile_stages((8, 16, 8), (8, 16, 8), _MINI_TABLE, (256, 512, 128), MINI_CLASSES,
                                   (32, 64, 16), t_range=(2, 6, 2))
    space = _space("chamnet-mobile-mini", genes, stages, "resolution", {},
                   "ChamNet-Mobile-mini: Table 1's stages at a third of the widths, 32-64 px, 10 classes "
                   "(the main job's space)")
    # Baselines: one uniform width for every stage (the fraction of each range), MobileNetV2's t = 6 and n.
    for fraction in (0.0, 0.5, 1.0):
        for res in space.genes[0].values:
            x = space.low + np.rint(fraction * (space.high - space.low) / space.steps).astype(np.int64) * space.steps
            x[0] = res
            for s, n in zip(range(2, 8), (2, 3, 4, 3, 3, 1)):
                x[space.index(f"t{s}")] = 6
                if f"n{s}" in space.gene_names:
                    x[space.index(f"n{s}")] = min(n, space.high[space.index(f"n{s}")])
            space._baselines[f"uniform-{fraction:g}w-{int(res)}"] = x
    return space


def mobilenet_v2_genes(width: float = 1.0, resolution: int = 224) -> list[int]:
    """The chamnet-mobile gene vector of MobileNetV2 at a width multiplier and resolution.

    Channels by MobileNetV2's ``_make_divisible(c * width, 8)``; the last conv
    stays 1280 for multipliers <= 1.0, else ``_make_divisible(1280 * width)``.
    Every multiplier of :data:`MOBILENET_V2_WIDTHS` at every resolution of
    :data:`MOBILENET_V2_RESOLUTIONS` falls inside the space (none dropped;
    0.35x gives stem 16 and stages 8, 8, 16, 24, 32, 56, 112).
    """
    x = [resolution, make_divisible(32 * width), make_divisible(_MOBILENET_V2[0][1] * width)]
    for s, (t, c, n) in enumerate(_MOBILENET_V2[1:], start=2):
        x += [t, make_divisible(c * width)]
        if s != 7:
            x.append(n)
    x.append(make_divisible(1280 * max(1.0, width)))
    return x


# ---- ChamNet-Res (Table 2)
_RES_TABLE = ((1, (16, 64), (1, 3)), (2, (32, 128), (1, 8)), (3, (64, 256), (1, 36)), (4, (128, 512), (1, 3)))
RESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_genes(depth: int = 50) -> list[int]:
    """The chamnet-res gene vector of ResNet-50/101/152: stem 64, t = 4, c = 64, 128, 256, 512."""
    x = [64]
    for c, n in zip((64, 128, 256, 512), RESNET_DEPTHS[depth]):
        x += [4, c, n]
    return x


def _chamnet_res() -> SearchSpace:
    genes = [Gene("c0", 16, 64, 8)]
    stages = [_Stage("stem", CONV2D, c="c0", s=2, k=7, padding=3, activation="relu")]
    for s, (c_lo, c_hi), (n_lo, n_hi) in _RES_TABLE:
        genes += [Gene(f"t{s}", 2, 6, 1), Gene(f"c{s}", c_lo, c_hi, 8), Gene(f"n{s}", n_lo, n_hi, 1)]
        stages.append(_Stage(f"stage{s}", BOTTLENECK, c=f"c{s}", t=f"t{s}", n=f"n{s}", s=2, k=3,
                             activation="relu"))
    stages += [_Stage("avgpool", GLOBAL_AVGPOOL), _Stage("fc", FC, c=1000)]
    baselines = {f"resnet-{d}": resnet_genes(d) for d in RESNET_DEPTHS}
    return _space("chamnet-res", genes, stages, 224, baselines,
                  "ChamNet-Res (ChamNet Table 2): ResNet bottleneck stages at 224 px, no max pool")


_BUILDERS: dict[str, Callable[[], SearchSpace]] = {"chamnet-mobile": _chamnet_mobile, "chamnet-res": _chamnet_res,
                                                   "chamnet-mobile-mini": _chamnet_mobile_mini}
_CACHE: dict[str, SearchSpace] = {}


def get_space(name: str) -> SearchSpace:
    """The search space by name (built once)."""
    if name not in _BUILDERS:
        raise UnknownSpace(f"unknown search space {name!r} (known: {', '.join(SPACES)})")
    if name not in _CACHE:
        _CACHE[name] = _BUILDERS[name]()
    return _CACHE[name]
