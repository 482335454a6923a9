"""Trainings on a Ray cluster: the backend :func:`~optimizer.training.workers.run_in_workers` uses when given a
cluster, instead of its local process pool.

Each call becomes one Ray task asking for ``num_cpus`` (a training's threads:
one) and one ``chameleon-trainer`` slot
(:data:`harness.farm.cluster.TRAINER_RESOURCE`), so trainings run only on
hosts that announce training slots, never on a measurement-only host (whose
device actors hold ``chameleon-device/...`` resources).  The data set goes to
the object store once per batch and is each task's worker data set
(``_WORKER_DATASET``) while it runs the call.  The driver gets every result
back and records it itself (observations, checkpoints, run folders), so a
killed driver resumes as it does with the local pool; Ray stops the tasks of a
driver that died.

Failures: an exception raised by a training is one :class:`TrainingFailed`
line naming it (not retried: training is deterministic, it would fail again).
A training whose host or worker process died is retried by Ray up to
:data:`MAX_RETRIES` times on any host with a free slot (deterministic, so a
retry gives the same result, and nothing was recorded for it); after that it
is one line saying so.

The cluster is ``"local"`` (an embedded Ray on this machine, one training slot
per core) or a head's ``HOST[:PORT]``; this process must be a host of that
cluster (the head, or a host that joined it), as every Ray driver.  A process
already connected to Ray (a notebook, a test) uses that connection; otherwise
each batch connects and disconnects again, as the local pool starts and stops
its processes: no Ray process of ours (for ``local``, no Ray at all) is left
running on this host while it measures between batches.

May import: :mod:`harness.farm.cluster` (the resource names), :mod:`optimizer.training.worker_process`
and :mod:`optimizer.training.settings`; ray only inside functions, so the local pool never loads it.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from harness.errors import ChameleonError
from harness.farm.cluster import DEFAULT_PORT, TRAINER_RESOURCE
from optimizer.training.datasets import ImageDataset
from optimizer.training.settings import TrainingFailed

#: ``--cluster local``: an embedded Ray on this machine instead of a cluster's address.
LOCAL = "local"

#: Times Ray runs a training again whose host or worker process died (not one that raised).
MAX_RETRIES = 2

#: A training's CPU threads (trainings run deterministic on one thread, :func:`optimizer.training.loop._deterministic`).
THREADS_PER_TRAINING = 1

_POLL_S = 2.0  # how often the driver looks whether the cluster still has training slots while it waits
_NO_SLOTS_GRACE_S = 30.0  # a cluster without any training slot for this long fails the run (a host may be restarting)
_REACH_TIMEOUT_S = 5.0

_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-_]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>[0-9]{1,5}))?$")


class ClusterUnavailable(ChameleonError):
    """A cluster that cannot be reached or has no training slots: one line for the user."""


def check_cluster(cluster: str) -> str:
    """``cluster`` normalised (``"local"`` or ``HOST:PORT``) once it is well formed and, for an address, answers.

    Cheap and without Ray: the trainer calls it when it is made, so a wrong
    address fails before hours of measuring, not at the first training.
    """
    text = str(cluster).strip()
    if text == LOCAL:
        return LOCAL
    if text.startswith("ray://"):
        raise ClusterUnavailable(f"--cluster {text}: Ray Client addresses are not supported; run optimize on a host of "
                                 f"the cluster and give the head's HOST:PORT")
    match = _HOST_PORT.match(text)
    port = int(match["port"]) if match and match["port"] else DEFAULT_PORT
    if not match or not 1 <= port <= 65535:
        raise ClusterUnavailable(f"--cluster {cluster!r}: expected 'local' or the head's HOST:PORT (e.g. 10.0.0.5:{DEFAULT_PORT})")
    host = match["host"].strip("[]")
    try:
        with socket.create_connection((host, port), timeout=_REACH_TIMEOUT_S):
            pass
    except (OSError, UnicodeError) as problem:  # UnicodeError: a name the IDNA codec refuses (a label over 63)
        reason = getattr(problem, "strerror", None) or type(problem).__name__
        raise ClusterUnavailable(f"--cluster {text}: cannot reach a Ray head at {host}:{port} ({reason}); start one "
                                 f"with ray start --head") from None
    return f"{match['host']}:{port}"


def connect(cluster: str) -> bool:
    """Connect this process to ``cluster`` as its Ray driver (unless already connected) and check it can train.

    True when this call connected (the caller then disconnects with ``ray.shutdown()``).
    """
    import ray

    cluster = check_cluster(cluster)
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
        if cluster == LOCAL:
            from optimizer.training.worker_process import available_cores

            cores = available_cores()
            options.update(num_cpus=cores, resources={TRAINER_RESOURCE: cores}, include_dashboard=False)
        else:
            options["address"] = cluster
        try:
            ray.init(**options)
        except Exception as problem:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad cluster
            from optimizer.training.worker_process import _first_line

            ray.shutdown()  # whatever it had started
            raise ClusterUnavailable(f"--cluster {cluster}: cannot connect to Ray ({_first_line(problem)})") from None
        started = True
    if not _trainer_slots():
        if started:
            ray.shutdown()
        head = f"HEAD:{DEFAULT_PORT}" if cluster == LOCAL else cluster
        raise ClusterUnavailable(f"--cluster {cluster}: the Ray cluster announces no {TRAINER_RESOURCE} slots; join a "
                                 f"training host with: bench farm join {head} --train-slots N")
    return started


def _trainer_slots() -> float:
    import ray

    return float(ray.cluster_resources().get(TRAINER_RESOURCE, 0.0))


def task_options(num_cpus: float = THREADS_PER_TRAINING, num_gpus: float = 0) -> dict[str, Any]:
    """Where and how a training task runs: its threads, a training slot, a GPU when it trains on CUDA, the retries.

    Our trainings run on the CPU (one thread, deterministic), so the callers
    ask for no GPU; a CUDA training would ask ``num_gpus=1`` here and land on
    a training host with a free GPU.
    """
    options: dict[str, Any] = {"num_cpus": num_cpus, "resources": {TRAINER_RESOURCE: 1},
                               "max_retries": MAX_RETRIES, "retry_exceptions": False}
    if num_gpus:
        options["num_gpus"] = num_gpus
    return options


_WORKER_READY = False


def _run_call(function: Any, args: tuple, dataset: ImageDataset) -> Any:
    """In a Ray worker: the call, with ``dataset`` as the worker's data set (as in a pool worker)."""
    global _WORKER_READY
    from optimizer.training import worker_process

    if not _WORKER_READY:
        worker_process._keep_freed_memory()
        _WORKER_READY = True
    worker_process.set_worker_dataset(dataset)
    try:
        return function(*args)
    finally:
        worker_process.set_worker_dataset(None)


