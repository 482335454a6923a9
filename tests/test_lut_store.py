"""The LUT file: rows and tables, the schema, atomic writes and the read round trip, validation on read.

Merging, check_writable, the resumable writer and folding parts are in test_lut_store_writer.py; the
rows both use (``SIGS``, ``row``, ``rows_for``, ...) come from lut_rows.py.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lut_rows import IDENTITY, SIGS, one_line, row, rows_for, write_lut
from harness import __version__ as harness_version
from harness.errors import ChameleonError, LutFileError, OutputNotWritable
from harness.lut.store import LUT_COLUMNS, LUT_SCHEMA, LUT_SCHEMA_VERSION, empty_table, find_row, read_lut, row_signature, rows_to_table, signatures_of, validate_table, write_lut_atomic
from harness.signature import make_signature


# ------------------------------------------------------------------ rows and tables
def test_make_row_fills_every_column():
    r = row(SIGS[1], median=250.0, mad=5.0, throttled=False, at=None)
    assert set(r) == set(LUT_COLUMNS)
    assert r["signature"] == SIGS[1].key
    assert r["median_us"] == 250.0
    assert r["cv"] == pytest.approx(1.4826 * 5.0 / 250.0)
    assert (r["runs"], r["warmup_runs"], r["attempts"]) == (33, 7, 2)
    assert r["timed_total_us"] == 250.0 * 33
    assert r["device_id"] == "xeon" and r["device_model"] == IDENTITY.model
    assert r["runtime_version"] == "1.20.1" and r["provider"] == "CPUExecutionProvider"
    assert r["harness_version"] == harness_version
    assert r["measured_at"].tzinfo is not None
    assert r["throttled"] is False


def test_rows_to_table_has_the_lut_schema():
    table = rows_to_table(rows_for())
    assert table.schema.equals(LUT_SCHEMA, check_metadata=True)
    assert table.column_names == list(LUT_COLUMNS)
    assert table.num_rows == len(SIGS)
    assert signatures_of(table) == [s.key for s in SIGS]


def test_rows_to_table_of_nothing_is_empty_lut():
    table = rows_to_table([])
    assert table.num_rows == 0
    assert table.schema.equals(LUT_SCHEMA, check_metadata=True)
    assert empty_table().schema.equals(LUT_SCHEMA, check_metadata=True)


def test_schema_metadata():
    metadata = LUT_SCHEMA.metadata
    assert metadata[b"chameleon.lut_schema_version"] == str(LUT_SCHEMA_VERSION).encode()
    assert metadata[b"chameleon.file"] == b"operator-latency-lut"


# ------------------------------------------------------------------ write + read round trip
def test_write_read_round_trip_preserves_every_column(tmp_path):
    rows = rows_for()
    rows[0]["throttled"] = True
    rows[1]["throttled"] = False
    path = write_lut(tmp_path / "xeon.parquet", rows)
    table = read_lut(path)
    assert table.column_names == list(LUT_COLUMNS)
    assert table.schema.equals(LUT_SCHEMA, check_metadata=True)
    back = table.to_pylist()
    assert len(back) == len(rows)
    for original, read in zip(rows, back):
        for column in LUT_COLUMNS:
            assert read[column] == original[column], column
    assert back[2]["throttled"] is None


def test_file_carries_schema_version_metadata(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", rows_for())
    metadata = pq.read_schema(path).metadata
    assert metadata[b"chameleon.lut_schema_version"] == str(LUT_SCHEMA_VERSION).encode()
    assert metadata[b"chameleon.file"] == b"operator-latency-lut"


def test_round_trip_rows_rebuild_their_signatures(tmp_path):
    table = read_lut(write_lut(tmp_path / "lut.parquet", rows_for()))
    assert [row_signature(r) for r in table.to_pylist()] == SIGS
    found = find_row(table, SIGS[3])
    assert found is not None and found["median_us"] == 40.0
    assert find_row(table, SIGS[3].key)["signature"] == SIGS[3].key
    assert find_row(table, make_signature("add", c_in=4, h=4, w=4)) is None


def test_row_signature_detects_disagreeing_columns():
    r = row(SIGS[1])
    r["c_out"] = 64
    with pytest.raises(LutFileError, match="disagrees") as info:
        row_signature(r)
    one_line(info.value)


def test_empty_lut_round_trip(tmp_path):
    path = tmp_path / "empty.parquet"
    write_lut_atomic(empty_table(), path)
    table = read_lut(path)
    assert table.num_rows == 0 and table.column_names == list(LUT_COLUMNS)


def test_write_replaces_existing_file_and_leaves_no_temporaries(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", rows_for(SIGS[:2]))
    write_lut(path, rows_for(SIGS))
    assert read_lut(path).num_rows == len(SIGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lut.parquet"]


def test_write_refuses_a_table_that_is_not_a_lut(tmp_path):
    with pytest.raises(LutFileError):
        write_lut_atomic(pa.table({"a": [1, 2]}), tmp_path / "lut.parquet")
    assert not (tmp_path / "lut.parquet").exists()


def test_write_to_unwritable_place(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputNotWritable) as info:
        write_lut_atomic(rows_to_table(rows_for()), tmp_path / "file.txt" / "lut.parquet")
    one_line(info.value)


def test_read_lut_keeps_lut_columns_of_a_file_with_extra_ones(tmp_path):
    table = rows_to_table(rows_for()).append_column("note", pa.array(["x"] * len(SIGS)))
    path = tmp_path / "extra.parquet"
    pq.write_table(table, path)
    assert read_lut(path).column_names == list(LUT_COLUMNS)


# ------------------------------------------------------------------ read errors
def expect_lut_error(path, *fragments: str) -> str:
    with pytest.raises(LutFileError) as info:
        read_lut(path)
    message = one_line(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(info.value, ChameleonError)
    return message


def test_read_missing_file(tmp_path):
    expect_lut_error(tmp_path / "nope.parquet", "no such file")


def test_read_folder(tmp_path):
    (tmp_path / "dir.parquet").mkdir()
    expect_lut_error(tmp_path / "dir.parquet", "folder")


def test_read_truncated_file(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", rows_for())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_lut_error(path, "not a readable Parquet file")


def test_read_random_bytes(tmp_path):
    path = tmp_path / "noise.parquet"
    path.write_bytes(bytes((i * 131 + 7) % 256 for i in range(4096)))
    expect_lut_error(path, "not a readable Parquet file")


def test_read_empty_file(tmp_path):
    path = tmp_path / "zero.parquet"
    path.write_bytes(b"")
    expect_lut_error(path, "not a readable Parquet file")


def test_read_foreign_parquet(tmp_path):
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"signature": ["x"], "latency_ms": [1.5]}), path)
    expect_lut_error(path, "not a Chameleon LUT")


def test_read_other_schema_version(tmp_path):
    table = rows_to_table(rows_for())
    metadata = dict(table.schema.metadata)
    metadata[b"chameleon.lut_schema_version"] = b"4"
    path = tmp_path / "v4.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    expect_lut_error(path, "schema version 4", f"versions 1, 2, {LUT_SCHEMA_VERSION}")


def test_schema_version_2_reads_with_the_unit_null(tmp_path):
    table = rows_to_table(rows_for()).drop_columns(["unit"])
    metadata = dict(table.schema.metadata)
    metadata[b"chameleon.lut_schema_version"] = b"2"
    path = tmp_path / "v2.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    read = read_lut(path)
    assert read.column_names == list(LUT_COLUMNS) and read.column("unit").null_count == read.num_rows


def test_schema_version_1_reads_with_host_columns_null(tmp_path):
    """A LUT written before the host columns and the unit existed reads as version 3 with them null ("not recorded")."""
    from harness.host_speed import host_report
    from harness.lut.store import HOST_COLUMNS

    table = rows_to_table(rows_for()).drop_columns(list(HOST_COLUMNS) + ["unit"])
    metadata = dict(table.schema.metadata)
    metadata[b"chameleon.lut_schema_version"] = b"1"
    path = tmp_path / "v1.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    read = read_lut(path)
    assert read.column_names == list(LUT_COLUMNS)
    assert read.schema.metadata[b"chameleon.lut_schema_version"] == str(LUT_SCHEMA_VERSION).encode()
    assert all(read.column(name).null_count == read.num_rows for name in HOST_COLUMNS + ("unit",))
    assert read.column("median_us").to_pylist() == table.column("median_us").to_pylist()
    report = host_report(read)
    assert report.rows_with_reference == 0 and report.cpu_share_median is None
    assert "not tracked" in report.line()


def test_read_missing_column(tmp_path):
    table = rows_to_table(rows_for()).drop_columns(["cv", "session_id"])
    assert table.schema.metadata  # still claims to be a LUT
    path = tmp_path / "missing.parquet"
    pq.write_table(table, path)
    expect_lut_error(path, "lacks column", "cv", "session_id")


def test_read_column_of_wrong_type(tmp_path):
    table = rows_to_table(rows_for())
    index = table.schema.get_field_index("median_us")
    table = table.set_column(index, pa.field("median_us", pa.string()), pa.array(["fast"] * len(SIGS)))
    path = tmp_path / "types.parquet"
    pq.write_table(table, path)
    expect_lut_error(path, "unexpected types")


def test_read_null_in_required_column(tmp_path):
    table = rows_to_table(rows_for())
    loose = pa.schema([f.with_nullable(True) for f in LUT_SCHEMA], metadata=LUT_SCHEMA.metadata)
    table = table.cast(loose)
    index = table.schema.get_field_index("median_us")
    table = table.set_column(index, loose.field("median_us"), pa.array([None] * len(SIGS), pa.float64()))
    path = tmp_path / "nulls.parquet"
    pq.write_table(table, path)
    expect_lut_error(path)


def test_validate_table_accepts_reordered_columns():
    table = rows_to_table(rows_for())
    shuffled = table.select(list(reversed(LUT_COLUMNS)))
    assert validate_table(shuffled, "here").column_names == list(LUT_COLUMNS)
