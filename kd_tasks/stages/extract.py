"""Stage 1: run the use case's extraction SQL for one ds and write the extract partition, streamed
from the warehouse into shards of at most ``shard_rows`` rows (memory is bounded by a shard, whatever
the window's size)."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from .. import warehouse
from ..config import UseCase
from ..storage import lake

log = logging.getLogger(__name__)


class EmptyPartitionError(RuntimeError):
    """The extraction window holds no rows: nothing to label or train on."""


def extract_window(use_case: UseCase, ds: str) -> tuple[str, str]:
    end = lake.parse_ds(ds)
    start = end - dt.timedelta(days=use_case.extract_lookback_days - 1)
    return start.isoformat(), end.isoformat()


def sql_params(use_case: UseCase, start_ds: str, end_ds: str) -> dict[str, Any]:
    """Values bound into a use case's SQL: the window as dates and as day numbers (days since
    1970-01-01, for portable date arithmetic), plus the use case's ``extract_params``."""
    return {"start_ds": start_ds, "end_ds": end_ds, "start_day": lake.day_index(start_ds),
            "end_day": lake.day_index(end_ds), **use_case.extract_params}


class DuplicateIds:
    """Are a partition's ids unique? Kept shard by shard in about 24 bytes per row: each shard's id
    column (Arrow) and a 64-bit hash per id (within this process). Equal hashes are confirmed on the ids
    themselves, so a hash collision never refuses a partition. (Arrow's ``count_distinct`` over the whole
    column built a hash table of about 100 bytes per row, the extract's largest memory at scale.)"""

    def __init__(self) -> None:
        self.ids: list[pa.Array | pa.ChunkedArray] = []
        self.hashes: list[np.ndarray] = []

    def add(self, ids: pa.Array | pa.ChunkedArray) -> None:
        self.ids.append(ids)
        self.hashes.append(lake.id_hashes(ids))

    def found(self) -> list[Any]:
        """Up to 5 ids that occur more than once."""
        if not self.hashes:
            return []
        ordered = np.sort(np.concatenate(self.hashes))
        suspects = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        if not len(suspects):
            return []
        seen: set[Any] = set()
        twice: list[Any] = []
        for ids, hashes in zip(self.ids, self.hashes):
            for x in ids.take(pa.array(np.flatnonzero(np.isin(hashes, suspects)))).to_pylist():
                if x in seen and x not in twice:
                    twice.append(x)
                seen.add(x)
        return twice[:5]


def _regroup(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Streamed batches regrouped into tables of exactly ``rows`` rows (the last one fewer)."""
    pending: list[pa.Table] = []
    size = 0
    for table in tables:
        while table.num_rows:
            take = min(rows - size, table.num_rows)
            pending.append(table.slice(0, take))
            size += take
            table = table.slice(take)
            if size == rows:
                yield warehouse.concat(pending)
                pending, size = [], 0
    if size:
        yield warehouse.concat(pending)


def extract_partition(use_case: UseCase, ds: str, warehouse_uri: warehouse.Warehouse,
                      home: Path | None = None) -> dict[str, Any]:
    """Query the window ending at ``ds`` and write ``lake/<use_case>/extract/ds=<ds>`` as shards.

    Returns ``{"path", "rows", "labelled", "shards", "window"}``. Raises ``EmptyPartitionError`` (and
    writes nothing) when the window is empty, so no empty partition or empty model can follow from it.
    Rows keep the query's order within the partition (the training window sorts ids by byte order,
    whatever the database's collation).
    """
    start_ds, end_ds = extract_window(use_case, ds)
    dialect = warehouse.dialect_of(warehouse_uri)
    shown = warehouse.redact(warehouse_uri)
    batches = warehouse.stream_tables(warehouse_uri, use_case.extract_sql, sql_params(use_case, start_ds, end_ds),
                                      batch_rows=min(use_case.shard_rows, warehouse.STREAM_BATCH_ROWS))
    with contextlib.closing(batches):  # the connection closes on every way out
        first = next(batches)
        required = list(dict.fromkeys([use_case.id_column, use_case.label_column, *use_case.teacher_columns]))
        missing = [c for c in required if c not in first.column_names]
        if missing:
            raise ValueError(
                f"sql/{use_case.extract_sql} returned columns {first.column_names} but use case "
                f"{use_case.name!r} needs {missing}; fix the query or the use case's column names"
            )
        if first.num_rows == 0:
            raise EmptyPartitionError(
                f"no rows for {use_case.name} in window {start_ds}..{end_ds} ({shown}); check that the "
                "warehouse was loaded for these dates, or set on_empty='skip' to skip such days")
        ids = DuplicateIds()
        counts = {"rows": 0, "labelled": 0, "shards": 0}
        started = time.perf_counter()

        def shard_tables() -> Iterator[pa.Table]:
            def all_batches() -> Iterator[pa.Table]:
                yield first
                yield from batches

            for table in _regroup(all_batches(), use_case.shard_rows):
                ids.add(table.column(use_case.id_column))
                counts["rows"] += table.num_rows
                counts["labelled"] += table.num_rows - table.column(use_case.label_column).null_count
                counts["shards"] += 1
                elapsed = time.perf_counter() - started
                log.info("extract ds=%s: shard %d with %d rows (%d so far, %.0f rows/s)", ds, counts["shards"] - 1,
                         table.num_rows, counts["rows"], counts["rows"] / max(elapsed, 1e-9))
                yield table

        def totals() -> dict[str, Any]:
            twice = ids.found()
            if twice:
                raise ValueError(
                    f"sql/{use_case.extract_sql} returned duplicate {use_case.id_column} values for ds={ds} "
                    f"(e.g. {twice}); row ids must be unique within a partition"
                )
            return {"rows": counts["rows"], "labelled": counts["labelled"]}

        provenance = {
            "use_case": use_case.name, "ds": ds, "window": [start_ds, end_ds],
            "sql_file": warehouse.sql_path(use_case.extract_sql, dialect).relative_to(warehouse.SQL_DIR).as_posix(),
            "sql_hash": warehouse.sql_hash(use_case.extract_sql), "sql_params": dict(use_case.extract_params),
            "dialect": dialect,
        }
        path = lake.extract_dir(use_case.name, ds, home)
        manifest = lake.write_shards(path, shard_tables(), provenance, totals)
        shards = manifest["partition"]["shards"]
    log.info("extracted %d rows (%d with gold labels) in %d shard(s) for ds=%s window %s..%s from %s in %.1fs -> %s",
             counts["rows"], counts["labelled"], shards, ds, start_ds, end_ds, shown,
             time.perf_counter() - started, path)
    return {"path": str(path), "rows": counts["rows"], "labelled": counts["labelled"], "shards": shards,
            "window": [start_ds, end_ds]}
