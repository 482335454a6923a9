"""Cluster training (issue 18, point 3): Algorithm 1's trainings as Ray tasks on a real loopback cluster.

The same seeds give the same observations as the local process pool; a
cluster without training slots is one line; trainings land only on hosts that
announce training slots; a host that dies mid-training costs a retry, not the
run.  Trainings are tiny (one epoch at a quarter of each network's
resolution), so the file runs in about a minute on 2 cores.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.farm.cluster import TRAINER_RESOURCE, AttachedDevice
from optimizer.training import cluster as cluster_training
from optimizer.training.algorithm1 import build_predictor_by_training
from optimizer.training.checkpoints import load_trained_network
from optimizer.training.cluster import ClusterUnavailable, check_cluster
from optimizer.training.datasets import load_dataset
from optimizer.training.settings import InvalidSettings, TrainingFailed, TrainingSettings
from optimizer.training.workers import run_in_workers

from conftest import one_line_error, run_optimize
from ray_loopback import LoopbackRayCluster, free_port

SETTINGS = TrainingSettings(epochs=1, resolution_scale=0.25)  # 8-16 px: 0.3-2.5 s a training
ALGORITHM1 = {"pool_size": 64, "initial": 4, "p": 2, "q": 2, "budget": 8, "seed": 0, "progress": False}
VARYING = ("train_seconds", "trained_at")  # what a rerun of the same training changes


def _node_id(pause_s: float = 0.0, hang_on: str | None = None, marker: str | None = None) -> str:
    """In a Ray task: the node it runs on (hanging there, after writing ``marker``, on node ``hang_on``)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if node == hang_on:
        Path(marker).write_text(node)
        time.sleep(60)
    time.sleep(pause_s)
    return node


def _fails(problem: Exception) -> None:
    raise problem


@pytest.fixture(autouse=True, scope="module")
def _test_functions_by_value():
    """Ray workers cannot import this test module: its task functions travel by value."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _nodes_with(resource: str) -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(resource)}


def _observations(path: Path) -> list[dict]:
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for name in VARYING:
            del row[name]
    return sorted(rows, key=lambda row: sorted(row.items()))


def test_a_cluster_address_is_checked_before_anything_runs() -> None:
    assert check_cluster("local") == "local"
    with pytest.raises(ClusterUnavailable, match="expected 'local' or the head's HOST:PORT"):
        check_cluster("two words")
    with pytest.raises(ClusterUnavailable, match="Ray Client addresses are not supported"):
        check_cluster("ray://10.0.0.5:10001")
    port = free_port()
    with pytest.raises(ClusterUnavailable, match=f"cannot reach a Ray head at 127.0.0.1:{port}"):
        check_cluster(f"127.0.0.1:{port}")
    with pytest.raises(ClusterUnavailable, match="cannot reach a Ray head"):
        check_cluster("a" * 300)


def _short_root() -> Path:
    """A cluster's folder: Ray's socket paths under pytest's long tmp_path exceed AF_UNIX's 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="rayc-"))


@pytest.fixture()
def measuring_head():
    """A head that measures (a device, no training slots), this process its driver."""
    root = _short_root()
    cluster = LoopbackRayCluster(root / "ray")
    try:
        cluster.start_head(devices=[AttachedDevice("pixel", "127.0.0.1:5599")])
        cluster.connect()
        cluster.wait_for_nodes(1)
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_trainings_need_training_slots_and_land_only_on_them(measuring_head: LoopbackRayCluster) -> None:
    digits = load_dataset("digits")
    calls = [(_node_id, (0.2,)) for _ in range(3)]
    with pytest.raises(ClusterUnavailable, match=f"announces no {TRAINER_RESOURCE} slots.*--train-slots"):
        list(run_in_workers(calls, digits, 1, str, cluster=measuring_head.address))
    # the command line: one line, exit 2, no Ray noise (its own driver process)
    result = run_optimize("build-predictor", "--space", "chamnet-mobile-mini", "--data", "digits", "--out",
                          str(measuring_head.root / "p.json"), "--cluster", measuring_head.address)
    assert f"announces no {TRAINER_RESOURCE} slots" in one_line_error(result)

    measuring_head.add_node("trainer", trainer_slots=1)
    measuring_head.wait_for_nodes(2)
    trainers, head = _nodes_with(TRAINER_RESOURCE), _nodes_with("chameleon-device/pixel/127.0.0.1:5599")
    assert len(trainers) == 1 and len(head) == 1 and not trainers & head
    ran_on = [node for _, node in run_in_workers(calls, digits, 1, str, cluster=measuring_head.address)]
    assert set(ran_on) == trainers  # the head had a free CPU the whole time, and ran none


