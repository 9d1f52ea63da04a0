"""Partitions are written atomically: an interrupted write leaves the previous partition readable."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kd_tasks import lake


def test_roundtrip_with_provenance(tmp_path):
    path = tmp_path / "ds=2024-01-01" / lake.PART_FILE
    lake.write_partition(pa.table({"x": [1, 2]}), path, {"sql_hash": "abc"})
    assert pq.read_table(path).column("x").to_pylist() == [1, 2]
    assert lake.read_provenance(path) == {"sql_hash": "abc"}


def test_interrupted_write_keeps_previous_partition(tmp_path, monkeypatch):
    path = tmp_path / "ds=2024-01-01" / lake.PART_FILE
    lake.write_partition(pa.table({"x": [1, 2, 3]}), path, {"version": 1})
    real_write = pq.write_table

    def crash_midway(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)  # some bytes hit the disk...
        raise OSError("disk full")  # ...then the writer dies

    monkeypatch.setattr(pq, "write_table", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        lake.write_partition(pa.table({"x": [7, 8, 9, 10]}), path, {"version": 2})
    monkeypatch.undo()
    assert pq.read_table(path).column("x").to_pylist() == [1, 2, 3]
    assert lake.read_provenance(path) == {"version": 1}
    assert [p.name for p in path.parent.iterdir()] == [lake.PART_FILE], "no temp file may be left behind"


def test_missing_partition_error_says_how_to_produce_it(tmp_path):
    with pytest.raises(lake.PartitionMissingError, match="run extract_products"):
        lake.read_partition(tmp_path / "nope.parquet", "extract", "run extract_products for ds=2024-01-01")


def test_window_days_oldest_first():
    assert lake.window_days("2024-03-01", 3) == ["2024-02-28", "2024-02-29", "2024-03-01"]
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        lake.window_days("01/03/2024", 2)
