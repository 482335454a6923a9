"""NetAdapt end to end at tiny settings: real trainings on digits, real ONNX Runtime timings, kill and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from harness.lut.store import read_lut, row_signature, write_lut_atomic
from harness.plans import Plan
from harness.profiles import load_profile
from harness.signature import make_signature
from harness.sweep import OVERHEAD_SIGNATURE, run_sweep
from optimizer.netadapt import finetune as finetune_module
from optimizer.netadapt import measure as measure_module
from optimizer.training.datasets import load_dataset
from optimizer.netadapt.layer_tables import LatencyTable, MacsCount, interpolate_by_channels
from optimizer.netadapt import NetAdaptError, NetAdaptRun, NetAdaptSettings, load_network, parse_budget
from optimizer.spaces import get_space
from optimizer.training.settings import TrainingSettings
from optimizer.training.loop import train_architecture

from conftest import one_line_error

ROOT = Path(__file__).resolve().parent.parent
SPACE = get_space("chamnet-mobile-mini")
TINY = NetAdaptSettings(short_term_steps=3, long_term_epochs=1, initial_fraction=0.08, decay=1.0, selection_per_class=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small mini-space network at 32 px, trained one epoch on digits."""
    x = SPACE.baselines()["uniform-mid-32"]
    path = tmp_path_factory.mktemp("netadapt-model") / "model.pt"
    train_architecture(SPACE.name, x, "digits", TrainingSettings(epochs=1), checkpoint=path)
    return path


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def run_optimize(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT, **kwargs)


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_budgets_parse_with_units_or_as_a_share_of_the_start() -> None:
    assert parse_budget("5ms", "latency") == (5.0, False)
    assert parse_budget("0.2", "latency") == (0.2, False)
    assert parse_budget("60%", "latency") == (0.6, True)
    assert parse_budget("30mJ", "energy") == (30.0, False)
    assert parse_budget("2.5MMACs", "macs") == (2.5, False)
    for bad, resource in (("5mJ", "latency"), ("fast", "latency"), ("0ms", "latency"), ("150%", "macs")):
        with pytest.raises(NetAdaptError):
            parse_budget(bad, resource)


def test_the_reduction_schedule_decays_geometrically() -> None:
    settings = NetAdaptSettings(initial_reduction=0.5, decay=0.96)
    assert settings.reduction(0, 10.0) == 0.5
    assert settings.reduction(3, 10.0) == pytest.approx(0.5 * 0.96 ** 3)
    assert NetAdaptSettings(initial_fraction=0.02).reduction(0, 10.0) == pytest.approx(0.2)


def test_a_measured_network_is_a_final_only_with_a_margin_under_its_budget() -> None:
    """A final is measured again after its fine-tune; a network 0.6% under its budget measured 0.6% over it
    the second time (a fresh-clone run), so a measured candidate must be MEASURED_MARGIN under."""
    from optimizer.netadapt.records import MEASURED_MARGIN, Iteration, meets_budget as _meets

    def network(estimate: float, measured: float | None) -> Iteration:
        return Iteration(index=1, units=[], channels=[], estimate=estimate, interpolated=[], constraint=None,
                         reduction=None, group=None, from_channels=None, to_channels=None, proposals=0,
                         selection_accuracy=None, test_accuracy=0.9, macs=0, checkpoint="", onnx="",
                         measured_ms=measured)

    assert MEASURED_MARGIN == 0.02
    assert _meets(network(0.99, None), 1.0)  # not measured (MACs, energy, no device): the estimate decides
    assert not _meets(network(1.01, None), 1.0)
    assert not _meets(network(0.95, 0.994), 1.0)  # within the budget, but inside the re-measurement's noise
    assert _meets(network(0.95, 0.979), 1.0)
    assert not _meets(network(1.01, 0.95), 1.0)  # the estimate must meet it too


def test_a_schedule_that_cannot_reach_the_budget_is_refused(tmp_path, trained, digits) -> None:
    slow = NetAdaptSettings(initial_fraction=0.01, decay=0.9)  # removes at most 10% of the start
    with pytest.raises(NetAdaptError, match="reduction schedule"):
        NetAdaptRun(model=trained, out=tmp_path / "run", budgets=["80%"], table=MacsCount(), data=digits,
                    settings=slow, baselines=(), workers=1).run()
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_missing_channel_counts_are_interpolated_between_measured_ones() -> None:
    def conv(c_out: int):
        return make_signature("conv2d", c_in=16, h=8, w=8, c_out=c_out, kernel=3, activation="relu")

    entries = [(conv(16), 10.0), (conv(32), 18.0), (conv(64), 34.0)]
    assert interpolate_by_channels(conv(24), entries) == pytest.approx(14.0)  # MACs scale with c_out here
    assert interpolate_by_channels(conv(48), entries) == pytest.approx(26.0)
    assert 0 < interpolate_by_channels(conv(8), entries) < 10.0  # below the range: the line, not below half
    other = make_signature("conv2d", c_in=16, h=16, w=16, c_out=24, kernel=3, activation="relu")
    assert interpolate_by_channels(other, entries) is None  # another layer (another input size)


