"""`bench lut import`: Caffe2 / FAI-PEP operator tables (ChamNet's released LUT format) into a LUT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import one_line_error, run_bench
from harness.lut import store as lut_store
from harness.lut.caffe_import import LutImportError, import_caffe2_lut, parse_caffe2_args, signature_of
from harness.signature import make_signature

DATA = Path(__file__).parent / "data" / "caffe2"


def test_caffe2_arguments_parse() -> None:
    args = parse_caffe2_args(['name: "kernel" i: 3', 'name: "order" s: "NHWC"', 'name: "pads" ints: 1 ints: 1 ints: 1 ints: 1',
                              'name: "Y_scale" f: 0.5'])
    assert args == {"kernel": 3, "order": "NHWC", "pads": [1, 1, 1, 1], "Y_scale": 0.5}


@pytest.mark.parametrize("op_type, args, shapes, expected", [
    ("Int8ConvRelu", {"kernel": 3, "pad": 1, "stride": 2}, [[1, 224, 224, 3], [32, 3, 3, 3], [32]],
     make_signature("conv2d", c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2, activation="relu", dtype="int8")),
    ("Int8ConvRelu", {"group": 32, "kernel": 3, "pad": 1}, [[1, 112, 112, 32], [32, 3, 3, 1], [32]],
     make_signature("depthwise_conv", c_in=32, h=112, w=112, kernel=3, activation="relu", dtype="int8")),
    ("Int8Conv", {"kernel": 1}, [[1, 112, 112, 32], [16, 1, 1, 32], [16]],
     make_signature("pointwise_conv", c_in=32, h=112, w=112, c_out=16, dtype="int8")),
    ("Conv", {"kernel": 3, "pad": 1}, [[1, 16, 56, 56], [32, 16, 3, 3], [32]],  # fp32 ops are NCHW
     make_signature("conv2d", c_in=16, h=56, w=56, c_out=32, kernel=3)),
    ("Int8FC", {}, [[1, 1280], [1000, 1280], [1000]], make_signature("fc", c_in=1280, c_out=1000, dtype="int8")),
    ("Int8AveragePool", {"global_pooling": 1}, [[1, 7, 7, 1280]], make_signature("global_avgpool", c_in=1280, h=7, w=7, dtype="int8")),
    ("Int8Add", {}, [[1, 56, 56, 24], [1, 56, 56, 24]], make_signature("add", c_in=24, h=56, w=56, dtype="int8")),
    ("Int8Quantize", {}, [[1, 224, 224, 3]], None),
])
def test_caffe2_ops_map_to_signatures(op_type, args, shapes, expected) -> None:
    assert signature_of(op_type, args, shapes) == expected


@pytest.mark.parametrize("name", ["chamnet-a-int8-s8.csv", "chamnet-a-int8-s8.json"])
def test_import_keeps_percentiles_and_provenance(name: str) -> None:
    result = import_caffe2_lut(DATA / name, device_id="s835")
    assert result.records == 12 and len(result.rows) == 9 and sum(result.skipped.values()) == 3
    table = lut_store.rows_to_table(result.rows)  # the rows fit the LUT schema
    row = lut_store.find_row(table, make_signature("fc", c_in=1280, c_out=1000, dtype="int8"))
    assert row["median_us"] == 512.0 and row["p10_us"] == pytest.approx(491.5) and row["p90_us"] == pytest.approx(553.0)
    assert row["mean_us"] is None and row["runs"] == 0
    assert row["device_id"] == "s835" and row["device_model"] == "SM-G950U-7.0-24" and row["runtime"] == "caffe2"


def test_import_cli_merges_into_a_lut_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "s835.parquet"
    result = run_bench("lut", "import", str(DATA / "chamnet-a-int8-s8.csv"), "--device", "s835", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == 9 and report["skipped"] == 3 and report["rows_in_lut"] == 9
    again = run_bench("lut", "import", str(DATA / "chamnet-a-int8-s8.json"), "--device", "s835", "--out", str(out), "--json")
    assert json.loads(again.stdout)["rows_in_lut"] == 9  # the same ops: no duplicates
    assert lut_store.read_lut(out).num_rows == 9


def test_import_of_a_file_with_the_wrong_columns_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,latency\nconv,3\n")
    line = one_line_error(run_bench("lut", "import", str(bad), "--device", "s835", "--out", str(tmp_path / "x.parquet")))
    assert "missing column" in line and "op_type" in line
    with pytest.raises(LutImportError, match="invalid JSON"):
        (tmp_path / "bad.json").write_text("[{")
        import_caffe2_lut(tmp_path / "bad.json", "s835")
