"""Training sampled architectures for real: the :class:`~optimizer.accuracy.trainer_protocol.Trainer` behind
Algorithm 1.

:class:`TorchTrainer` trains a batch of architectures in parallel processes
(:mod:`optimizer.training.workers`), appends every finished training to an
observations Parquet file at once (:mod:`optimizer.training.observations`), and
reuses what that file already holds for the same space, data set, settings and
code version: re-running after a kill trains only what is missing, which makes
Algorithm 1 resumable.  Given a cluster, the trainings are Ray tasks on its
training hosts (:mod:`optimizer.training.cluster`) and this process records
them all the same, checkpoints included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from optimizer.accuracy.trainer_protocol import _as_matrix
from optimizer.training.checkpoints import checkpoint_path
from optimizer.training.datasets import ImageDataset, load_dataset
from optimizer.training.loop import train_architecture
from optimizer.training.observations import (
    _row_key,
    append_observation,
    read_observations,
)
from optimizer.training.settings import (
    InvalidSettings,
    TrainingFailed,
    TrainingSettings,
    TrainResult,
    _space,
    check_dataset_fits,
    code_version,
)
from optimizer.training.workers import (
    _first_line,
    available_cores,
    run_in_workers,
    worker_dataset,
)


def _worker_train(space_name: str, genes: list[int], settings: TrainingSettings,
                  checkpoint: str | None) -> TrainResult:
    return train_architecture(space_name, genes, worker_dataset(), settings,
                              None if checkpoint is None else Path(checkpoint))


def _cluster_train(space_name: str, genes: list[int], settings: TrainingSettings,
                   keep_weights: bool) -> tuple[TrainResult, bytes | None]:
    """On a training host of a cluster: the training, and its checkpoint file's bytes for the driver to write
    (the run's folder is on the driver's host, not on this one)."""
    if not keep_weights:
        return _worker_train(space_name, genes, settings, None), None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="chameleon-weights-") as folder:
        path = Path(folder) / "network.pt"
        result = _worker_train(space_name, genes, settings, str(path))
        return result, path.read_bytes()


class TorchTrainer:
    """Trains architectures of ``space`` on a data set, in parallel, recording each in ``observations``.

    ``train(X)`` returns the held-out accuracies of the rows of ``X`` (the
    space's genes), in order.  Architectures the observations file already
    holds for this space, data set, settings and code version are read from it
    (their mean where repeated), not trained again; the rest are trained in
    ``workers`` spawned processes (one thread each) and appended to the file
    one by one as they finish, so a kill loses only the trainings in flight.
    ``checkpoints`` (a folder) keeps each trained network's weights
    (:func:`load_trained_network`).  ``cluster`` (``"local"`` or a Ray head's
    ``HOST:PORT``; None: the local process pool) trains them as Ray tasks on
    the cluster's training hosts instead (``workers`` is then unused), with the
    same results for the same seeds.

    Counters: ``n_trained`` (trainings run by this object), ``n_reused``
    (answers read from the file), ``results`` (this object's TrainResults).
    """

    def __init__(self, space: Any, data_spec: str | Path | ImageDataset, settings: TrainingSettings = TrainingSettings(),
                 observations: Path = Path("observations.parquet"), workers: int | None = None,
                 checkpoints: Path | None = None, progress: bool = True, cluster: str | None = None) -> None:
        self.space = _space(space)
        self.dataset = data_spec if isinstance(data_spec, ImageDataset) else load_dataset(data_spec)
        check_dataset_fits(self.space, self.dataset)
        self.settings = settings
        self.observations = Path(observations)
        self.workers = available_cores() if workers is None else int(workers)
        if self.workers < 1:
            raise InvalidSettings(f"workers must be >= 1 (got {workers})")
        self.checkpoints = None if checkpoints is None else Path(checkpoints)
        if cluster is not None:  # a wrong address fails now, not after the steps before the first training
            from optimizer.training.cluster import check_cluster

            cluster = check_cluster(cluster)
        self.cluster = cluster
        self.progress = progress
        self.code_version = code_version()
        self.n_trained = 0
        self.n_reused = 0
        self.results: list[TrainResult] = []
        read_observations(self.observations, self.space)  # a foreign or corrupt file fails now, not after training

    def known(self) -> dict[tuple[int, ...], float]:
        """Accuracies already observed under this trainer's space, data set, settings and code version."""
        table = read_observations(self.observations, self.space)
        if table is None:
            return {}
        columns = table.to_pydict()
        sums: dict[tuple[int, ...], list[float]] = {}
        for i in range(table.num_rows):
            if (columns["dataset_id"][i] == self.dataset.dataset_id and columns["settings_id"][i] == self.settings.settings_id
                    and columns["code_version"][i] == self.code_version):
                key = _row_key(columns[name][i] for name in self.space.gene_names)
                sums.setdefault(key, []).append(columns["accuracy"][i])
        return {key: float(np.mean(values)) for key, values in sums.items()}

    def train(self, X: np.ndarray) -> np.ndarray:
        X = _as_matrix(X, self.space.dim)
        outside = ~self.space.contains(X)
        if outside.any():
            self.space._vector(X[int(np.argmax(outside))])  # raises InvalidArchitecture naming the genes
        keys = [_row_key(row) for row in X]
        known = self.known()
        todo = list(dict.fromkeys(key for key in keys if key not in known))
        self.n_reused += sum(1 for key in dict.fromkeys(keys) if key in known)
        for result in self._run(todo):
            append_observation(self.observations, self.space, result)
            known[_row_key(result.genes)] = result.accuracy
            self.results.append(result)
            self.n_trained += 1
        return np.array([known[key] for key in keys], dtype=np.float64)

    def _checkpoint(self, key: tuple[int, ...]) -> str | None:
        if self.checkpoints is None:
            return None
        return str(checkpoint_path(self.checkpoints, self.space, key, self.settings, self.dataset.dataset_id))

    def _run(self, todo: list[tuple[int, ...]]) -> Iterator[TrainResult]:
        if not todo:
            return
        from harness.console import stderr
        from harness.progress_lines import track

        # A bar on a terminal; in a log, a line at least every 20 s (one-line errors stay one line: a step
        # shorter than that prints nothing).
        with track(f"training {self.space.name} on {self.dataset.name}", stderr if self.progress else None,
                   describe=str, bold=True, transient=True) as progress:
            progress(0, len(todo))
            if self.workers == 1 and self.cluster is None:
                for done, key in enumerate(todo, 1):
                    try:
                        result = train_architecture(self.space.name, key, self.dataset, self.settings, self._checkpoint(key))
                    except ChameleonError:
                        raise
                    except Exception as problem:
                        raise TrainingFailed(f"training {self._describe(key)} failed: {_first_line(problem)}") from None
                    progress(done, len(todo), self._last(result))
                    yield result
            else:
                yield from self._run_pool(todo, progress)

    def _run_pool(self, todo: list[tuple[int, ...]], progress: Any) -> Iterator[TrainResult]:
        if self.cluster is None:
            calls = [(_worker_train, (self.space.name, list(key), self.settings, self._checkpoint(key))) for key in todo]
        else:
            calls = [(_cluster_train, (self.space.name, list(key), self.settings, self.checkpoints is not None))
                     for key in todo]
        done = 0
        for i, result in run_in_workers(calls, self.dataset, self.workers, lambda i: self._describe(todo[i]),
                                        f"; the trainings finished before are kept in {self.observations}",
                                        cluster=self.cluster):
            if self.cluster is not None:
                result = self._received(todo[i], *result)
            done += 1
            progress(done, len(todo), self._last(result))
            yield result

    def _received(self, key: tuple[int, ...], result: TrainResult, weights: bytes | None) -> TrainResult:
        """A training from a cluster host, checked and with its checkpoint written here."""
        if result.code_version != self.code_version:  # its rows would never be reused here
            raise TrainingFailed(f"training {self._describe(key)} ran with {result.code_version} on the cluster, this "
                                 f"process has {self.code_version}: install the same Chameleon and torch on every "
                                 f"training host")
        checkpoint = self._checkpoint(key)
        if checkpoint is None or weights is None:
            return result
        from harness.atomic import write_atomically

        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(Path(checkpoint), lambda tmp: tmp.write_bytes(weights))
        return replace(result, checkpoint=checkpoint)

    def _describe(self, key: tuple[int, ...]) -> str:
        return f"{self.space.name} (" + ", ".join(f"{n}={v}" for n, v in zip(self.space.gene_names, key)) + ")"

    @staticmethod
    def _last(result: TrainResult) -> str:
        return f"{result.genes[0]} px: {result.accuracy:.3f} in {result.train_seconds:.0f} s"
