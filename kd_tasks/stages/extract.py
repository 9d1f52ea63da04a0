"""Stage 1: run the use case's extraction SQL for one ds and write the extract partition."""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

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


def extract_partition(use_case: UseCase, ds: str, warehouse_uri: str,
                      home: Path | None = None) -> dict[str, Any]:
    """Query the window ending at ``ds`` and write ``lake/<use_case>/extract/ds=<ds>``.

    Returns ``{"path", "rows", "labelled", "window"}``. Raises ``EmptyPartitionError`` (and writes
    nothing) when the window is empty, so no empty partition or empty model can follow from it.
    """
    start_ds, end_ds = extract_window(use_case, ds)
    table = warehouse.query_table(warehouse_uri, use_case.extract_sql, sql_params(use_case, start_ds, end_ds))
    required = list(dict.fromkeys([use_case.id_column, use_case.label_column, *use_case.teacher_columns]))
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ValueError(
            f"sql/{use_case.extract_sql} returned columns {table.column_names} but use case "
            f"{use_case.name!r} needs {missing}; fix the query or the use case's column names"
        )
    if table.num_rows == 0:
        raise EmptyPartitionError(
            f"no rows for {use_case.name} in window {start_ds}..{end_ds} ({warehouse.redact(warehouse_uri)}); "
            "check that the warehouse was loaded for these dates, or set on_empty='skip' to skip such days"
        )
    table = table.sort_by(use_case.id_column)  # byte order: identical whatever the database's collation
    ids = table.column(use_case.id_column)
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise ValueError(
            f"sql/{use_case.extract_sql} returned duplicate {use_case.id_column} values for ds={ds}; "
            "row ids must be unique within a partition"
        )
    labelled = table.num_rows - table.column(use_case.label_column).null_count
    provenance = {
        "use_case": use_case.name, "ds": ds, "window": [start_ds, end_ds],
        "sql_file": use_case.extract_sql, "sql_hash": warehouse.sql_hash(use_case.extract_sql),
        "sql_params": dict(use_case.extract_params), "rows": table.num_rows, "labelled": labelled,
    }
    path = lake.write_partition(table, lake.extract_path(use_case.name, ds, home), provenance)
    log.info("extracted %d rows (%d with gold labels) for ds=%s window %s..%s -> %s",
             table.num_rows, labelled, ds, start_ds, end_ds, path)
    return {"path": str(path), "rows": table.num_rows, "labelled": labelled,
            "window": [start_ds, end_ds]}
