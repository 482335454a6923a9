"""`bench measure-networks`: whole networks of the mini space timed into an architecture latency table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FAST_PROFILE, one_line_error, run_bench
from harness.networks.tables import ManifestEntry, measure_into_table, read_arch_table, read_manifest
from harness.profiles import load_profile
from optimizer.spaces import get_space

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Four mini-space networks and a manifest CSV naming them, with their genes as encoding columns."""
    space = get_space("chamnet-mobile-mini")
    folder = tmp_path_factory.mktemp("mini")
    archs = space.random(4, 0)
    (folder / "models").mkdir()
    with open(folder / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch_id", "path", *space.gene_names])
        for i, x in enumerate(archs):
            space.export_onnx(x, folder / "models" / f"net{i}.onnx")
            writer.writerow([f"net{i}", f"models/net{i}.onnx", *(int(v) for v in x)])
    return folder, list(space.gene_names)


def latencies(table: pa.Table, device: str) -> dict[str, float]:
    return dict(zip(table.column("arch_id").to_pylist(), table.column(f"latency_ms:{device}").to_pylist()))


def test_a_manifest_is_measured_into_one_row_per_architecture_with_its_encoding(
        profiles_dir: Path, mini: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, genes = mini
    out = tmp_path / "table.parquet"
    result = run_bench("measure-networks", str(folder / "manifest.csv"), "--device", "fastcpu", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["measured"] == 4 and report["failed"] == 0 and report["column"] == "latency_ms:fastcpu"
    table = read_arch_table(out)
    assert table.column_names == ["arch_id", *genes, "latency_ms:fastcpu"]
    assert table.schema.field("latency_ms:fastcpu").type == pa.float64()
    assert all(0 < v < 1000 for v in latencies(table, "fastcpu").values())
    metadata = table.schema.metadata
    assert metadata[b"chameleon.file"] == b"architecture-latency-table"
    provenance = json.loads(metadata[b"chameleon.devices"])["fastcpu"]
    assert provenance["threads"] == 1 and provenance["runtime"] == "onnxruntime" and provenance["missing"] == 0


def test_resumes_and_adds_a_second_device_to_the_same_table(profiles_dir: Path, mini: tuple[Path, list[str]],
                                                            tmp_path: Path) -> None:
    folder, _ = mini
    (profiles_dir / "fastcpu2.yaml").write_text(FAST_PROFILE.format(name="fastcpu2"))
    out = tmp_path / "table.parquet"
    entries = read_manifest([folder / "manifest.csv"])
    first = measure_into_table(load_profile("fastcpu"), entries[:2], out)
    assert first.measured == 2 and first.already_measured == 0
    before = latencies(read_arch_table(out), "fastcpu")

    again = measure_into_table(load_profile("fastcpu"), entries, out)  # the two measured cells are kept
    assert again.measured == 2 and again.already_measured == 2
    after = latencies(read_arch_table(out), "fastcpu")
    assert {k: after[k] for k in before} == before and len(after) == 4

    result = run_bench("measure-networks", str(folder / "manifest.csv"), "--device", "fastcpu2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    table = read_arch_table(out)
    assert table.num_rows == 4
    assert [c for c in table.column_names if c.startswith("latency_ms:")] == ["latency_ms:fastcpu", "latency_ms:fastcpu2"]
    assert latencies(table, "fastcpu") == after
    assert all(v > 0 for v in latencies(table, "fastcpu2").values())
    assert "measured 4 new, 0 already there" in result.stdout
    done = run_bench("measure-networks", str(folder / "manifest.csv"), "--device", "fastcpu2", "--out", str(out), "--json")
    assert json.loads(done.stdout)["measured"] == 0 and json.loads(done.stdout)["already_measured"] == 4


def test_a_broken_model_is_nan_and_counted_and_the_others_are_measured(
        profiles_dir: Path, mini: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, _ = mini
    models = tmp_path / "models"
    models.mkdir()
    for name in ("net0", "net1"):
        (models / f"{name}.onnx").write_bytes((folder / "models" / f"{name}.onnx").read_bytes())
    (models / "broken.onnx").write_bytes(b"not an onnx model")
    out = tmp_path / "table.parquet"
    result = run_bench("measure-networks", str(models), "--device", "fastcpu", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["measured"] == 3 and report["failed"] == 1
    assert report["failures"][0]["arch_id"] == "broken" and "cannot load" in report["failures"][0]["error"]
    values = latencies(read_arch_table(out), "fastcpu")
    assert math.isnan(values["broken"]) and values["net0"] > 0 and values["net1"] > 0
    # A re-run tries the failed cell again (and fails again), keeping the others.
    again = json.loads(run_bench("measure-networks", str(models), "--device", "fastcpu", "--out", str(out), "--json").stdout)
    assert again["measured"] == 1 and again["already_measured"] == 2 and again["failed"] == 1


def test_list_of_files_and_csv_output(profiles_dir: Path, mini: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, _ = mini
    out = tmp_path / "table.csv"
    result = run_bench("measure-networks", str(folder / "models" / "net0.onnx"), str(folder / "models" / "net3.onnx"),
                       "--device", "fastcpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
    table = read_arch_table(out)
    assert table.column("arch_id").to_pylist() == ["net0", "net3"] and table.column_names == ["arch_id", "latency_ms:fastcpu"]


def test_bad_input_is_one_line(profiles_dir: Path, mini: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, _ = mini
    out = str(tmp_path / "t.parquet")
    manifest = tmp_path / "m.csv"
    manifest.write_text("arch_id,path\na,models/missing.onnx\n")
    assert "no such model file" in one_line_error(run_bench("measure-networks", str(manifest), "--device", "fastcpu", "--out", out))
    manifest.write_text("name,path\na,x.onnx\n")
    assert "no arch_id column" in one_line_error(run_bench("measure-networks", str(manifest), "--device", "fastcpu", "--out", out))
    manifest.write_text(f"arch_id,path\na,{folder}/models/net0.onnx\na,{folder}/models/net1.onnx\n")
    assert "appears twice" in one_line_error(run_bench("measure-networks", str(manifest), "--device", "fastcpu", "--out", out))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .onnx, .tflite or .pte files" in one_line_error(run_bench("measure-networks", str(empty), "--device", "fastcpu", "--out", out))
    assert "unknown" in one_line_error(run_bench("measure-networks", str(folder / "manifest.csv"), "--device", "nosuch",
                                                 "--out", out)).lower()
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    assert "no arch_id column" in one_line_error(run_bench("measure-networks", str(folder / "manifest.csv"), "--device", "fastcpu",
                                                           "--out", str(foreign)))
    assert ".parquet or .csv" in one_line_error(run_bench("measure-networks", str(folder / "manifest.csv"), "--device", "fastcpu",
                                                          "--out", str(tmp_path / "t.txt")))


def test_an_encoding_that_disagrees_with_the_table_is_refused(profiles_dir: Path, mini: tuple[Path, list[str]],
                                                              tmp_path: Path) -> None:
    folder, genes = mini
    out = tmp_path / "table.parquet"
    entries = read_manifest([folder / "manifest.csv"])[:1]
    measure_into_table(load_profile("fastcpu"), entries, out)
    other = [ManifestEntry(entries[0].arch_id, entries[0].path, {**entries[0].encoding, genes[0]: -1})]
    with pytest.raises(Exception, match="in the manifest"):
        measure_into_table(load_profile("fastcpu"), other, out)


def test_a_second_writer_of_the_same_table_is_refused(profiles_dir: Path, mini: tuple[Path, list[str]],
                                                       tmp_path: Path) -> None:
    import fcntl
    import os

    folder, _ = mini
    out = tmp_path / "table.parquet"
    fd = os.open(tmp_path / "table.parquet.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a run in progress holds it
    try:
        result = run_bench("measure-networks", str(folder / "models" / "net0.onnx"), "--device", "fastcpu", "--out", str(out))
        assert "another run is writing this table" in one_line_error(result)
        assert not out.exists()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    result = run_bench("measure-networks", str(folder / "models" / "net0.onnx"), "--device", "fastcpu", "--out", str(out))
    assert result.returncode == 0, result.stderr