def test_the_latency_table_measures_missing_counts_or_flags_interpolated_ones(tmp_path, profiles_dir) -> None:
    profile = load_profile("fastcpu")
    net, _ = load_network_units()
    lut = tmp_path / "lut.parquet"
    run_sweep(profile, Plan(name="p", description="", source=Path("<t>"),
                            signatures=tuple(dict.fromkeys([*net, OVERHEAD_SIGNATURE]))), lut)
    from optimizer.netadapt.pruning import ChannelStructure

    structure = ChannelStructure(net)
    group = next(g for g in structure.groups if g.channels > 8 and structure.allowed(g.index, g.channels - 8))
    smaller = structure.resized({group.index: group.channels - 8})
    offline = LatencyTable(lut)
    guessed = offline.estimate(smaller)
    assert guessed.interpolated and set(guessed.interpolated) <= {s.key for s in smaller}
    assert 0 < guessed.value < offline.estimate(net).value * 1.5
    measuring = LatencyTable(lut, profile=profile)
    assert measuring.ensure([smaller]) == len(guessed.interpolated)
    exact = measuring.estimate(smaller)
    assert exact.interpolated == () and exact.value > 0
    assert LatencyTable(lut).estimate(smaller).interpolated == ()  # the entries are in the LUT file now


def load_network_units():
    x = SPACE.baselines()["uniform-mid-32"]
    return SPACE.signatures(x), x


def test_a_macs_run_meets_its_budget_saves_every_iteration_and_resumes(tmp_path, trained, digits, monkeypatch) -> None:
    out = tmp_path / "run"
    run = NetAdaptRun(model=trained, out=out, budgets=["75%", "90%"], table=MacsCount(), data=digits,
                      settings=TINY, baselines=(0.5, 1.0), workers=1)
    result = run.run()
    its = result.iterations
    assert result.stopped == "budget met" and len(its) >= 3
    start = its[0].estimate
    for previous, it in zip(its, its[1:]):
        assert it.estimate <= it.constraint < previous.estimate  # each iteration meets its tightened constraint
        assert it.to_channels < it.from_channels and it.to_channels % TINY.channel_step == 0
        net, meta = load_network(it.checkpoint)
        assert [s.key for s in net.signatures] == it.units and Path(it.onnx).is_file()
        assert sum(s.macs for s in net.signatures) / 1e6 == pytest.approx(it.estimate)
    assert its[-1].estimate <= 0.75 * start
    assert sorted(f.budget for f in result.finals) == pytest.approx([0.75 * start, 0.9 * start])
    for final in result.finals:
        assert final.estimate <= final.budget and final.within_budget and 0 <= final.test_accuracy <= 1
    assert [b.multiplier for b in result.baselines] == [0.5, 1.0]
    assert result.baselines[0].estimate < result.baselines[1].estimate == pytest.approx(start)
    assert (out / "frontier.png").stat().st_size > 0
    saved = json.loads((out / "result.json").read_text())
    assert len(saved["iterations"]) == len(its) and len(saved["comparisons"]) == len(result.finals)

    # A second run reads everything back: no training at all.
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(finetune_module, "run_job", no_training)  # run_jobs looks it up there
    again = NetAdaptRun(model=trained, out=out, budgets=["75%", "90%"], table=MacsCount(), data=digits,
                        settings=TINY, baselines=(0.5, 1.0), workers=1).run()
    assert [i.units for i in again.iterations] == [i.units for i in its]
    assert [f.test_accuracy for f in again.finals] == [f.test_accuracy for f in result.finals]


