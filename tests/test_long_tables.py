"""Long-format latency tables (one row per architecture × device × framework...) read as they are, no conversion code.

The realistic fixture is the shared NAS-Bench-201 table (HELP's export, 15,625
cells × 13 devices) melted into long format here, with pyarrow and numpy: read
long, it must equal the wide read exactly.  Where the shared data is absent
the same checks run on a synthetic wide table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from optimizer.latency import architecture_tables as wide_format, long_tables
from optimizer.latency.architecture_tables import (LatencyTable, LatencyTableError, UnknownTableDevice,
                                                   read_latency_table, write_latency_table)

ROOT = Path(__file__).resolve().parent.parent
NB201 = ROOT.parent / "shared" / "data" / "latency-tables" / "nasbench201-15625.csv"


def run_optimize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def synthetic_wide(tmp_path: Path, n: int = 300, seed: int = 0) -> Path:
    """An NB201-like wide table: 6 categorical edges, five devices (two phones in whole ms), a few failures."""
    rng = np.random.default_rng(seed)
    ops = np.array(["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"], dtype=object)
    X = rng.integers(0, 5, (n, 6))
    columns: dict = {"arch_id": [f"nb201-{i}" for i in range(n)]}
    for e in range(6):
        columns[f"edge_{e}"] = ops[X[:, e]].tolist()
    base = 1.0 + (X * rng.uniform(0.1, 1.0, 6)).sum(axis=1)
    for device, whole_ms in (("1080ti_1", False), ("1080ti_32", False), ("pixel3", False), ("samsung_a50", True),
                             ("samsung_s7", True)):
        values = base * rng.uniform(0.5, 3.0) * (1 + 0.1 * rng.standard_normal(n))
        values = np.round(values) if whole_ms else values
        values[rng.choice(n, 3, replace=False)] = np.nan
        columns[f"latency_ms:{device}"] = pa.array(values, mask=np.isnan(values))
    path = tmp_path / "wide.csv"
    pacsv.write_csv(pa.table(columns), path)
    return path


@pytest.fixture(params=["shared-nb201", "synthetic"])
def wide_csv(request, tmp_path) -> Path:
    if request.param == "shared-nb201":
        if not NB201.exists():
            pytest.skip(f"{NB201} is not here (the shared data folder of this checkout)")
        return NB201
    return synthetic_wide(tmp_path)


def melt(wide: pa.Table, split_batch: bool = False) -> pa.Table:
    """The wide table in long format, one row per architecture × device, architecture-major (as exports list them).

    ``split_batch``: HELP-style, ``latency_ms:1080ti_32`` becomes device ``1080ti`` with ``batch_size`` 32 (1 for
    devices without a batch suffix).
    """
    latency = [c for c in wide.column_names if c.startswith("latency_ms:")]
    encoding = [c for c in wide.column_names if not c.startswith("latency_ms:")]
    n, k = wide.num_rows, len(latency)
    rows = np.repeat(np.arange(n), k)
    columns = {name: wide.column(name).take(pa.array(rows)) for name in encoding}
    names = [c.split(":", 1)[1] for c in latency]
    if split_batch:
        split = [(d.rsplit("_", 1)[0], int(d.rsplit("_", 1)[1])) if d.rsplit("_", 1)[-1].isdigit() else (d, 1)
                 for d in names]
        columns["device"] = pa.array(np.tile([d for d, _ in split], n).tolist())
        columns["batch_size"] = pa.array(np.tile([b for _, b in split], n), pa.int64())
    else:
        columns["device"] = pa.array(np.tile(names, n).tolist())
    values = np.column_stack([wide.column(c).to_numpy(zero_copy_only=False) for c in latency]).ravel()
    columns["latency_ms"] = pa.array(values, mask=np.isnan(values))
    return pa.table(columns)


def assert_same(a: LatencyTable, b: LatencyTable, devices: dict[str, str] | None = None) -> None:
    """Same architectures, encoding and latencies (bit for bit); ``devices`` maps b's device names to a's."""
    devices = devices or {d: d for d in b.devices}
    assert a.arch_ids.tolist() == b.arch_ids.tolist()
    assert list(a.encoding) == list(b.encoding)
    for name in a.encoding:
        assert a.encoding[name].tolist() == b.encoding[name].tolist()
    for mine, theirs in devices.items():
        np.testing.assert_array_equal(b.latency(mine), a.latency(theirs))
        assert b.invalid[mine] == a.invalid[theirs]


# ------------------------------------------------------------------ the long read equals the wide read
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_melted_export_reads_like_the_wide_table(wide_csv, tmp_path, suffix):
    wide = read_latency_table(wide_csv)
    long = melt(pacsv.read_csv(wide_csv))
    path = tmp_path / f"long{suffix}"
    pacsv.write_csv(long, path) if suffix == ".csv" else pq.write_table(long, path)
    back = read_latency_table(path)  # detected: a device column and latency_ms, no latency_ms:<device>
    assert back.devices == wide.devices and len(back) == len(wide)
    assert_same(wide, back)
    assert_same(wide, read_latency_table(path, layout="long"))
    assert back.source == str(path)


def test_rows_in_any_order_and_missing_rows(tmp_path):
    wide = read_latency_table(synthetic_wide(tmp_path))
    long = melt(pacsv.read_csv(tmp_path / "wide.csv"))
    rng = np.random.default_rng(1)
    keep = np.sort(rng.choice(long.num_rows, long.num_rows - 40, replace=False))
    shuffled = long.take(pa.array(rng.permutation(keep)))
    pq.write_table(shuffled, tmp_path / "long.parquet")
    back = read_latency_table(tmp_path / "long.parquet")
    assert sorted(back.devices) == sorted(wide.devices)
    order = {a: i for i, a in enumerate(back.arch_ids.tolist())}
    rows = np.array([order[a] for a in wide.arch_ids.tolist()])
    dropped = np.zeros(long.num_rows, dtype=bool)
    dropped[np.setdiff1d(np.arange(long.num_rows), keep)] = True
    for j, d in enumerate(wide.devices):
        expected = wide.latency(d).copy()
        expected[dropped.reshape(len(wide), -1)[:, j]] = np.nan  # a missing row is a missing measurement
        np.testing.assert_array_equal(back.latency(d)[rows], expected)
        assert back.invalid[d] == int(np.isnan(expected).sum())
    assert back.encoding["edge_0"][rows].tolist() == wide.encoding["edge_0"].tolist()


def test_help_style_batch_sizes_qualify_the_device(wide_csv, tmp_path):
    wide = read_latency_table(wide_csv)
    path = tmp_path / "help.csv"
    pacsv.write_csv(melt(pacsv.read_csv(wide_csv), split_batch=True), path)
    back = read_latency_table(path)
    assert "1080ti/batch_size=32" in back.devices and "pixel3/batch_size=1" in back.devices
    np.testing.assert_array_equal(back.latency("1080ti/batch_size=32"), wide.latency("1080ti_32"))
    # one batch size: the qualifier says nothing and leaves the names
    single = read_latency_table(path, where="batch_size=1")
    assert "1080ti" in single.devices and "pixel3" in single.devices and not any("/" in d for d in single.devices)
    mapping = {d: d if d in wide.devices else f"{d}_1" for d in single.devices}
    assert_same(wide, single, mapping)
    two = read_latency_table(path, where={"batch_size": [1, 32]}, devices=["1080ti/batch_size=1", "pixel3/batch_size=1"])
    assert two.devices == ["1080ti/batch_size=1", "pixel3/batch_size=1"]
    with pytest.raises(UnknownTableDevice, match="no device '1080ti'"):
        read_latency_table(path, devices=["1080ti"])


# ------------------------------------------------------------------ the format's options
def small_long(tmp_path: Path, columns: dict, name: str = "t.csv") -> Path:
    path = tmp_path / name
    pacsv.write_csv(pa.table(columns), path)
    return path


def test_frameworks_units_and_a_constant_qualifier(tmp_path):
    columns = {"arch_id": [1, 1, 1, 2, 2, 2], "op": ["a", "a", "a", "b", "b", "b"],
               "device": ["pixel3", "pixel3", "rpi4"] * 2, "framework": ["tflite", "onnx", "tflite"] * 2,
               "latency_us": [1500.0, 2500.0, 9000.0, 1200.0, 2600.0, 8000.0]}
    table = read_latency_table(small_long(tmp_path, columns))
    assert table.devices == ["pixel3/tflite", "pixel3/onnx", "rpi4/tflite"]
    assert table.arch_ids.tolist() == ["1", "2"] and table.encoding["op"].tolist() == ["a", "b"]
    np.testing.assert_allclose(table.latency("pixel3/tflite"), [1.5, 1.2], rtol=1e-15)
    tflite = read_latency_table(small_long(tmp_path, columns), where="framework=tflite")
    assert tflite.devices == ["pixel3", "rpi4"]  # one framework left: it is not repeated in every name
    assert "framework" not in tflite.encoding
    plain = dict(columns, latency=columns["latency_us"])
    del plain["latency_us"]
    with pytest.raises(LatencyTableError, match="unit of column 'latency' is not stated: give --unit"):
        read_latency_table(small_long(tmp_path, plain))
    np.testing.assert_allclose(read_latency_table(small_long(tmp_path, plain), unit="us").latency("rpi4/tflite"),
                               [9.0, 8.0])
    with pytest.raises(LatencyTableError, match="--unit ms contradicts the column name 'latency_us'"):
        read_latency_table(small_long(tmp_path, columns), unit="ms")
    # a column that is not a known qualifier is named one with qualifiers=
    other = dict(columns, runtime_version=["2.1", "2.1", "2.1", "2.1", "2.1", "2.2"])
    with pytest.raises(LatencyTableError, match="architecture '2' has two values of 'runtime_version'"):
        read_latency_table(small_long(tmp_path, other))
    named = read_latency_table(small_long(tmp_path, other), qualifiers=["framework", "runtime_version"])
    assert "rpi4/tflite/runtime_version=2.2" in named.devices  # a number (as CSV reads 2.2): named with its column


def test_duplicates_are_an_error_or_their_median(tmp_path):
    columns = {"arch_id": ["x", "x", "x", "y", "y", "x"], "device": ["a", "b", "a", "a", "b", "a"],
               "latency_ms": [1.0, 5.0, 3.0, 2.0, 6.0, -1.0]}
    path = small_long(tmp_path, columns)
    with pytest.raises(LatencyTableError) as info:
        read_latency_table(path)
    assert str(info.value) == (f"{path}: 1 architecture/device pair(s) with more than one row, e.g. 'x' on 'a' "
                               "(3 rows); keep one, or give --duplicates median")
    table = read_latency_table(path, duplicates="median")
    np.testing.assert_array_equal(table.latency("a"), [2.0, 2.0])  # x on a: median of 1 and 3 (-1 failed)
    np.testing.assert_array_equal(table.latency("b"), [5.0, 6.0])


@pytest.mark.parametrize("columns, options, message", [
    ({"arch_id": [1, 1], "op": ["a", "b"], "device": ["p", "q"], "latency_ms": [1.0, 2.0]}, {},
     "architecture '1' has two values of 'op' ('a' and 'b')"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": ["fast", "1.0"]}, {},
     "latency column 'latency_ms' is not numeric"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": [1.0, 2.0], "latency_us": [1.0, 2.0]}, {},
     "several latency columns"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": [1.0, 2.0]}, {"where": "framework=tflite"},
     "--where names no column of the table: 'framework'"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": [1.0, 2.0]}, {"where": "device=q"},
     "no row matches --where device=q"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": [1.0, 2.0]}, {"where": "device"},
     "expected COLUMN=VALUE"),
    ({"arch_id": [1, 2], "device": ["p", None], "latency_ms": [1.0, 2.0]}, {}, "1 row(s) without a 'device'"),
    ({"arch_id": [1, 1], "device": ["p", "q"], "latency_ms": [1.0, 2.0], "accuracy": [0.5, 0.6]}, {},
     "architecture '1' has two values of 'accuracy'"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": [1.0, 2.0]}, {"layout": "wide"},
     "no 'latency_ms:<device>' columns"),
    ({"arch_id": [1, 2], "latency_ms:p": [1.0, 2.0]}, {"layout": "long"}, "a long table needs 'device'"),
    ({"arch_id": [1, 2], "latency_ms:p": [1.0, 2.0]}, {"where": "p=1"}, "--where read long tables"),
    ({"arch_id": [1, 2], "device": ["p", "p"], "latency_ms": [1.0, 2.0]}, {"duplicates": "mean"},
     "--duplicates must be one of error, median"),
])
def test_a_bad_long_table_is_one_line(tmp_path, columns, options, message):
    with pytest.raises(LatencyTableError) as info:
        read_latency_table(small_long(tmp_path, columns), **options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_accuracy_info_and_space_travel_per_architecture(tmp_path):
    columns = {"arch_id": ["a", "a", "b", "b"], "device": ["p", "q", "p", "q"], "latency_ms": [1.0, 2.0, 3.0, 1.0],
               "accuracy": [0.7, None, 0.8, 0.8], "info:note": ["first", "second", "x", "y"],
               "info:space": ["chamnet-mobile-mini"] * 4}
    table = read_latency_table(small_long(tmp_path, columns))
    np.testing.assert_array_equal(table.accuracy, [0.7, 0.8])
    assert table.info["info:note"].tolist() == ["first", "x"] and table.space == "chamnet-mobile-mini"


def test_the_long_module_spells_the_wide_format_alike():
    assert (long_tables.ARCH_ID, long_tables.WIDE_PREFIX, long_tables.INFO_PREFIX, long_tables.DEFAULT_ACCURACY) == (
        wide_format.ARCH_ID, wide_format.LATENCY_PREFIX, wide_format.INFO_PREFIX, wide_format.DEFAULT_ACCURACY)


# ------------------------------------------------------------------ the commands
def test_monotonicity_reads_a_long_export(tmp_path):
    path = tmp_path / "help.csv"
    pacsv.write_csv(melt(pacsv.read_csv(synthetic_wide(tmp_path)), split_batch=True), path)
    result = run_optimize("monotonicity", str(path), "--where", "batch_size=1", "--devices", "pixel3,samsung_a50",
                          "--bootstrap", "20", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["devices"] == ["pixel3", "samsung_a50"] and document["invalid"] == {"pixel3": 3, "samsung_a50": 3}
    assert document["space"] is None
    assert document["baselines"] == {"macs": {"pixel3": None, "samsung_a50": None},
                                     "params": {"pixel3": None, "samsung_a50": None}}
    text = run_optimize("monotonicity", str(path), "--devices", "pixel3/batch_size=1,1080ti/batch_size=32",
                        "--bootstrap", "0")
    assert text.returncode == 0, text.stderr
    assert "n/a" in text.stdout and "1080ti/batch_size=32" in text.stdout
    bad = run_optimize("monotonicity", str(path), "--duplicates", "sum")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--duplicates" in bad.stderr


def test_proxy_commands_detect_the_long_layout(tmp_path):
    table = read_latency_table(synthetic_wide(tmp_path))
    long = melt(pacsv.read_csv(tmp_path / "wide.csv"))
    rng = np.random.default_rng(0)
    accuracy = np.repeat(rng.uniform(0.5, 0.9, len(table)), len(table.devices))
    pacsv.write_csv(long.append_column("accuracy", pa.array(accuracy)), tmp_path / "long.csv")
    result = run_optimize("proxy-reuse", str(tmp_path / "long.csv"), "--proxy", "pixel3", "--target", "1080ti_1",
                          "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["proxy"] == "pixel3"


def test_written_tables_stay_wide(tmp_path):
    table = read_latency_table(small_long(tmp_path, {"arch_id": [1, 2, 3], "device": ["p", "p", "p"],
                                                     "latency_ms": [1.0, 2.0, 3.0]}))
    out = write_latency_table(table, tmp_path / "w.csv")
    assert pacsv.read_csv(out).column_names == ["arch_id", "latency_ms:p"]
