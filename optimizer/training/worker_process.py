"""What a training process holds and needs, in a pool worker or a Ray task: its data set and its memory habits.

Shared by :mod:`optimizer.training.workers` (the process pool) and
:mod:`optimizer.training.cluster` (Ray tasks), which import it and not each
other's internals.  May import: :mod:`optimizer.training.datasets`.
"""

from __future__ import annotations

import os

from optimizer.training.datasets import ImageDataset

_WORKER_DATASET: ImageDataset | None = None


def set_worker_dataset(dataset: ImageDataset | None) -> None:
    """The data set the calls in this process train on (None: none, between calls)."""
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def worker_dataset() -> ImageDataset:
    """The data set this worker process was started with (in a worker of :func:`run_in_workers`)."""
    assert _WORKER_DATASET is not None, "not in a training worker"
    return _WORKER_DATASET


def _keep_freed_memory() -> None:
    """Let this worker reuse the memory it frees instead of handing it back to the system (glibc only).

    A training step allocates and frees the same few hundred MB of activations
    and gradients, tensors of 1-30 MB each.  glibc serves blocks that large
    with fresh ``mmap`` pages and unmaps them when freed, so every step
    page-faulted its memory in again, zeroed by the kernel: 2.4 million faults
    and a fifth of a 48 px network's training time in system calls.  Blocks up
    to 32 MB (glibc's ceiling) now come from the heap, whose freed top is kept
    (a worker holds at most its peak, which it reaches every step anyway).
    Memory layout changes no result.  Only in workers: they are ours, and
    the trainer's process (which measures latency in the main job) keeps
    glibc's defaults.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
    mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _first_line(problem: BaseException) -> str:
    text = str(problem).strip()
    return f"{type(problem).__name__}: {text.splitlines()[0]}" if text else type(problem).__name__