def run_on_cluster(calls: Sequence[tuple[Any, tuple]], dataset: ImageDataset, cluster: str, describe: Any,
                   after_death: str = "", num_cpus: float = THREADS_PER_TRAINING,
                   num_gpus: float = 0) -> Iterator[tuple[int, Any]]:
    """:func:`~optimizer.training.workers.run_in_workers` on a Ray cluster: one task per ``(function, args)``
    call, ``(index, result)`` yielded as they finish (those finishing together in call order).

    The cluster's free training slots set how many run at once.  A failure is
    one :class:`TrainingFailed` line naming ``describe(index)``; the tasks in
    flight are then cancelled (as they are when the generator is abandoned or
    interrupted).
    """
    import ray

    if not calls:
        return
    connected = connect(cluster)
    pending: list = []
    try:
        remote = ray.remote(_run_call).options(**task_options(num_cpus, num_gpus))
        shared = ray.put(dataset)
        refs = {remote.remote(function, args, shared): i for i, (function, args) in enumerate(calls)}
        pending = list(refs)
        without_slots_since: float | None = None
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=_POLL_S)
            if not done:
                without_slots_since = _check_slots(without_slots_since, after_death)
                continue
            if pending:  # every other one finished by now too, to be yielded in call order
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                done += more
            for ref in sorted(done, key=refs.__getitem__):
                yield refs[ref], _result(ref, describe(refs[ref]), after_death)
    finally:
        for ref in pending:  # an error, Ctrl-C or an abandoned generator: stop what is in flight
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or Ray is going down
                pass
        if connected:
            ray.shutdown()


def _result(ref: Any, name: str, after_death: str) -> Any:
    import ray
    from ray import exceptions

    from optimizer.training.worker_process import _first_line

    try:
        return ray.get(ref)
    except exceptions.RayTaskError as problem:  # the training raised
        cause = problem.cause if isinstance(problem.cause, BaseException) else problem
        if isinstance(cause, ChameleonError):
            raise cause from None
        raise TrainingFailed(f"training {name} failed: {_first_line(cause)}") from None
    except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.OutOfMemoryError,
            exceptions.ObjectLostError) as problem:
        raise TrainingFailed(f"training {name} did not finish on the cluster: its host died, or its worker was killed "
                             f"or ran out of memory ({type(problem).__name__}, {MAX_RETRIES + 1} tries){after_death}") from None
    except exceptions.RayError as problem:
        raise TrainingFailed(f"training {name} failed on the cluster: {_first_line(problem)}{after_death}") from None


def _check_slots(since: float | None, after_death: str) -> float | None:
    """None while the cluster has training slots; else when they went, failing after :data:`_NO_SLOTS_GRACE_S`."""
    if _trainer_slots():
        return None
    now = time.monotonic()
    if since is not None and now - since > _NO_SLOTS_GRACE_S:
        raise TrainingFailed(f"the cluster has had no training host ({TRAINER_RESOURCE} slots) for "
                             f"{_NO_SLOTS_GRACE_S:.0f} s{after_death}")
    return now if since is None else since
