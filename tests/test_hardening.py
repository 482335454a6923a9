"""Issue 15's findings on the command lines, each run as the tester ran it: one line and exit 2, never a traceback.

(The energy findings are in test_energy_hardening.py, the loopback device's in
test_fake_device_exposure.py, the LUT's in test_lut_honesty.py.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import one_line_error, run_bench, run_optimize
from harness.atomic import exclusive_lock
from harness.errors import InvalidPlan, InvalidSignature, LutFileError
from harness.lut.store import LutWriter, read_lut
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.signature import MAX_DIMENSION, make_signature, working_set_bytes
from lut_rows import row, write_lut

# A folder that exists but nobody, root included, can create files in (the tests may run as root,
# for whom chmod 555 is no obstacle).
UNWRITABLE_FOLDER = Path("/proc/self")


@pytest.fixture()
def small_lut(tmp_path: Path) -> Path:
    return write_lut(tmp_path / "xeon.parquet", [row(make_signature("identity"), median=5.0),
                                                 row(make_signature("add", c_in=8, h=4, w=4), median=3.0)])


# -------------------------------------------------------------- 3. ten tracebacks, 4. no size limits
def test_an_enormous_channel_count_is_refused_by_the_signature(tmp_path: Path) -> None:
    plan = tmp_path / "huge.yaml"
    plan.write_text("name: huge\nentries:\n  - {kind: conv2d, c_in: 2000000, h: 2000, w: same, c_out: 16, kernel: 3}\n")
    line = one_line_error(run_bench("sweep", "--device", "xeon", "--plan", str(plan), "--out", str(tmp_path / "x.parquet")))
    assert "c_in=2000000" in line and str(MAX_DIMENSION) in line
    with pytest.raises(InvalidSignature):
        make_signature("fc", c_in=MAX_DIMENSION + 1, h=1, w=1, c_out=10)


def test_an_op_beyond_the_devices_memory_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    plan = tmp_path / "big.yaml"
    plan.write_text("name: big\nentries:\n  - {kind: conv2d, c_in: 4096, h: 2000, w: same, c_out: 16, kernel: 3}\n"
                    "  - {kind: add, c_in: 8, h: 8, w: same}\n")
    out = tmp_path / "big.parquet"
    started = time.monotonic()
    line = one_line_error(run_bench("sweep", "--device", "xeon", "--plan", str(plan), "--out", str(out)))
    assert time.monotonic() - started < 60  # it was two minutes and 4.3 GB before
    assert "c_in=4096" in line and "memory_limit_mb" in line and "xeon" in line and "GB" in line
    assert not out.exists()


def test_every_profile_states_its_memory_limit_and_the_estimate_grows_with_the_op() -> None:
    for name in ("xeon", "cuda", "pixel", "s835", "s835-ort", "hexagon-v62"):
        assert load_profile(name).memory_limit_mb > 0
    assert load_profile("hexagon-v62").memory_limit_mb < load_profile("xeon").memory_limit_mb
    small = make_signature("conv2d", c_in=32, h=56, w=56, c_out=32, kernel=3, padding=1)
    assert working_set_bytes(small) < working_set_bytes(small.replace(h=112, w=112)) < working_set_bytes(small.replace(h=112, w=112, c_in=64))
    # The built-in plans fit the phones they are meant for.
    from harness.profiles import check_fits_memory
    from harness.sweep import signatures_for_device
    for plan_name in ("smoke", "chamnet-mobile"):
        plan = load_plan(plan_name)
        for device in ("pixel", "s835", "hexagon-v62", "xeon"):
            profile = load_profile(device)
            check_fits_memory(profile, signatures_for_device(plan, profile)[0], f"plan {plan_name}")
    with pytest.raises(InvalidPlan, match="memory_limit_mb"):
        check_fits_memory(load_profile("hexagon-v62"), [small.replace(c_in=1024, c_out=1024, h=512, w=512)], "test")


def test_a_profile_number_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "weird.yaml"
    profile.write_text(Path(load_profile("xeon").source).read_text().replace("name: xeon", "name: weird")
                       .replace("memory_limit_mb: 4096", "memory_limit_mb: .nan"))
    line = one_line_error(run_bench("sweep", "--device", str(profile), "--plan", "smoke", "--out", str(tmp_path / "w.parquet")))
    assert "memory_limit_mb" in line and "finite" in line


def test_out_naming_an_existing_file_or_an_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me\n")
    line = one_line_error(run_optimize("pipeline", "--out", str(existing)))
    assert str(existing) in line and "is a file" in line
    assert existing.read_text() == "keep me\n"
    line = one_line_error(run_optimize("pipeline", "--out", str(UNWRITABLE_FOLDER / "run")))
    assert str(UNWRITABLE_FOLDER / "run") in line


def test_measure_networks_into_a_folder_where_its_lock_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    from harness.models.onnx_models import build_model

    model = tmp_path / "net.onnx"
    model.write_bytes(build_model(make_signature("add", c_in=8, h=4, w=4)).SerializeToString())
    line = one_line_error(run_bench("measure-networks", str(model), "--device", "xeon", "--out", str(UNWRITABLE_FOLDER / "t.parquet")))
    assert "t.parquet" in line and "lock" in line


def test_a_signature_list_that_is_not_utf8_is_one_line(tmp_path: Path, small_lut: Path) -> None:
    listing = tmp_path / "net.txt"
    listing.write_bytes(b"\xff\xfe\x00not text\n")
    line = one_line_error(run_optimize("estimate", "--lut", str(small_lut), str(listing)))
    assert str(listing) in line and "UTF-8" in line


def test_an_enormous_count_is_a_range_error_in_one_line(small_lut: Path, tmp_path: Path) -> None:
    line = one_line_error(run_optimize("latency-table", "--lut", str(small_lut), "--n", "99999999999999999999",
                                       "--out", str(tmp_path / "t.parquet")))
    assert line.startswith("error: optimize latency-table:") and "--n" in line and "1000000" in line


# ---------------------------------------------------------------------------------- 6. paths
@pytest.mark.parametrize("given", ["folder", "plot.jpg"])
def test_a_plot_path_that_is_a_folder_or_not_png_is_refused_not_renamed(tmp_path: Path, small_lut: Path, given: str) -> None:
    (tmp_path / "folder").mkdir()
    target = tmp_path / given
    line = one_line_error(run_bench("lut", "show", str(small_lut), "--plot", str(target)))
    assert str(target) in line and "--plot" in line
    assert not (tmp_path / "folder.png").exists() and not (tmp_path / "plot.jpg.png").exists()


def test_a_heatmap_path_that_is_a_folder_is_refused_before_the_bootstrap(tmp_path: Path) -> None:
    table = _two_device_table(tmp_path, rows=12)
    line = one_line_error(run_optimize("monotonicity", str(table), "--png", str(tmp_path)))
    assert "--png" in line and "is a folder" in line
    assert not tmp_path.with_suffix(".png").exists()


# ------------------------------------------------------------------------------ 7. thresholds
def _two_device_table(tmp_path: Path, rows: int, empty_b: bool = False) -> Path:
    lines = ["arch_id,g,latency_ms:a,latency_ms:b,latency_ms:c"]
    for i in range(rows):
        lines.append(f"n{i},{i % 3},{1 + i},{'' if empty_b else 2 + i * 1.5},{3 + (i * 7) % rows}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("threshold", ["nan", "inf", "1.5"])
def test_a_threshold_that_is_not_an_srcc_is_refused(tmp_path: Path, threshold: str) -> None:
    line = one_line_error(run_optimize("monotonicity", str(_two_device_table(tmp_path, 12)), "--threshold", threshold))
    assert "--threshold" in line


def test_pairs_without_data_are_not_listed_as_under_the_threshold(tmp_path: Path) -> None:
    result = run_optimize("monotonicity", str(_two_device_table(tmp_path, 12, empty_b=True)), "--bootstrap", "0", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert ["a", "b"] not in document["flagged"] and ["b", "c"] not in document["flagged"]
    assert document["without_data"] == [["a", "b"], ["b", "c"]]
    text = run_optimize("monotonicity", str(_two_device_table(tmp_path, 12, empty_b=True)), "--bootstrap", "0")
    assert "2 pair(s) without enough architectures" in " ".join(text.stdout.split())


# ------------------------------------------------------------------------- 8. one-line range errors
@pytest.mark.parametrize("args", [["pipeline", "--seed", "-1"], ["pipeline", "--trainings", "1"],
                                  ["netadapt", "--model", "m.pt", "--budget", "1ms", "--decay", "nan"],
                                  ["monotonicity", "t.csv", "--bootstrap", "10000000"], ["estimate", "--nosuch"]])
def test_the_cli_librarys_usage_errors_are_one_line(args: list[str]) -> None:
    line = one_line_error(run_optimize(*args))
    assert line.startswith(f"error: optimize {args[0]}:") and f"optimize {args[0]} --help" in line


def test_bench_usage_errors_are_one_line_too() -> None:
    line = one_line_error(run_bench("sweep", "--device", "xeon", "--limit", "0"))
    assert line.startswith("error: bench sweep:") and "--limit" in line


# ------------------------------------------------------------------- 1. every writer under its lock
def test_a_second_pipeline_into_the_same_folder_is_refused_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with exclusive_lock(out / "run", "held by the test"):
        started = time.monotonic()
        line = one_line_error(run_optimize("pipeline", "--out", str(out)))
        assert time.monotonic() - started < 60
    assert "another optimize pipeline" in line and "run.lock" in line
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing measured, nothing written


def test_a_latency_table_is_not_written_over_a_measurement_run(tmp_path: Path, small_lut: Path) -> None:
    out = tmp_path / "table.parquet"
    with exclusive_lock(out, "a measure-networks run"):
        line = one_line_error(run_optimize("latency-table", "--lut", str(small_lut), "--space", "chamnet-mobile-mini",
                                           "--n", "4", "--interpolate", "--out", str(out)))
    assert "another run is writing this table" in line
    assert not out.exists()


def test_a_row_the_lut_would_refuse_is_not_written_nor_counted(tmp_path: Path) -> None:
    target = tmp_path / "lut.parquet"
    good = row(make_signature("add", c_in=8, h=4, w=4), median=3.0)
    bad = row(make_signature("add", c_in=16, h=4, w=4), median=float("nan"))
    with LutWriter(target, flush_every_s=0.0) as writer:
        writer.add(good)
        with pytest.raises(LutFileError, match="median_us"):
            writer.add(bad)
    assert read_lut(target).column("signature").to_pylist() == [good["signature"]]
    assert not list((tmp_path / "lut.parquet.parts").glob("*.parquet"))  # no part was set aside


def test_a_sweep_reports_a_refused_measurement_and_exits_1(profiles_dir: Path, small_plan: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import sweep
    from harness.profiles import load_profile as load

    out = tmp_path / "lut.parquet"
    calls = {"n": 0}
    original_make_row = sweep.make_row

    def make_row(signature, measurement_, *args):  # a runner that returns a NaN median for every add
        values = original_make_row(signature, measurement_, *args)
        if signature.kind == "add":
            calls["n"] += 1
            values["median_us"] = float("nan")
        return values

    monkeypatch.setattr(sweep, "make_row", make_row)
    result = sweep.run_sweep(load("fastcpu"), load_plan(str(small_plan)), out)
    assert calls["n"] == 2 and len(result.failures) == 2 and "median_us" in result.failures[0]
    assert result.measured == result.planned - 2 and result.remaining == 2
    assert result.rows_in_lut == result.planned - 2 == pq.read_metadata(out).num_rows
    assert result.to_json()["failed"] == 2
