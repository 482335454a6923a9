"""Stage tables, like the paper's, compiled into the slots of a :class:`~optimizer.spaces.space.SearchSpace`.

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

A table row is a :class:`Stage` (its t, c and n are a gene name or a fixed value);
:func:`compile_stages` expands a table the way :func:`harness.plans.mobilenet_v2_stages` does, and
:func:`build_space` makes the space of a table.  The concrete tables are in
:mod:`optimizer.spaces.chamnet`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.signature import (
    BOTTLENECK,
    CONV2D,
    FC,
    GLOBAL_AVGPOOL,
    INVERTED_RESIDUAL,
    SIGNATURE_COLUMNS,
    OpSignature,
    make_signature,
)
from optimizer.spaces.space import Gene, SearchSpace, Slot


@dataclass(frozen=True)
class Stage:
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
    """A column of X (a gene) or a constant, evaluated for many architectures.

    ``deps`` are the columns of X a derived value (``fn``) reads; with them each slot
    declares the genes it depends on (:attr:`Slot.genes`), which the latency predictor
    indexes its lookup tables by.
    """

    gene: int | None = None
    const: int = 0
    fn: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    deps: frozenset[int] = frozenset()

    @property
    def genes(self) -> frozenset[int]:
        """The columns of X this value reads."""
        return self.deps if self.fn is not None else frozenset(() if self.gene is None else (self.gene,))

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


def _square(r: Sequence[int]) -> dict[str, int]:
    """A conv's unit row (h, c_in, c_out) as signature fields."""
    return {"c_in": r[1], "h": r[0], "w": r[0], "c_out": r[2]}


def _block(r: Sequence[int]) -> dict[str, int]:
    """A block's unit row (h, c_in, c_out, mid_channels) as signature fields."""
    return {"c_in": r[1], "h": r[0], "w": r[0], "c_out": r[2], "mid_channels": r[3]}


class _Signatures:
    """A slot's ``signature(row)``: ``make_signature(kind, **fixed, **fields(row))``, built faster.

    ``fields`` gives every shape field, so the fields make_signature fills in (n, groups, padding,
    dtype, ...) depend on ``kind`` and ``fixed`` alone: they are taken from the first signature, and
    the others are built by :class:`OpSignature` itself, which validates each (9 µs instead of 24:
    a search meets ~12,000 units it has not priced before, issue 17).  A row of anything but
    Python ints goes through make_signature, which coerces or rejects it.
    """

    def __init__(self, kind: str, fields: Callable[[Sequence[int]], dict[str, int]], **fixed: Any) -> None:
        self.kind, self.fields, self.fixed = kind, fields, fixed
        self._canonical: dict[str, Any] | None = None

    def __call__(self, row: Sequence[int]) -> OpSignature:
        varying = self.fields(row)
        if self._canonical is None or not all(type(v) is int for v in varying.values()):
            signature = make_signature(self.kind, **self.fixed, **varying)
            if self._canonical is None:
                self._canonical = {name: getattr(signature, name) for name in SIGNATURE_COLUMNS}
            return signature
        return OpSignature(**{**self._canonical, **varying})


def compile_stages(stages: Sequence[Stage], genes: Sequence[Gene], resolution: int | str,
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
        h_out = _Value(fn=lambda X, h_in=h_in, k=k, s=s, p=pad: _conv_out(h_in(X), k, s, p), deps=h_in.genes)
        first_count: Callable[[np.ndarray], np.ndarray] = one
        repeat_count = lambda X, n=n: n(X) - 1
        has_repeat = max_of(stage.n) >= 2

        if op == CONV2D:
            params = lambda X, h_in=h_in, c_in=c_in, c=c: _stack(h_in(X), c_in(X), c(X))
            make = _Signatures(CONV2D, _square, kernel=k, stride=s, padding=pad, activation=act)
            rparams = lambda X, h=h_out, c=c: _stack(h(X), c(X), c(X))
            rmake = _Signatures(CONV2D, _square, kernel=k, stride=1, padding=pad, activation=act)
            out_width = c
        elif op == INVERTED_RESIDUAL:
            params = lambda X, h_in=h_in, c_in=c_in, c=c, t=t: _stack(
                h_in(X), c_in(X), c(X), c_in(X) * t(X))
            make = _Signatures(INVERTED_RESIDUAL, _block, kernel=k, stride=s, activation=act)
            rparams = lambda X, h=h_out, c=c, t=t: _stack(h(X), c(X), c(X), c(X) * t(X))
            rmake = _Signatures(INVERTED_RESIDUAL, _block, kernel=k, stride=1, activation=act)
            out_width = c
        elif op == BOTTLENECK:
            params = lambda X, h_in=h_in, c_in=c_in, c=c, t=t: _stack(
                h_in(X), c_in(X), c(X) * t(X), c(X))
            make = _Signatures(BOTTLENECK, _block, kernel=k, stride=s, activation=act)
            rparams = lambda X, h=h_out, c=c, t=t: _stack(h(X), c(X) * t(X), c(X) * t(X), c(X))
            rmake = _Signatures(BOTTLENECK, _block, kernel=k, stride=1, activation=act)
            out_width = _Value(fn=lambda X, c=c, t=t: c(X) * t(X), deps=c.genes | t.genes)
        elif op == GLOBAL_AVGPOOL:
            params = lambda X, h_in=h_in, c_in=c_in: _stack(h_in(X), c_in(X))
            make = _Signatures(GLOBAL_AVGPOOL, lambda r: {"c_in": r[1], "h": r[0], "w": r[0], "c_out": r[1]})
            h_out = _Value(const=1)
            out_width, has_repeat = c_in, False
        elif op == FC:
            params = lambda X, c_in=c_in, c=c: _stack(c_in(X), c(X))
            make = _Signatures(FC, lambda r: {"c_in": r[0], "c_out": r[1]}, activation=act)
            h_out = _Value(const=1)
            out_width, has_repeat = c, False
        else:  # pragma: no cover - the tables below use the ops above only
            raise ValueError(f"stage op {op} not supported")

        # The genes each slot reads (a superset is safe: it only makes the predictor's tables larger).
        # The repeated block maps c -> c, so it does not read the previous stage's width.
        slots.append(Slot(f"{stage.name}.first" if has_repeat else stage.name, params, make, first_count,
                          genes=tuple(sorted(h_in.genes | c_in.genes | c.genes | t.genes))))
        if has_repeat:
            slots.append(Slot(f"{stage.name}.repeat", rparams, rmake, repeat_count,
                              genes=tuple(sorted(h_in.genes | c.genes | t.genes | n.genes))))
        size, width = h_out, out_width
    return slots


def build_space(name: str, genes: list[Gene], stages: list[Stage], resolution: int | str,
                baselines: Mapping[str, Sequence[int]], description: str) -> SearchSpace:
    """The space of a stage table: its genes, the slots compiled from the table, named baselines."""
    return SearchSpace(name, genes, compile_stages(stages, genes, resolution), stages=stages, resolution=resolution,
                       baselines=baselines, description=description)