@pytest.fixture(scope="module")
def two_trainers():
    """Head and one host, one training slot and one CPU each, this process their driver."""
    root = _short_root()
    cluster = LoopbackRayCluster(root / "ray")
    try:
        cluster.start_head(trainer_slots=1)
        cluster.add_node("host2", trainer_slots=1)
        cluster.connect()
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_algorithm1_on_two_nodes_gives_the_local_pool_observations(two_trainers: LoopbackRayCluster,
                                                                   tmp_path: Path) -> None:
    local = tmp_path / "local.parquet"
    on_cluster = tmp_path / "cluster.parquet"
    p_local, h_local, t_local = build_predictor_by_training("chamnet-mobile-mini", "digits", local, settings=SETTINGS,
                                                            workers=2, **ALGORITHM1)
    p_cluster, h_cluster, t_cluster = build_predictor_by_training(
        "chamnet-mobile-mini", "digits", on_cluster, settings=SETTINGS, cluster=two_trainers.address,
        checkpoints=tmp_path / "weights", **ALGORITHM1)

    assert t_local.n_trained == t_cluster.n_trained == 8
    rows = _observations(on_cluster)
    assert rows == _observations(local)  # genes, accuracy, final loss, ids and settings: equal, bit for bit
    assert len({row["accuracy"] for row in rows}) > 1
    assert [(r.n_samples, r.loo_mse) for r in h_cluster.rounds] == [(r.n_samples, r.loo_mse) for r in h_local.rounds]
    assert (p_cluster.X_train_ == p_local.X_train_).all() and (p_cluster.y_train_ == p_local.y_train_).all()
    # the driver wrote every network's weights into its own folder
    assert sorted(Path(r.checkpoint).name for r in t_cluster.results) == sorted(p.name for p in (tmp_path / "weights").iterdir())
    first = t_cluster.results[0]
    assert load_trained_network(first.space, first.genes, tmp_path / "weights", SETTINGS, first.dataset_id) is not None

    # a rerun reuses the file the cluster's trainings were recorded in, as a resumed local run does
    _, _, again = build_predictor_by_training("chamnet-mobile-mini", "digits", on_cluster, settings=SETTINGS,
                                              cluster=two_trainers.address, **ALGORITHM1)
    assert again.n_trained == 0 and again.n_reused == 8


@pytest.mark.slow
def test_a_training_that_raises_is_one_line_naming_it(two_trainers: LoopbackRayCluster) -> None:
    digits = load_dataset("digits")
    calls = [(_node_id, ()), (_fails, (ValueError("bad\nsecond line"),))]
    with pytest.raises(TrainingFailed, match=r"^training call 1 failed: ValueError: bad$"):
        list(run_in_workers(calls, digits, 1, lambda i: f"call {i}", cluster=two_trainers.address))
    with pytest.raises(InvalidSettings, match="^epochs must be >= 1$"):  # the user's errors come back as they are
        list(run_in_workers([(_fails, (InvalidSettings("epochs must be >= 1"),))], digits, 1, str,
                            cluster=two_trainers.address))


@pytest.mark.slow
def test_netadapt_jobs_on_the_cluster_return_what_they_return_here(two_trainers: LoopbackRayCluster) -> None:
    import torch

    from optimizer.netadapt.finetune import TrainJob, run_job, run_jobs
    from optimizer.spaces import get_space

    space = get_space("chamnet-mobile-mini")
    x = space.low.copy()
    x[space.index("resolution")] = 32
    units = tuple(s.key for s in space.signatures(x))
    jobs = [TrainJob(name=f"seed{seed}", units=units, state=None, settings=TrainingSettings(seed=seed), train_on="train",
                     evaluate_on=("selection", "test"), selection_per_class=10, steps=3) for seed in (0, 1, 2)]
    digits = load_dataset("digits")
    here = {job.name: run_job(job, digits) for job in jobs}
    there = {result.name: result for result in run_jobs(jobs, digits, 1, cluster=two_trainers.address)}
    assert sorted(there) == sorted(here)
    for name, result in there.items():
        assert (result.accuracy, result.final_loss) == (here[name].accuracy, here[name].final_loss)
        assert all(torch.equal(value, here[name].state[key]) for key, value in result.state.items())


@pytest.mark.slow
def test_a_host_dying_mid_training_costs_a_retry_then_one_line(two_trainers: LoopbackRayCluster, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs last: it stops host2."""
    digits = load_dataset("digits")
    host2 = (_nodes_with(TRAINER_RESOURCE) - {_head_node()}).pop()
    marker = tmp_path / "hanging"

    def stop_host2_once_it_hangs() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        two_trainers.stop_node("host2")

    calls = [(_node_id, (1.0, host2, str(marker))) for _ in range(4)]
    killer = threading.Thread(target=stop_host2_once_it_hangs)
    killer.start()
    try:
        ran_on = [node for _, node in run_in_workers(calls, digits, 1, str, cluster=two_trainers.address)]
    finally:
        killer.join()
    assert marker.exists() and ran_on == [_head_node()] * 4  # host2's training ran again on the head

    two_trainers.restart_node("host2")
    two_trainers.wait_for_nodes(2)
    host2 = (_nodes_with(TRAINER_RESOURCE) - {_head_node()}).pop()
    marker.unlink()
    monkeypatch.setattr(cluster_training, "MAX_RETRIES", 0)
    killer = threading.Thread(target=stop_host2_once_it_hangs)
    killer.start()
    try:
        with pytest.raises(TrainingFailed, match=r"training call \d did not finish on the cluster: its host died.*1 tries\); kept: nothing$"):
            list(run_in_workers([(_node_id, (1.0, host2, str(marker))) for _ in range(4)], digits, 1,
                                lambda i: f"call {i}", "; kept: nothing", cluster=two_trainers.address))
    finally:
        killer.join()


def _head_node() -> str:
    import ray

    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] and
                n["Resources"].get("node:__internal_head__"))