def test_a_run_folder_of_other_settings_is_refused(tmp_path, trained, digits) -> None:
    out = tmp_path / "run"
    NetAdaptRun(model=trained, out=out, budgets=["97%"], table=MacsCount(), data=digits, settings=TINY,
                baselines=(), workers=1).run()
    other = NetAdaptSettings(short_term_steps=4, long_term_epochs=1, initial_fraction=0.08, decay=1.0, selection_per_class=10)
    with pytest.raises(NetAdaptError, match="another settings"):
        NetAdaptRun(model=trained, out=out, budgets=["97%"], table=MacsCount(), data=digits, settings=other,
                    baselines=(), workers=1).run()


def test_a_latency_run_measures_every_network_on_this_cpu(tmp_path, trained, digits, profiles_dir, monkeypatch) -> None:
    monkeypatch.setattr(measure_module, "REFERENCE_PAUSE_S", 0.0)  # re-measuring a slow batch need not wait here
    profile = load_profile("fastcpu")
    net, _ = load_network(trained)
    lut = tmp_path / "lut.parquet"
    run_sweep(profile, Plan(name="p", description="", source=Path("<t>"),
                            signatures=tuple(dict.fromkeys([*net.signatures, OVERHEAD_SIGNATURE]))), lut)
    rows_before = len(LatencyTable(lut).values)
    table = LatencyTable(lut, profile=profile)
    result = NetAdaptRun(model=trained, out=tmp_path / "run", budgets=["85%"], table=table, data=digits,
                         settings=TINY, profile=profile, baselines=(0.5,), calibration=4, workers=2).run()
    assert result.device == "fastcpu" and result.correction["networks"] == 4
    assert len(LatencyTable(lut).values) > rows_before  # the channel counts visited were measured into the LUT
    for it in result.iterations:
        assert it.measured_ms is not None and np.isfinite(it.measured_ms) and it.measured_ms > 0
        assert it.interpolated == []  # measured, not interpolated
    last = result.iterations[-1]
    budget = result.budgets[0]
    if result.stopped == "budget met":  # the loop stops on the device's figure too, not on the estimate alone
        assert max(last.estimate, last.measured_ms) <= budget
    else:  # a network this small can run out of channels to remove before a noisy measurement agrees
        assert result.stopped.startswith("no group can meet")
    assert all(it.reference_drift is not None for it in result.iterations)
    for record in result.finals + result.baselines:
        assert record.measured_ms is not None
    for final in result.finals:
        assert final.within_budget == (final.measured_ms <= final.budget)


