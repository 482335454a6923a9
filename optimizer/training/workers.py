"""The worker pool that trainings and NetAdapt's fine-tunes share: spawned processes that hold the data set,
die with their parent, and turn a failure into one line that stops everything in flight (or, given a cluster,
the same calls as Ray tasks: :mod:`optimizer.training.cluster`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from harness.errors import ChameleonError
from optimizer.training.datasets import ImageDataset
from optimizer.training.settings import TrainingFailed
from optimizer.training.worker_process import (  # noqa: F401 -- worker_dataset and the helpers are used from here
    _first_line,
    _keep_freed_memory,
    available_cores,
    set_worker_dataset,
    worker_dataset,
)

def _worker_init(dataset: ImageDataset, parent: int) -> None:
    import signal

    import torch

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _keep_freed_memory()
    torch.set_num_threads(1)
    set_worker_dataset(dataset)


def _die_with_parent(parent: int) -> None:
    """Make this worker die when the trainer does: a SIGKILLed trainer cannot stop its pool.

    Without this, workers of a killed run go on training queued networks whose
    results nobody records, on the cores the resumed run measures latency on.
    Linux only (prctl PR_SET_PDEATHSIG); elsewhere workers end when they next
    find their queue closed.
    """
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the trainer died before prctl took effect
        os._exit(1)


@contextmanager
def _worker_pool(dataset: ImageDataset, workers: int) -> Iterator[ProcessPoolExecutor]:
    """Spawned training processes (one thread each, holding ``dataset``, dying with this one).

    Left normally, the pool is joined; left by an error, Ctrl-C or an
    abandoned generator, the trainings in flight are stopped at once.
    """
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(dataset, os.getpid()))
    finished = False
    try:
        yield pool
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            # Join the pool's manager thread now: left for interpreter exit, its wake-up pipe may already be
            # closed, and concurrent.futures' exit hook then prints a traceback after our one-line error.
            pool.shutdown(wait=True)


def run_in_workers(calls: Sequence[tuple[Any, tuple]], dataset: ImageDataset, workers: int,
                   describe: Any, after_death: str = "", cluster: str | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``(function, args)`` calls in up to ``workers`` spawned processes; yield ``(index, result)`` as they finish.

    Functions run in the workers with the data set at hand (``_WORKER_DATASET``);
    results that finish together come in call order.  A failure is one
    :class:`TrainingFailed` line naming ``describe(index)`` (``after_death``
    is added when a worker process died), and the calls in flight are stopped.
    With ``cluster`` (``"local"`` or a Ray head's ``HOST:PORT``) the calls are
    Ray tasks on that cluster's training hosts instead, under the same contract
    (:mod:`optimizer.training.cluster`; ``workers`` is then unused: the
    cluster's training slots say how many run at once).
    """
    if cluster is not None:
        from optimizer.training.cluster import run_on_cluster

        yield from run_on_cluster(calls, dataset, cluster, describe, after_death)
        return
    with _worker_pool(dataset, min(workers, len(calls))) as pool:
        futures: dict[Future, int] = {pool.submit(function, *args): i for i, (function, args) in enumerate(calls)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.__getitem__):
                i = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise TrainingFailed(f"a training worker process died (killed, or out of memory?) while training "
                                         f"{describe(i)}{after_death}") from None
                except ChameleonError as problem:
                    raise problem from None
                except Exception as problem:
                    raise TrainingFailed(f"training {describe(i)} failed: {_first_line(problem)}") from None
                yield i, result
