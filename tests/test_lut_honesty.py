"""Issue 15, points 1 and 2: every LUT writer under the LUT's lock, LUTs that cannot lie, strict --json."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import one_line_error, run_bench
from harness.json_documents import strict_json
from harness.errors import LutFileError
from harness.lut.store import LutWriter, read_lut, rows_to_table, signatures_of, write_lut_atomic
from harness.signature import make_signature
from lut_rows import SIGS, row, rows_for, write_lut

CAFFE2_TABLE = Path(__file__).parent / "data" / "caffe2" / "chamnet-a-int8-s8.csv"


def _write_unchecked(path: Path, rows: list[dict]) -> Path:
    """A LUT file as another tool (or a bug) could leave it: our schema and metadata, no value checks."""
    pq.write_table(rows_to_table(rows), path)
    return path


@pytest.mark.parametrize("median", [math.nan, math.inf, -math.inf, -5.0])
def test_a_lut_with_an_impossible_median_is_refused_naming_the_row(tmp_path: Path, median: float) -> None:
    rows = rows_for()
    rows[2]["median_us"] = median
    path = _write_unchecked(tmp_path / "bad.parquet", rows)
    with pytest.raises(LutFileError) as refused:
        read_lut(path)
    message = str(refused.value)
    assert "\n" not in message and SIGS[2].key in message and "median_us" in message and "1 such row" in message


def test_writing_an_impossible_time_is_refused_too(tmp_path: Path) -> None:
    rows = rows_for()
    rows[1]["min_us"] = -1.0
    with pytest.raises(LutFileError, match="min_us"):
        write_lut_atomic(rows_to_table(rows), tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_time_below_the_tools_clock_is_kept(tmp_path: Path) -> None:
    rows = rows_for()
    rows[2]["median_us"] = rows[2]["min_us"] = 0.0  # benchmark_model counts whole microseconds
    assert read_lut(_write_unchecked(tmp_path / "lut.parquet", rows)).num_rows == len(SIGS)


def test_a_lut_with_a_duplicate_signature_is_refused(tmp_path: Path) -> None:
    rows = rows_for() + [row(SIGS[3], median=999.0)]
    path = _write_unchecked(tmp_path / "dup.parquet", rows)
    with pytest.raises(LutFileError, match="appears 2 times"):
        read_lut(path)


def test_estimate_on_a_lying_lut_is_one_line_not_a_negative_latency(tmp_path: Path) -> None:
    rows = rows_for()
    rows[1]["median_us"] = -5.0
    lut = _write_unchecked(tmp_path / "lut.parquet", rows)
    listing = tmp_path / "network.txt"
    listing.write_text(SIGS[1].key + "\n")
    result = subprocess.run([sys.executable, "-m", "optimizer", "estimate", "--lut", str(lut), str(listing), "--json"],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert SIGS[1].key in one_line_error(result)
    assert json.loads(result.stdout) == {"error": one_line_error(result).removeprefix("error: "), "exit_code": 2}


def test_json_documents_are_strict() -> None:
    document = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2.5, "x")}
    text = json.dumps(strict_json(document), allow_nan=False)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.5, "x"]}


@pytest.mark.parametrize("command", ["merge", "import"])
def test_merge_and_import_wait_for_no_sweep_and_lose_no_row(tmp_path: Path, command: str) -> None:
    target = tmp_path / "s835.parquet"
    other = write_lut(tmp_path / "other.parquet", [row(make_signature("add", c_in=8, h=4, w=4), device="s835")])
    args = ["lut", "merge", str(target), str(other)] if command == "merge" else \
        ["lut", "import", str(CAFFE2_TABLE), "--device", "s835", "--out", str(target)]
    swept = rows_for(device="s835")
    with LutWriter(target, flush_every_s=0.0, merge_every_s=0.0) as writer:  # a running sweep holds the lock
        for r in swept[:2]:
            writer.add(r)
        writer.flush()
        refused = run_bench(*args)
        line = one_line_error(refused)
        assert "another writer" in line and ".lock" in line
        for r in swept[2:]:
            writer.add(r)
    kept = set(signatures_of(read_lut(target)))
    assert kept == {s.key for s in SIGS}, "the sweep's rows were lost"
    done = run_bench(*args)
    assert done.returncode == 0, done.stderr
    assert kept < set(signatures_of(read_lut(target)))  # every swept row is still there, and the new ones too
