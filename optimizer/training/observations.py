"""The observations file: one Parquet row per finished training (genes, accuracy, settings, data set, code
version), appended under a lock at once, so a killed Algorithm 1 keeps every training it finished."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optimizer.accuracy.trainer_protocol import InvalidObservations
from optimizer.training.settings import TrainResult, _space

OBSERVATIONS_FILE = "training-observations"


OBSERVATIONS_VERSION = "1"


def observations_schema(gene_names: Sequence[str]):
    import pyarrow as pa

    fields = [pa.field(name, pa.int64(), nullable=False) for name in gene_names]
    fields += [
        pa.field("accuracy", pa.float64(), nullable=False),
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("train_seconds", pa.float64(), nullable=False),
        pa.field("final_loss", pa.float64()),
        pa.field("dataset_id", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("settings_id", pa.string(), nullable=False),
        pa.field("settings", pa.string(), nullable=False),
        pa.field("code_version", pa.string(), nullable=False),
        pa.field("space", pa.string(), nullable=False),
        pa.field("trained_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    return pa.schema(fields, metadata={"chameleon.file": OBSERVATIONS_FILE,
                                       "chameleon.observations_version": OBSERVATIONS_VERSION})


def read_observations(path: Path, space: Any):
    """The training observations file as a pyarrow Table (None if there is no file yet), checked to be ours."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, space = Path(path), _space(space)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise InvalidObservations(f"{path}: training observations are written as Parquet (.parquet)")
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as problem:
        first = (str(problem).strip().splitlines() or [type(problem).__name__])[0]
        raise InvalidObservations(f"{path}: cannot read observations ({first})") from None
    metadata = table.schema.metadata or {}
    if metadata.get(b"chameleon.file") != OBSERVATIONS_FILE.encode():
        raise InvalidObservations(f"{path}: not a training observations file written by Chameleon "
                                  f"(give --observations a new file)")
    schema = observations_schema(space.gene_names)
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise InvalidObservations(f"{path}: observations of another space or version (no column {missing[0]!r})")
    spaces = set(table.column("space").to_pylist())
    if spaces - {space.name}:
        raise InvalidObservations(f"{path}: holds observations of {', '.join(sorted(spaces))}, not {space.name}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError) as problem:
        raise InvalidObservations(f"{path}: unexpected column types ({problem})") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``FILE.lock`` while the observations file is read, extended and rewritten."""
    lock = path.with_name(path.name + ".lock")
    try:
        handle = open(lock, "a")
    except OSError as problem:
        raise InvalidObservations(f"{lock}: cannot open the lock file ({problem.strerror or problem})") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_observation(path: Path, space: Any, result: TrainResult) -> None:
    """Add one training to the observations file (an atomic rewrite: readers see all of it or none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.atomic import write_atomically

    path, space = Path(path), _space(space)
    schema = observations_schema(space.gene_names)
    row = dict(zip(space.gene_names, result.genes))
    row |= {name: getattr(result, name) for name in schema.names if name not in row}
    new = pa.Table.from_pylist([row], schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        existing = read_observations(path, space)
        table = new if existing is None else pa.concat_tables([existing, new])
        write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def _row_key(genes: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in genes)
