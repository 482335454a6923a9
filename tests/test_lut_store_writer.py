"""The LUT file being written: merging tables, check_writable, the resumable LutWriter (part files, the
lock, crashes) and folding parts into the LUT.

Rows, tables and reading are in test_lut_store.py; the rows both use come from lut_rows.py.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lut_rows import SIGS, T0, one_line, row, rows_for, write_lut
from harness.errors import ChameleonError, LutFileError, OutputNotWritable, SweepLocked
from harness.lut.store import LUT_SCHEMA, LutWriter, check_writable, empty_table, find_row, fold_parts, merge_tables, parts_dir, read_lut, read_parts, read_with_parts, rows_to_table, signatures_of


# ------------------------------------------------------------------ merging
def test_merge_keeps_distinct_rows():
    a = rows_to_table(rows_for(SIGS[:3]))
    b = rows_to_table(rows_for(SIGS[3:]))
    merged = merge_tables([a, b])
    assert sorted(signatures_of(merged)) == sorted(s.key for s in SIGS)
    assert merged.schema.equals(LUT_SCHEMA)


def test_merge_of_nothing_is_empty():
    assert merge_tables([]).num_rows == 0
    assert merge_tables([empty_table(), empty_table()]).num_rows == 0
    assert merge_tables([]).schema.equals(LUT_SCHEMA, check_metadata=True)


def test_merge_newest_wins():
    old = row(SIGS[1], median=100.0, mad=0.1, at=T0)
    new = row(SIGS[1], median=120.0, mad=9.0, at=T0 + timedelta(hours=1))
    other = row(SIGS[2], median=5.0, at=T0)
    for order in ([old, other], [new]), ([new], [old, other]):
        merged = merge_tables([rows_to_table(order[0]), rows_to_table(order[1])], on_duplicate="newest")
        assert merged.num_rows == 2
        assert find_row(merged, SIGS[1])["median_us"] == 120.0
        assert find_row(merged, SIGS[2])["median_us"] == 5.0


def test_merge_newest_is_the_default():
    old = row(SIGS[1], median=100.0, at=T0)
    new = row(SIGS[1], median=120.0, at=T0 + timedelta(seconds=1))
    assert find_row(merge_tables([rows_to_table([new, old])]), SIGS[1])["median_us"] == 120.0


def test_merge_lowest_cv_wins():
    steady = row(SIGS[1], median=100.0, mad=0.5, at=T0)
    noisy_newer = row(SIGS[1], median=130.0, mad=20.0, at=T0 + timedelta(days=1))
    merged = merge_tables([rows_to_table([noisy_newer]), rows_to_table([steady])], on_duplicate="lowest-cv")
    assert merged.num_rows == 1
    assert find_row(merged, SIGS[1])["median_us"] == 100.0


def test_merge_error_on_duplicates():
    a = rows_to_table([row(SIGS[1], at=T0), row(SIGS[2], at=T0)])
    b = rows_to_table([row(SIGS[1], at=T0 + timedelta(minutes=1))])
    with pytest.raises(LutFileError) as info:
        merge_tables([a, b], on_duplicate="error")
    message = one_line(info.value)
    assert "1 signature(s)" in message and SIGS[1].key in message
    assert merge_tables([a], on_duplicate="error").num_rows == 2


def test_merge_unknown_policy():
    with pytest.raises(LutFileError, match="oldest"):
        merge_tables([rows_to_table(rows_for())], on_duplicate="oldest")


def test_merge_refuses_two_devices():
    a = rows_to_table([row(SIGS[1], device="xeon")])
    b = rows_to_table([row(SIGS[2], device="cuda")])
    with pytest.raises(LutFileError) as info:
        merge_tables([a, b])
    message = one_line(info.value)
    assert "cuda" in message and "xeon" in message
    assert merge_tables([a, b], mixed_devices_ok=True).num_rows == 2


# ------------------------------------------------------------------ check_writable
def test_check_writable_creates_the_folder(tmp_path):
    target = tmp_path / "a" / "b" / "lut.parquet"
    assert check_writable(target) == target
    assert target.parent.is_dir()
    assert list(target.parent.iterdir()) == []  # the probe is gone
    assert check_writable(str(target)) == target


def test_check_writable_under_a_regular_file(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(OutputNotWritable) as info:
        check_writable(tmp_path / "file.txt" / "x.parquet")
    assert "file.txt" in one_line(info.value)


def test_check_writable_on_a_folder(tmp_path):
    with pytest.raises(OutputNotWritable, match="is a folder") as info:
        check_writable(tmp_path)
    one_line(info.value)


def test_check_writable_existing_file(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", rows_for())
    assert check_writable(path) == path
    assert read_lut(path).num_rows == len(SIGS)


# ------------------------------------------------------------------ LutWriter
def part_files(path: Path) -> list[Path]:
    folder = parts_dir(path)
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def test_rows_reach_part_files_after_flush(tmp_path):
    path = tmp_path / "lut.parquet"
    with LutWriter(path, flush_every_s=1e9, merge_every_s=1e9) as writer:
        writer.add(row(SIGS[1]))
        writer.add(row(SIGS[2]))
        assert part_files(path) == []  # still pending
        writer.flush()
        [part] = part_files(path)
        assert pq.read_table(part).num_rows == 2
        parts = read_parts(path)
        tables, unreadable = parts.tables, parts.unreadable
        assert unreadable == [] and sum(t.num_rows for t in tables) == 2
        assert read_lut(path).num_rows == 0  # the LUT exists, empty, from the moment the writer opens
        assert sorted(signatures_of(read_with_parts(path))) == sorted([SIGS[1].key, SIGS[2].key])
        writer.flush()  # nothing pending: no empty part
        assert len(part_files(path)) == 1
    table = read_lut(path)
    assert sorted(signatures_of(table)) == sorted([SIGS[1].key, SIGS[2].key])
    assert part_files(path) == []
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_flush_every_zero_writes_a_part_per_row(tmp_path):
    path = tmp_path / "lut.parquet"
    with LutWriter(path, flush_every_s=0.0, merge_every_s=1e9) as writer:
        for sig in SIGS[:3]:
            writer.add(row(sig))
        assert len(part_files(path)) == 3
        assert read_with_parts(path).num_rows == 3
    assert read_lut(path).num_rows == 3
    assert part_files(path) == []


def test_merge_every_zero_folds_while_running(tmp_path):
    path = tmp_path / "lut.parquet"
    with LutWriter(path, flush_every_s=0.0, merge_every_s=0.0) as writer:
        writer.add(row(SIGS[1]))
        assert read_lut(path).num_rows == 1
        assert part_files(path) == []
        writer.add(row(SIGS[2]))
        assert read_lut(path).num_rows == 2
    assert read_lut(path).num_rows == 2


def test_writer_folds_into_an_existing_lut(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", [row(SIGS[0], median=3.0), row(SIGS[1], median=100.0, at=T0)])
    with LutWriter(path, flush_every_s=0.0, merge_every_s=1e9) as writer:
        writer.add(row(SIGS[1], median=90.0, at=T0 + timedelta(hours=1)))
        writer.add(row(SIGS[2], median=7.0))
        pending = read_with_parts(path)
        assert pending.num_rows == 3 and find_row(pending, SIGS[1])["median_us"] == 90.0
        assert read_lut(path).num_rows == 2  # the file itself is untouched until the fold
    table = read_lut(path)
    assert table.num_rows == 3
    assert find_row(table, SIGS[0])["median_us"] == 3.0
    assert find_row(table, SIGS[1])["median_us"] == 90.0


def test_rows_are_kept_when_the_sweep_raises(tmp_path):
    path = tmp_path / "lut.parquet"
    with pytest.raises(KeyboardInterrupt):
        with LutWriter(path, flush_every_s=1e9, merge_every_s=1e9) as writer:
            writer.add(row(SIGS[1]))
            raise KeyboardInterrupt
    assert signatures_of(read_lut(path)) == [SIGS[1].key]
    with LutWriter(path):  # the lock was released
        pass


def test_second_writer_is_locked_out(tmp_path):
    path = tmp_path / "lut.parquet"
    with LutWriter(path) as first:
        first.add(row(SIGS[1]))
        second = LutWriter(path)
        with pytest.raises(SweepLocked) as info:
            second.__enter__()
        message = one_line(info.value)
        assert str(path) in message and isinstance(info.value, ChameleonError)
        with pytest.raises(SweepLocked):
            with LutWriter(path):
                pass  # pragma: no cover
        first.add(row(SIGS[2]))
    assert read_lut(path).num_rows == 2
    with LutWriter(path) as third:  # free again once the first is done
        third.add(row(SIGS[3]))
    assert read_lut(path).num_rows == 3


def test_writers_of_different_files_do_not_block_each_other(tmp_path):
    with LutWriter(tmp_path / "a.parquet"), LutWriter(tmp_path / "b.parquet"):
        pass
    assert read_lut(tmp_path / "a.parquet").num_rows == 0
    assert read_lut(tmp_path / "b.parquet").num_rows == 0


def test_exit_with_nothing_measured_leaves_an_empty_lut(tmp_path):
    path = tmp_path / "lut.parquet"
    with LutWriter(path):
        pass
    table = read_lut(path)
    assert table.num_rows == 0
    assert table.schema.equals(LUT_SCHEMA, check_metadata=True)


def test_exit_with_nothing_measured_keeps_an_existing_lut(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", rows_for())
    with LutWriter(path):
        pass
    assert read_lut(path).num_rows == len(SIGS)


def test_stray_unreadable_part_is_reported_not_fatal(tmp_path):
    path = tmp_path / "lut.parquet"
    parts_dir(path).mkdir()
    stray = parts_dir(path) / "part-stray-000001.parquet"
    stray.write_bytes(b"PAR1 this is not parquet")
    parts = read_parts(path)
    tables, unreadable = parts.tables, parts.unreadable
    assert tables == [] and unreadable == [stray]
    assert read_with_parts(path).num_rows == 0
    assert fold_parts(path) == 0
    with LutWriter(path, flush_every_s=0.0, merge_every_s=1e9) as writer:
        writer.add(row(SIGS[1]))
        parts = read_parts(path)
        tables, unreadable = parts.tables, parts.unreadable
        assert unreadable == [stray] and sum(t.num_rows for t in tables) == 1
        assert read_with_parts(path).num_rows == 1
    assert signatures_of(read_lut(path)) == [SIGS[1].key]


def test_part_of_another_schema_is_reported_unreadable(tmp_path):
    path = tmp_path / "lut.parquet"
    parts_dir(path).mkdir()
    foreign = parts_dir(path) / "part-foreign-000001.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    parts = read_parts(path)
    tables, unreadable = parts.tables, parts.unreadable
    assert tables == [] and unreadable == [foreign]


def test_fold_keeps_unreadable_parts(tmp_path):
    path = tmp_path / "lut.parquet"
    parts_dir(path).mkdir()
    stray = parts_dir(path) / "part-stray-000001.parquet"
    stray.write_bytes(b"not parquet")
    pq.write_table(rows_to_table([row(SIGS[1])]), parts_dir(path) / "part-good-000001.parquet")
    assert fold_parts(path) == 1
    assert stray.exists()


def test_read_with_parts_without_anything(tmp_path):
    table = read_with_parts(tmp_path / "lut.parquet")
    assert table.num_rows == 0


# ------------------------------------------------------------------ fold_parts
def write_part(path: Path, name: str, rows: list[dict]) -> Path:
    parts_dir(path).mkdir(exist_ok=True)
    part = parts_dir(path) / f"part-{name}.parquet"
    pq.write_table(rows_to_table(rows), part)
    return part


def test_fold_parts_is_idempotent(tmp_path):
    path = tmp_path / "lut.parquet"
    part = write_part(path, "aaaa-000001", rows_for(SIGS[:3]))
    saved = tmp_path / "saved.parquet"
    shutil.copy(part, saved)
    assert fold_parts(path) == 3
    assert part_files(path) == []
    first = read_lut(path)
    # A crash between writing the LUT and deleting the parts: the part is still there.
    shutil.copy(saved, part)
    assert fold_parts(path) == 3
    second = read_lut(path)
    assert second.num_rows == 3
    assert sorted(signatures_of(second)) == sorted(s.key for s in SIGS[:3])
    assert sorted(second.to_pylist(), key=lambda r: r["signature"]) == \
        sorted(first.to_pylist(), key=lambda r: r["signature"])
    assert fold_parts(path) == 0
    assert read_lut(path).num_rows == 3


def test_writer_crash_between_fold_and_delete(tmp_path):
    path = tmp_path / "lut.parquet"
    saved = tmp_path / "saved"
    saved.mkdir()
    with LutWriter(path, flush_every_s=0.0, merge_every_s=1e9) as writer:
        for sig in SIGS:
            writer.add(row(sig))
        for part in part_files(path):
            shutil.copy(part, saved / part.name)
    assert read_lut(path).num_rows == len(SIGS)
    for part in saved.iterdir():
        shutil.copy(part, parts_dir(path) / part.name)
    assert read_with_parts(path).num_rows == len(SIGS)
    # The next sweep's writer folds the leftovers in again without duplicating anything.
    with LutWriter(path):
        pass
    table = read_lut(path)
    assert table.num_rows == len(SIGS)
    assert len(set(signatures_of(table))) == len(SIGS)
    assert part_files(path) == []


def test_fold_parts_newer_part_replaces_lut_row(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", [row(SIGS[1], median=100.0, at=T0)])
    write_part(path, "bbbb-000001", [row(SIGS[1], median=80.0, at=T0 + timedelta(minutes=5))])
    assert fold_parts(path) == 1
    assert find_row(read_lut(path), SIGS[1])["median_us"] == 80.0


def test_fold_parts_of_another_device_fails_and_keeps_the_parts(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", [row(SIGS[1], device="xeon")])
    part = write_part(path, "cccc-000001", [row(SIGS[2], device="cuda")])
    with pytest.raises(LutFileError) as info:
        fold_parts(path)
    one_line(info.value)
    assert part.exists()
    assert read_lut(path).num_rows == 1


def test_fold_parts_without_parts(tmp_path):
    path = write_lut(tmp_path / "lut.parquet", rows_for())
    assert fold_parts(path) == 0
    assert fold_parts(tmp_path / "none.parquet") == 0
    assert not (tmp_path / "none.parquet").exists()
