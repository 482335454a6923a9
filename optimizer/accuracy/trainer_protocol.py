"""Trainers: the edge where an architecture gets its measured value.

ChamNet's Algorithm 1 calls ``Train(samples)``: train each sampled network and
read its accuracy (or, for the energy predictor, measure its energy on the
device).  A :class:`Trainer` is anything with ``train(X) -> values``; the
predictor-building loop (``optimizer.accuracy.predictors``) only ever talks to that.

* :class:`ObservationsTrainer` answers from a file of results gathered
  elsewhere (a training farm, a Monsoon session): one column per gene plus a
  target column.  It never guesses: an architecture that is not in the file is
  a :class:`MissingObservation`.
* :class:`FunctionTrainer` wraps a callable, for tests and benchmarks.

Gene vectors are plain ``numpy`` rows in the search space's own units (the
integers of the space's genes), not the unit box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from harness.errors import ChameleonError


class MissingObservation(ChameleonError):
    """Architectures asked for that the observations file has no value for."""


class InvalidObservations(ChameleonError):
    """An observations file that is unreadable, lacks columns or has out-of-range genes."""


@runtime_checkable
class Trainer(Protocol):
    """Architectures (n × genes, the space's own units) → one value each (accuracy, energy_mj...)."""

    def train(self, X: np.ndarray) -> np.ndarray: ...


def _row_key(row: np.ndarray) -> bytes:
    # + 0.0 folds -0.0 into 0.0 so both spell the same key.
    return (np.asarray(row, dtype=np.float64) + 0.0).tobytes()


def _as_matrix(X: np.ndarray, n_genes: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or (n_genes is not None and X.shape[1] != n_genes):
        expected = f"(n, {n_genes})" if n_genes is not None else "(n, genes)"
        raise ValueError(f"architectures must be an array of shape {expected}, got {X.shape}")
    return X


class ObservationsTrainer:
    """Looks up observed values (accuracy, energy...) of architectures in a Parquet or CSV file.

    The file has one column per gene, named by ``gene_names`` (in the order of
    the gene vectors' columns), and a ``target`` column (``accuracy`` unless
    told otherwise, e.g. ``energy_mj``); other columns are ignored.  Rows that
    repeat one architecture are averaged (repeated training runs or
    measurements of one network).  ``low``/``high`` (inclusive, per gene) are
    the search space's bounds: a row outside them means the file belongs to
    another space, and is refused rather than silently used.
    """

    def __init__(
        self,
        path: str | Path,
        gene_names: Sequence[str],
        low: Sequence[float] | np.ndarray,
        high: Sequence[float] | np.ndarray,
        target: str = "accuracy",
    ) -> None:
        self.path = Path(path)
        self.gene_names = tuple(gene_names)
        self.target = target
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != (len(self.gene_names),) or self.high.shape != (len(self.gene_names),):
            raise ValueError(
                f"low and high need one bound per gene ({len(self.gene_names)}), "
                f"got shapes {self.low.shape} and {self.high.shape}"
            )
        if len(set(self.gene_names)) != len(self.gene_names):
            raise ValueError("gene_names has repeated names")
        genes, values = self._read()
        self._check_bounds(genes)
        self.genes, self.values = self._average_repeats(genes, values)
        self._lookup = {_row_key(row): float(v) for row, v in zip(self.genes, self.values)}

    def __len__(self) -> int:
        return len(self.values)

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow as pa

        suffix = self.path.suffix.lower()
        if not self.path.exists():
            raise InvalidObservations(f"{self.path}: no such observations file")
        try:
            if suffix in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                table = pq.read_table(self.path)
            elif suffix == ".csv":
                import pyarrow.csv as pacsv

                table = pacsv.read_csv(self.path)
            else:
                raise InvalidObservations(f"{self.path}: observations must be a .parquet or .csv file")
        except InvalidObservations:
            raise
        except (OSError, pa.ArrowException) as problem:
            first = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
            raise InvalidObservations(f"{self.path}: cannot read observations ({first})") from None
        wanted = [*self.gene_names, self.target]
        missing = [name for name in wanted if name not in table.column_names]
        if missing:
            raise InvalidObservations(
                f"{self.path}: missing column(s) {', '.join(map(repr, missing))} "
                f"(has {', '.join(map(repr, table.column_names))})"
            )
        if table.num_rows == 0:
            raise InvalidObservations(f"{self.path}: no observations")
        columns = []
        for name in wanted:
            column = table.column(name)
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise InvalidObservations(f"{self.path}: column {name!r} is {column.type}, not numeric")
            if column.null_count:
                raise InvalidObservations(f"{self.path}: column {name!r} has {column.null_count} empty value(s)")
            columns.append(column.to_numpy().astype(np.float64))
        genes = np.column_stack(columns[:-1])
        values = columns[-1]
        bad = ~np.isfinite(genes).all(axis=1) | ~np.isfinite(values)
        if bad.any():
            raise InvalidObservations(
                f"{self.path}: {int(bad.sum())} row(s) have non-finite values, e.g. row {int(np.argmax(bad)) + 1}"
            )
        return genes, values

    def _check_bounds(self, genes: np.ndarray) -> None:
        outside = (genes < self.low) | (genes > self.high)
        rows = outside.any(axis=1)
        if rows.any():
            row = int(np.argmax(rows))
            gene = int(np.argmax(outside[row]))
            raise InvalidObservations(
                f"{self.path}: {int(rows.sum())} row(s) have genes outside the space's bounds, e.g. row {row + 1}: "
                f"{self.gene_names[gene]}={genes[row, gene]:g} not in [{self.low[gene]:g}, {self.high[gene]:g}]"
            )

    @staticmethod
    def _average_repeats(genes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique, inverse = np.unique(genes + 0.0, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        sums = np.bincount(inverse, weights=values, minlength=len(unique))
        counts = np.bincount(inverse, minlength=len(unique))
        return unique, sums / counts

    def train(self, X: np.ndarray) -> np.ndarray:
        """The observed values of the exact gene vectors in ``X`` (its rows, in order)."""
        X = _as_matrix(X, len(self.gene_names))
        found = [self._lookup.get(_row_key(row)) for row in X]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            example = ", ".join(f"{name}={value:g}" for name, value in zip(self.gene_names, X[missing[0]]))
            raise MissingObservation(
                f"{self.path}: {len(missing)} of {len(X)} architecture(s) have no {self.target!r} observation, "
                f"e.g. ({example})"
            )
        return np.asarray(found, dtype=np.float64)


class FunctionTrainer:
    """A trainer computed by a callable on the architectures matrix (tests, benchmarks, simulators).

    ``calls`` keeps every matrix it was asked to train, so a test can check what
    was trained and that nothing was trained twice.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn
        self.calls: list[np.ndarray] = []

    @property
    def n_trained(self) -> int:
        return sum(len(X) for X in self.calls)

    def train(self, X: np.ndarray) -> np.ndarray:
        X = _as_matrix(X)
        self.calls.append(X.copy())
        values = np.asarray(self.fn(X), dtype=np.float64).reshape(-1)
        if values.shape != (len(X),):
            raise ValueError(f"the trainer's function returned {values.shape[0]} values for {len(X)} architectures")
        return values
