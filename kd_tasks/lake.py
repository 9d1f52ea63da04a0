"""Date-partitioned Parquet under KD_HOME, written atomically.

Layout::

    lake/<use_case>/extract/ds=YYYY-MM-DD/part-0.parquet
    lake/<use_case>/soft_labels/teacher=<version>/ds=YYYY-MM-DD/part-0.parquet

A partition is one file. It is written under a hidden temporary name in the same directory and then
``os.replace``-d over the final name, so a reader sees the old partition or the new one, never half of
one. Provenance (SQL hash, window, teacher version, ...) lives in the Parquet key-value metadata.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .config import kd_home

PART_FILE = "part-0.parquet"
META_KEY = b"kd_provenance"


class PartitionMissingError(FileNotFoundError):
    """An upstream partition a stage needs has not been produced."""


def parse_ds(ds: str) -> dt.date:
    try:
        return dt.date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise ValueError(f"ds must be a date YYYY-MM-DD, got {ds!r}") from None


def day_index(ds: str) -> int:
    """``ds`` as days since 1970-01-01: the day numbers the SQL does its date arithmetic with."""
    return (parse_ds(ds) - dt.date(1970, 1, 1)).days


def window_days(ds: str, days: int) -> list[str]:
    """The ``days`` dates ending at ``ds`` (inclusive), oldest first."""
    end = parse_ds(ds)
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def extract_path(use_case: str, ds: str, home: Path | None = None) -> Path:
    return (home or kd_home()) / "lake" / use_case / "extract" / f"ds={parse_ds(ds)}" / PART_FILE


def soft_label_path(use_case: str, teacher_version: str, ds: str, home: Path | None = None) -> Path:
    return ((home or kd_home()) / "lake" / use_case / "soft_labels" / f"teacher={teacher_version}"
            / f"ds={parse_ds(ds)}" / PART_FILE)


def write_partition(table: pa.Table, path: Path, provenance: Mapping[str, Any]) -> Path:
    """Write ``table`` to ``path`` atomically, with ``provenance`` in the file metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # atomic on POSIX: readers see old or new, never partial
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_provenance(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(META_KEY)
    return json.loads(raw) if raw else {}


def read_partition(path: Path, what: str, fix: str) -> pa.Table:
    """Read one partition; a missing file raises an error that says how to produce it."""
    if not path.exists():
        raise PartitionMissingError(f"{what} partition {path} does not exist; {fix}")
    return pq.read_table(path)
