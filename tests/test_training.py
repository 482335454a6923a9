"""Real training on digits, at tiny settings: determinism, the observations file, reuse, kill/resume, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from optimizer.spaces import get_space
from optimizer.accuracy.trainer_protocol import ObservationsTrainer
from optimizer.training.trainer import TorchTrainer
from optimizer.training.settings import TrainingSettings
from optimizer.training.checkpoints import load_trained_network
from optimizer.training.observations import observations_schema
from optimizer.training.loop import train_architecture

from conftest import one_line_error

SPACE = get_space("chamnet-mobile-mini")
TINY = TrainingSettings(epochs=1, batch_size=64)
ROOT = Path(__file__).resolve().parent.parent


def small_architectures(n: int, seed: int = 3) -> np.ndarray:
    """``n`` distinct architectures at 32 px (the cheapest resolution) with narrow stages."""
    X = SPACE.random(n, rng=seed)
    X[:, SPACE.index("resolution")] = 32
    for name in ("c5", "c6", "c7", "c_last"):
        X[:, SPACE.index(name)] = SPACE.low[SPACE.index(name)]
    return X


def run_optimize(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT)


def test_training_is_deterministic() -> None:
    x = small_architectures(1)[0]
    first = train_architecture(SPACE.name, x, "digits", TINY)
    again = train_architecture(SPACE.name, x, "digits", TINY)
    assert 0.0 <= first.accuracy <= 1.0 and first.epochs == 1 and first.genes == tuple(map(int, x))
    assert (again.accuracy, again.final_loss) == (first.accuracy, first.final_loss)
    assert first.accuracy > 0.3  # one epoch learns something (chance is 0.1)
    other = train_architecture(SPACE.name, x, "digits", replace(TINY, seed=1))
    assert other.final_loss != first.final_loss and other.settings_id != first.settings_id
    assert first.dataset_id.startswith("digits-") and first.code_version.startswith("train-")


def test_trainer_appends_and_reuses(tmp_path: Path) -> None:
    X = small_architectures(2)
    observations = tmp_path / "obs.parquet"
    checkpoints = tmp_path / "weights"
    trainer = TorchTrainer(SPACE, "digits", TINY, observations, workers=1, checkpoints=checkpoints, progress=False)
    values = trainer.train(np.vstack([X, X[:1]]))  # a repeated row is trained once
    assert trainer.n_trained == 2 and trainer.n_reused == 0
    assert values[2] == values[0] and ((values >= 0) & (values <= 1)).all()

    table = pq.read_table(observations)
    assert table.num_rows == 2
    assert table.schema.names == observations_schema(SPACE.gene_names).names
    row = table.to_pylist()[0]
    assert row["space"] == SPACE.name and row["epochs"] == 1 and row["seed"] == 0
    assert row["dataset_id"] == trainer.dataset.dataset_id and row["settings_id"] == TINY.settings_id
    # the file is an observations file like any other
    assert np.array_equal(ObservationsTrainer(observations, SPACE.gene_names, SPACE.low, SPACE.high).train(X), values[:2])

    again = TorchTrainer(SPACE, "digits", TINY, observations, workers=2, progress=False)  # would spawn, if it trained
    assert np.array_equal(again.train(X[::-1]), values[:2][::-1])
    assert again.n_trained == 0 and again.n_reused == 2 and pq.read_table(observations).num_rows == 2
    # other settings are other observations
    assert TorchTrainer(SPACE, "digits", replace(TINY, seed=5), observations, progress=False).known() == {}

    net = load_trained_network(SPACE, X[1], checkpoints, TINY, trainer.dataset.dataset_id)
    assert net is not None and not net.training
    assert load_trained_network(SPACE, X[1], checkpoints, replace(TINY, seed=5), trainer.dataset.dataset_id) is None
    assert net.export_onnx(tmp_path / "winner.onnx").stat().st_size > 0


def test_kill_then_resume_reuses_what_was_trained(tmp_path: Path) -> None:
    X = small_architectures(3, seed=11)
    observations = tmp_path / "obs.parquet"
    script = textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from optimizer.spaces import get_space
        from optimizer.training.trainer import TorchTrainer, TrainingSettings
        if __name__ == "__main__":
            trainer = TorchTrainer(get_space("chamnet-mobile-mini"), "digits", TrainingSettings(epochs=1, batch_size=64),
                                   Path({str(observations)!r}), workers=1, progress=False)
            trainer.train(np.array({X.tolist()!r}))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not observations.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert observations.exists(), child.stderr.read() if child.poll() is not None else "no observation in 120 s"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stderr.close()
    kept = pq.read_table(observations).num_rows
    assert 1 <= kept < 3

    resumed = TorchTrainer(SPACE, "digits", TINY, observations, workers=1, progress=False)
    values = resumed.train(X)
    assert resumed.n_reused == kept and resumed.n_trained == 3 - kept
    assert values[0] == pq.read_table(observations).column("accuracy")[0].as_py()
    assert pq.read_table(observations).num_rows == 3


@pytest.mark.slow
def test_build_predictor_trains_for_real_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "pred.json"
    args = ["build-predictor", "--space", "chamnet-mobile-mini", "--data", "digits", "--out", str(out),
            "--initial", "2", "--p", "1", "--q", "1", "--budget", "4", "--epochs", "1", "--pool", "256",
            "--workers", "2", "--json"]
    result = run_optimize(*args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["samples"] == 4 and report["trained"] == 4 and report["reused"] == 0
    assert report["stop_reason"] == "budget" and [r["samples"] for r in report["rounds"]] == [2, 4]
    assert report["settings"]["epochs"] == 1 and report["dataset_id"].startswith("digits-")
    observations = Path(report["observations"])
    assert observations == tmp_path / "pred-observations.parquet" and pq.read_table(observations).num_rows == 4
    saved = out.read_text()

    again = run_optimize(*args)  # resuming a finished run trains nothing and retraces the same rounds
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["trained"] == 0 and second["reused"] == 4 and out.read_text() == saved

    # the file feeds the observations path too (no --data)
    plain = run_optimize("build-predictor", "--space", "chamnet-mobile-mini", "--observations", str(observations),
                         "--out", str(tmp_path / "from-file.json"), "--initial", "2", "--budget", "4", "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["samples"] == 4


def _spawned_workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker processes through /proc")
def test_a_dead_worker_is_one_line(tmp_path: Path) -> None:
    cli = subprocess.Popen([sys.executable, "-m", "optimizer", "build-predictor", "--space", "chamnet-mobile-mini",
                            "--data", "digits", "--out", str(tmp_path / "p.json"), "--initial", "2", "--budget", "4",
                            "--epochs", "3", "--workers", "2"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while not workers and cli.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _spawned_workers(cli.pid)
        assert workers, "no training worker appeared"
        time.sleep(0.5)
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    line = one_line_error(subprocess.CompletedProcess(cli.args, cli.returncode, stdout, stderr))
    assert "training worker process died" in line


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_trainer(tmp_path: Path) -> None:
    """A SIGKILLed run must not leave workers training on the cores a resumed run measures on."""
    cli = subprocess.Popen([sys.executable, "-m", "optimizer", "build-predictor", "--space", "chamnet-mobile-mini",
                            "--data", "digits", "--out", str(tmp_path / "p.json"), "--initial", "4", "--budget", "4",
                            "--epochs", "5", "--workers", "2"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and cli.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _spawned_workers(cli.pid)
        assert len(workers) == 2, "the training workers did not appear"
        time.sleep(1.0)  # past their initializer
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "training workers outlived their killed trainer"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
