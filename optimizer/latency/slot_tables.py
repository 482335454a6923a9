"""Finding the LUT entry of every slot of a batch of architectures by array indexing (issue 17).

EES prices ~84 architectures at a time, thousands of times.  Computing each
slot's unit rows for every batch (the space's slot arithmetic: a stage's
spatial size goes through every earlier stride, ~1,400 small numpy calls per
batch on chamnet-mobile) made the latency model 71-75 % of a search.

A slot reads a few genes only (:attr:`optimizer.spaces.space.Slot.genes`): a
stage's first block the resolution, the previous and its own width and its t.
:class:`GeneGridTables` therefore keeps, per slot, dense arrays over the grid
positions of those genes (88,029 entries in all for chamnet-mobile, 47,627 for
chamnet-res): the unit's count, its LUT entry and its output elements.  A batch
is then one matrix product (grid positions → table positions of every slot)
and a few gathers; only grid points never seen before go through the slot's
arithmetic and the LUT dictionary, once.

:class:`PackedRowTable` is the path for a slot that does not declare its genes
(or architectures off the grid): the slot's rows are computed for every batch,
packed into int64 keys and found by ``searchsorted``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: A unit's LUT entry: median (µs; NaN when missing), whether it was interpolated, its output elements.
Entry = tuple[float, bool, int]

#: Table entries (all slots together) above which a space is priced row by row instead.
MAX_GRID_ENTRIES = 1 << 24

_UNSEEN = -1  # count: the grid point has not been seen; state: its unit has not been looked up


class GeneGridTables:
    """Per slot, the count, LUT entry and output size of its unit at every grid point of the genes it reads.

    ``positions(X)`` maps a batch to table positions ``[slots, N]`` (None when
    a row is off the space's grid); :meth:`fill_counts` and :meth:`resolve`
    fill the entries a batch meets for the first time.  All slots share one
    set of flat arrays, slot ``s`` at ``offsets[s]``.
    """

    def __init__(self, space: Any, strides: np.ndarray, offsets: np.ndarray, size: int) -> None:
        self.space, self.slots = space, tuple(space.slots)
        self.low, self.steps, self.sizes = space.low, space.steps, space.sizes
        self._strides = strides  # [slots, genes] float64: exact below 2**53, and BLAS is 4x numpy's integer matmul
        self._offsets = offsets[:, None]
        self.count = np.full(size, _UNSEEN, dtype=np.int64)
        self.state = np.full(size, _UNSEEN, dtype=np.int8)  # 0: measured, 1: interpolated
        self.value = np.full(size, np.nan)
        self.output = np.zeros(size)
        self._rows: list[dict[tuple[int, ...], Entry]] = [{} for _ in self.slots]  # per slot: unit row -> entry

    @classmethod
    def for_space(cls, space: Any) -> GeneGridTables | None:
        """The tables of ``space``; None when a slot does not declare its genes or the grids are too large."""
        slots = tuple(space.slots)
        if any(getattr(slot, "genes", None) is None for slot in slots):
            return None
        strides = np.zeros((len(slots), space.dim))
        offsets = np.zeros(len(slots), dtype=np.int64)
        size = 0
        for s, slot in enumerate(slots):
            stride = 1
            for gene in reversed(slot.genes):
                strides[s, gene] = stride
                stride *= int(space.sizes[gene])
            offsets[s] = size
            size += stride
            if size > MAX_GRID_ENTRIES:
                return None
        return cls(space, strides, offsets, size)

    def positions(self, X: np.ndarray) -> np.ndarray | None:
        """Table positions ``[slots, N]`` of the rows of ``X``; None if ``X`` is not ``[N, genes]`` on the grid.

        In float64, which holds every grid value exactly (an exact quotient is exact in IEEE arithmetic),
        at a third of the cost of integer division at 10^5 architectures.
        """
        if X.ndim != 2 or X.shape[1] != len(self.low) or X.dtype.kind not in "iuf":
            return None
        index = (X.astype(np.float64, copy=False) - self.low) / self.steps
        if not ((index >= 0) & (index < self.sizes) & (index == np.floor(index))).all():  # NaN and inf fail too
            return None
        return (self._strides @ index.T).astype(np.int64) + self._offsets

    def fill_counts(self, X: np.ndarray, positions: np.ndarray) -> None:
        """Computes the unit counts of the grid points of ``positions`` not seen before."""
        unseen = self.count[positions] < 0
        for s in np.flatnonzero(unseen.any(axis=1)):
            points, rows = self._first_rows(positions[s], unseen[s])
            self.count[points] = np.asarray(self.slots[s].count(X[rows]), dtype=np.int64)

    def resolve(self, X: np.ndarray, positions: np.ndarray, slots: np.ndarray,
                entries: Callable[[list[Any]], list[Entry]]) -> None:
        """Looks up the units of ``slots`` (indices) at the grid points of ``positions`` not looked up yet.

        Slot by slot, each slot's new unit rows in lexicographic order, as the row-by-row path does,
        so an ``entries`` that raises (nothing to interpolate from) raises for the same unit.
        """
        for s in slots:
            todo = self.state[positions[s]] < 0
            if not todo.any():
                continue
            slot, known = self.slots[s], self._rows[s]
            points, rows = self._first_rows(positions[s], todo)
            params = np.asarray(slot.params(X[rows]), dtype=np.int64).reshape(len(rows), -1)
            if params.size and params.min() < 0:
                raise ValueError(f"slot {getattr(slot, 'name', '?')}: negative unit parameters")
            units = list(map(tuple, params.tolist()))  # Python ints: faster than numpy rows below ~10^3
            new = sorted(set(units).difference(known))
            known.update(zip(new, entries([slot.signature(unit) for unit in new])))
            found = [known[unit] for unit in units]
            self.value[points] = [e[0] for e in found]
            self.state[points] = [e[1] for e in found]
            self.output[points] = [e[2] for e in found]

    @staticmethod
    def _first_rows(positions: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct positions among ``positions[mask]`` and the first row of the batch at each."""
        rows = np.flatnonzero(mask)
        points, first = np.unique(positions[rows], return_index=True)
        return points, rows[first]


class PackedRowTable:
    """The LUT entries of one slot's units, found by packed keys (slots without declared genes, rows off the grid).

    A unit is a row of the slot's integer parameters.  Each row is packed into one int64 key (mixed
    radix, one power of two per column, grown when a larger value arrives) and the keys seen so far
    are kept sorted, so a batch costs a ``searchsorted``; only rows never seen before go through
    Python (the signature, the LUT dictionary).
    """

    def __init__(self, slot: Any, entries: Callable[[list[Any]], list[Entry]]) -> None:
        self.slot, self.entries = slot, entries
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
        entries = self.entries([self.slot.signature(tuple(int(v) for v in row)) for row in rows])
        self.rows = np.vstack([self.rows, rows])
        self.values = np.concatenate([self.values, [e[0] for e in entries]])
        self.guessed = np.concatenate([self.guessed, np.array([e[1] for e in entries], dtype=bool)])
        self.outputs = np.concatenate([self.outputs, [float(e[2]) for e in entries]])
        self._rekey()
