"""Date-partitioned Parquet under KD_HOME, each partition verified on every read.

Layout::

    lake/<use_case>/extract/ds=YYYY-MM-DD/part-0.parquet + _kd_files.json
    lake/<use_case>/soft_labels/teacher=<version>/ds=YYYY-MM-DD/part-0.parquet + _kd_files.json

A partition is one Parquet file (page checksums on) plus its manifest (``files.write_manifest``: size
and sha256), written last. The file is written under a temporary name and renamed into place, so a
reader sees the old file or the new one; the manifest then tells a complete partition from one whose
bytes changed since (a crash between the two writes, a flipped bit, a truncation): such a partition is
refused with its path and the fix, and the soft-label stage relabels it by itself. A partition written
before manifests existed is checked by decoding it whole and then given a manifest. Provenance (SQL
hash, window, teacher version, ...) lives in the Parquet key-value metadata.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

import numpy as np

from .. import names
from ..home import kd_home
from . import files

log = logging.getLogger(__name__)

PART_FILE = "part-0.parquet"
META_KEY = b"kd_provenance"


class PartitionMissingError(FileNotFoundError):
    """An upstream partition a stage needs has not been produced."""


class NaNLogitsError(ValueError):
    """Logits contain NaN or infinity: the teacher or a soft-label file is broken."""


def parse_ds(ds: str) -> dt.date:
    return dt.date.fromisoformat(names.ds(ds))


def day_index(ds: str) -> int:
    """``ds`` as days since 1970-01-01: the day numbers the SQL does its date arithmetic with."""
    return (parse_ds(ds) - dt.date(1970, 1, 1)).days


def window_days(ds: str, days: int) -> list[str]:
    """The ``days`` dates ending at ``ds`` (inclusive), oldest first."""
    end = parse_ds(ds)
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def extract_path(use_case: str, ds: str, home: Path | None = None) -> Path:
    base = names.child((home or kd_home()) / "lake", names.use_case_name(use_case)) / "extract"
    return base / f"ds={parse_ds(ds)}" / PART_FILE


def soft_label_path(use_case: str, teacher_version: str, ds: str, home: Path | None = None) -> Path:
    base = names.child((home or kd_home()) / "lake", names.use_case_name(use_case)) / "soft_labels"
    return base / f"teacher={names.version(teacher_version, 'teacher version')}" / f"ds={parse_ds(ds)}" / PART_FILE


def write_partition(table: pa.Table, path: Path, provenance: Mapping[str, Any]) -> Path:
    """Write ``table`` to ``path`` atomically, with ``provenance`` in the file metadata, then its manifest."""
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    with files.atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)
    files.fault_point("partition_written")
    files.write_manifest(path.parent, [path.name])
    return path


def check_partition(path: Path, what: str, fix: str) -> None:
    """Verify a partition against its manifest; an older one without a manifest is decoded whole and,
    if sound, given one. Raises ``IntegrityError`` naming the file and ``fix``."""
    if not path.is_file():
        raise PartitionMissingError(f"{what} partition {path} does not exist; {fix}")
    if files.has_manifest(path.parent):
        files.verify(path.parent, f"{what} partition", fix, only=[path.name])
        return
    try:  # written before manifests: decode every page (checksums too) before trusting it
        table = pq.read_table(path, page_checksum_verification=True)
        if META_KEY not in (table.schema.metadata or {}):
            raise ValueError("no provenance metadata")
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise files.IntegrityError(f"{what} partition {path} is damaged ({type(exc).__name__}: {exc}); {fix}") from None
    files.write_manifest(path.parent, [path.name])
    log.info("verified %s (written before manifests) and gave it a manifest", path)


def is_sound(path: Path, what: str) -> bool:
    """True when the partition exists and verifies; a damaged one is logged and reported False."""
    try:
        check_partition(path, what, "")
    except PartitionMissingError:
        return False
    except files.IntegrityError as exc:
        log.warning("%s", str(exc).rstrip("; "))
        return False
    return True


def provenance_of(table: pa.Table) -> dict[str, Any]:
    """The provenance a partition was written with, from a table ``read_partition`` returned."""
    raw = (table.schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_provenance(path: Path, what: str = "lake", fix: str = "rewrite the partition") -> dict[str, Any]:
    check_partition(path, what, fix)
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_partition(path: Path, what: str, fix: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one verified partition; a missing or damaged file raises an error that says how to produce it."""
    check_partition(path, what, fix)
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None,
                             page_checksum_verification=True)
    except (pa.ArrowException, OSError) as exc:
        raise files.IntegrityError(f"{what} partition {path} could not be read ({exc}); {fix}") from None


def extract_fix(use_case: str, day: str, home: Path | None = None) -> str:
    return (f"re-extract it: run the nightly DAG of {use_case} for ds={day} again, or delete the folder "
            f"{extract_path(use_case, day, home).parent} to leave that day out of training windows")


# --------------------------------------------------------------------------- soft-label partitions


def soft_label_table(ids: Sequence[str], day: str, logits: np.ndarray) -> pa.Table:
    """The soft-label partition format: ``row_id``, ``ds`` and raw ``logits`` (fixed-size float32 list)."""
    return pa.table({
        "row_id": pa.array(list(ids), pa.string()),
        "ds": pa.array([day] * len(ids), pa.string()),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.astype(np.float32).ravel()), logits.shape[1]),
    })


def check_finite(logits: np.ndarray, where: str, fix: str) -> None:
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise NaNLogitsError(f"{where}: {int(bad.sum())} of {len(logits)} rows have NaN/inf logits; {fix}")


def read_soft_labels(use_case: str, teacher_version: str, day: str, fix: str,
                     home: Path | None = None) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Row ids, logits (n, outputs) and provenance of one verified soft-label partition; NaN or
    infinite logits are refused."""
    table = read_partition(soft_label_path(use_case, teacher_version, day, home), "soft-label", fix)
    ids = table.column("row_id").to_pylist()
    width = table.schema.field("logits").type.list_size
    logits = np.asarray(table.column("logits").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                        dtype=np.float32).reshape(len(ids), width)
    check_finite(logits, f"soft labels {day} (teacher {teacher_version})",
                 f"delete that partition and rerun generate_soft_labels for ds={day}")
    return ids, logits, provenance_of(table)

