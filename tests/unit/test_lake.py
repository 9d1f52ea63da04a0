"""Partitions are written atomically: an interrupted write leaves the previous partition readable."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kd_tasks.storage import files, lake


def test_roundtrip_with_provenance(home):
    path = home / "ds=2024-01-01" / lake.PART_FILE
    lake.write_partition(pa.table({"x": [1, 2]}), path, {"sql_hash": "abc"})
    assert lake.read_partition(path, "extract", "").column("x").to_pylist() == [1, 2]
    assert lake.read_provenance(path) == {"sql_hash": "abc"}


def test_interrupted_write_keeps_previous_partition(home, monkeypatch):
    path = home / "ds=2024-01-01" / lake.PART_FILE
    lake.write_partition(pa.table({"x": [1, 2, 3]}), path, {"version": 1})
    real_write = pq.write_table

    def crash_midway(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)  # some bytes hit the disk...
        raise OSError("disk full")  # ...then the writer dies

    monkeypatch.setattr(pq, "write_table", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        lake.write_partition(pa.table({"x": [7, 8, 9, 10]}), path, {"version": 2})
    monkeypatch.setattr(pq, "write_table", real_write)
    assert lake.read_partition(path, "extract", "").column("x").to_pylist() == [1, 2, 3]
    assert lake.read_provenance(path) == {"version": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == [files.FILES_MANIFEST, lake.PART_FILE], \
        "no temp file may be left behind"


def test_missing_partition_error_says_how_to_produce_it(home):
    with pytest.raises(lake.PartitionMissingError, match="run extract_products"):
        lake.read_partition(home / "nope.parquet", "extract", "run extract_products for ds=2024-01-01")


def test_window_days_oldest_first():
    assert lake.window_days("2024-03-01", 3) == ["2024-02-28", "2024-02-29", "2024-03-01"]
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        lake.window_days("01/03/2024", 2)


def _partition(tmp_path):
    path = tmp_path / "ds=2024-01-01" / lake.PART_FILE
    lake.write_partition(pa.table({"x": list(range(1000)), "y": [float(i) for i in range(1000)]}), path, {"v": 1})
    return path


def test_changed_data_pages_are_refused_with_the_file_named(home):
    path = _partition(home)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside the data pages
    path.write_bytes(bytes(data))
    with pytest.raises(files.IntegrityError, match=f"{path}.*does not match the hash.*rerun it"):
        lake.read_partition(path, "soft-label", "rerun it")
    assert not lake.is_sound(path, "soft-label")


def test_truncated_partition_names_the_file_and_the_fix(home):
    path = _partition(home)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(files.IntegrityError, match=f"{path} has 200 bytes but was written with .*truncated.*rerun it"):
        lake.read_provenance(path, "extract", "rerun it")


def test_partition_written_before_manifests_is_verified_and_adopted(tmp_path):
    path = _partition(tmp_path)
    (path.parent / files.FILES_MANIFEST).unlink()  # what an older KD_HOME holds
    assert lake.read_partition(path, "extract", "").num_rows == 1000
    assert files.has_manifest(path.parent)
    (path.parent / files.FILES_MANIFEST).unlink()
    path.write_bytes(path.read_bytes()[:-100])  # a damaged old partition is refused, not adopted
    with pytest.raises(files.IntegrityError, match=f"{path} is damaged.*re-extract"):
        lake.read_partition(path, "extract", "re-extract")
    assert not files.has_manifest(path.parent)


def test_a_partition_without_a_manifest_on_s3_is_an_unfinished_upload_not_adopted(s3_home):
    path = _partition(s3_home)
    (path.parent / files.FILES_MANIFEST).unlink()  # the manifest is uploaded last: a publish cut short
    with pytest.raises(files.IntegrityError, match=f"{path.parent / files.FILES_MANIFEST} does not exist.*re-extract"):
        lake.read_partition(path, "extract", "re-extract")
    assert not files.has_manifest(path.parent)


@pytest.mark.parametrize("bad", ["2024-13-45", "2024-02-30", "../2024-01-01", "2024-1-1"])
def test_dates_are_calendar_dates(bad):
    with pytest.raises(ValueError, match="is not a calendar date YYYY-MM-DD"):
        lake.window_days(bad, 1)


@pytest.mark.parametrize("use_case,version", [("../x", "0123456789ab"), ("product_category", "../versions/a"),
                                              ("Product/..", "0123456789ab"), ("product_category", "0123456789AB")])
def test_partition_paths_refuse_names_outside_their_grammar(tmp_path, use_case, version):
    with pytest.raises(ValueError, match="is not valid"):
        lake.soft_label_path(use_case, version, "2024-01-01", tmp_path)


@pytest.mark.parametrize("damage", [b"", b'{"files": {"part-0.parq', b'{"files": 3}'])
def test_a_damaged_partition_manifest_is_named(home, damage):
    path = _partition(home)
    manifest = path.parent / files.FILES_MANIFEST
    manifest.write_bytes(damage)
    with pytest.raises(files.IntegrityError, match=f"{manifest} (is damaged|lists no files).*relabel it"):
        lake.read_partition(path, "soft-label", "relabel it")