def test_a_killed_run_resumes_from_its_last_finished_iteration(tmp_path, trained) -> None:
    out = tmp_path / "run"
    args = ["netadapt", "--model", str(trained), "--resource", "macs", "--budget", "80%", "--out", str(out),
            "--short-term-steps", "3", "--long-term-epochs", "1", "--baselines", "none", "--initial-reduction", "6%",
            "--workers", "2"]
    process = subprocess.Popen([sys.executable, "-m", "optimizer", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = out / "netadapt.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if state.exists() and len(json.loads(state.read_text())["iterations"]) >= 2:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no iteration finished in time")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    recorded = json.loads(state.read_text())["iterations"]
    kept = {it["checkpoint"]: digest(it["checkpoint"]) for it in recorded}
    result = run_optimize(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert f"resuming: {len(recorded)} networks on record" in result.stderr
    document = json.loads(result.stdout)
    assert [it["units"] for it in document["iterations"][:len(recorded)]] == [it["units"] for it in recorded]
    assert all(digest(path) == value for path, value in kept.items())  # finished iterations were not redone
    assert len(document["iterations"]) > len(recorded)  # the resumed run went on where the killed one stopped
    assert document["iterations"][-1]["estimate"] <= 0.8 * document["start"]
    assert document["finals"] and document["finals"][0]["within_budget"]


def test_bad_input_is_one_line(tmp_path, trained) -> None:
    assert "no such checkpoint" in one_line_error(run_optimize("netadapt", "--model", str(tmp_path / "none.pt"),
                                                               "--resource", "macs", "--budget", "50%"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert "cannot read" in one_line_error(run_optimize("netadapt", "--model", str(bad), "--resource", "macs",
                                                        "--budget", "50%"))
    assert "at or above" in one_line_error(run_optimize("netadapt", "--model", str(trained), "--resource", "macs",
                                                        "--budget", "1000MMACs", "--out", str(tmp_path / "o")))
    assert "needs --lut" in one_line_error(run_optimize("netadapt", "--model", str(trained), "--budget", "1ms"))
    assert "budget" in one_line_error(run_optimize("netadapt", "--model", str(trained), "--resource", "macs",
                                                   "--budget", "fast"))


def test_the_energy_table_sums_per_operator_results_and_interpolates_flagged(tmp_path) -> None:
    from harness.energy.analysis import EnergyResult
    from harness.energy.store import append_results, result_row
    from optimizer.netadapt.layer_tables import EnergyTable
    from optimizer.netadapt.pruning import ChannelStructure

    units, _ = load_network_units()
    structure = ChannelStructure(units)
    group = next(g for g in structure.groups if g.channels >= 24 and structure.allowed(g.index, g.channels - 16))
    smaller = structure.resized({group.index: group.channels - 16})
    middle = structure.resized({group.index: group.channels - 8}) if structure.allowed(group.index, group.channels - 8) else None

    def row(sig, mj):
        result = EnergyResult(energy_per_run_mj=mj, uncertainty_mj=0.0, window_start_s=0, window_end_s=1, window_s=1,
                              latency_per_run_ms=1, baseline_ma=0, baseline_drift_ma=0, mean_power_mw=1,
                              mean_active_power_mw=1, runs=1000, samples=5000, dropped_samples=0)
        return result_row(result, device_id="s835", device_model="test", monitor="simulated", session_id="t",
                          sample_rate_hz=5000, voltage_v=4.2, signature=sig)

    energy = {s.key: 0.01 * (1 + s.macs / 1e5) for s in [*units, *smaller]}
    rows = [row(sig, energy[sig.key]) for sig in dict.fromkeys([*units, *smaller, OVERHEAD_SIGNATURE])
            if sig != OVERHEAD_SIGNATURE] + [row(OVERHEAD_SIGNATURE, 0.001)]
    path = tmp_path / "energy.parquet"
    append_results(path, rows)
    table = EnergyTable(path)
    full = table.estimate(units)
    assert full.interpolated == ()
    assert full.value == pytest.approx(sum(energy[s.key] for s in units) - (len(units) - 1) * 0.001)
    assert table.estimate(smaller).value < full.value
    if middle is not None:
        guessed = table.estimate(middle)
        assert guessed.interpolated and table.estimate(smaller).value <= guessed.value <= full.value


def test_layer_lut_and_an_offline_run_that_flags_interpolated_entries(tmp_path, trained, profiles_dir) -> None:
    net, _ = load_network(trained)
    lut = tmp_path / "lut.parquet"
    result = run_optimize("layer-lut", "--model", str(trained), "--lut", str(lut), "--device", "fastcpu", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["entries"] > len(net.signatures) and document["measured"] == document["entries"]
    assert document["channel_step"] == 8
    again = json.loads(run_optimize("layer-lut", "--model", str(trained), "--lut", str(lut), "--device", "fastcpu",
                                    "--json").stdout)
    assert again["measured"] == 0 and again["already_measured"] == document["entries"]

    # Offline (no device), at a channel step of 4: counts off the LUT's step-8 grid are interpolated between
    # measured ones, and flagged.  Which counts NetAdapt keeps depends on the entries, so the offline run reads a
    # copy whose entries are a fixed function of each op's MACs (measured ones swing with the host's load), so
    # the counts kept, and whether they fall off the step-8 grid, are the same on every machine.
    smooth = tmp_path / "smooth.parquet"
    table = read_lut(lut)
    macs = np.array([row_signature(row).macs for row in table.to_pylist()], dtype=float)
    index = table.column_names.index("median_us")
    write_lut_atomic(table.set_column(index, "median_us", pa.array(1.0 + macs / 1e3)), smooth)
    lut = smooth
    out = tmp_path / "run"
    # 92% in steps of 4% of the start: 3 iterations, two of them keeping counts off the step-8 grid (80% in steps
    # of 2% took 11 iterations, 2-4 minutes of the suite, for the same check).
    offline = ("netadapt", "--model", str(trained), "--lut", str(lut), "--no-measure", "--budget", "92%",
               "--out", str(out), "--short-term-steps", "2", "--long-term-epochs", "1", "--baselines", "none",
               "--initial-reduction", "4%", "--workers", "1", "--channel-step", "4")
    result = run_optimize(*offline, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["device"] is None and document["entries_measured"] == 0
    assert all(it["measured_ms"] is None for it in document["iterations"])
    measured = set(LatencyTable(lut).values)
    for it in document["iterations"]:  # flagged exactly where the LUT has no entry
        assert set(it["interpolated"]) == {key for key in it["units"] if key not in measured}
    assert any(it["interpolated"] for it in document["iterations"])
    text = run_optimize(*offline)
    assert text.returncode == 0 and "interpolated between measured channel counts" in text.stdout
