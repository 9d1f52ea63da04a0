"""Date-partitioned Parquet under KD_HOME, each partition verified on every read.

Layout (hive-style keys)::

    lake/<use_case>/extract/ds=YYYY-MM-DD/part-<k>.parquet ... + _kd_files.json
    lake/<use_case>/soft_labels/teacher=<labelling>/ds=YYYY-MM-DD/shard=<k>/part-0.parquet + _kd_files.json

An extract partition is made of shards ``part-0 .. part-<n-1>`` of at most ``shard_rows`` rows each,
written by one task as a folder (``files.publish_dir``) whose manifest, written last, lists every shard
with its size and sha256 and records the partition's totals. Soft labels are written shard by shard by
separate (mapped) tasks, so each shard is a partition of its own: one Parquet file plus its manifest.
A file is written under a temporary name and renamed into place; the manifest then tells a complete
file from one whose bytes changed since (a crash between the two writes, a flipped bit, a truncation):
such a file is refused with its path and the fix, and the soft-label stage relabels it by itself. A
partition written before manifests existed (one ``part-0.parquet``: one shard) is checked by decoding
it whole and then given a manifest. Provenance (SQL hash, window, teacher version, ...) lives in the
Parquet key-value metadata of every file.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

import numpy as np

from .. import names
from ..home import kd_home
from . import files
from .fs import AnyPath, is_remote

log = logging.getLogger(__name__)

PART_FILE = "part-0.parquet"
META_KEY = b"kd_provenance"
CODEC = "zstd"  # every partition file's compression
LOGITS_FLOAT16_MAX = 65504.0  # the largest finite float16


class PartitionMissingError(FileNotFoundError):
    """An upstream partition a stage needs has not been produced."""


class NaNLogitsError(ValueError):
    """Logits contain NaN or infinity: the teacher or a soft-label file is broken."""


def id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per row id (Python's ``hash``: stable within this process only), for comparing the
    ids of a window or a partition without a hash table of the ids themselves."""
    return np.fromiter((hash(x) for x in ids.to_pylist()), np.int64, len(ids))


def parse_ds(ds: str) -> dt.date:
    return dt.date.fromisoformat(names.ds(ds))


def day_index(ds: str) -> int:
    """``ds`` as days since 1970-01-01: the day numbers the SQL does its date arithmetic with."""
    return (parse_ds(ds) - dt.date(1970, 1, 1)).days


def window_days(ds: str, days: int) -> list[str]:
    """The ``days`` dates ending at ``ds`` (inclusive), oldest first."""
    end = parse_ds(ds)
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def extract_dir(use_case: str, ds: str, home: AnyPath | None = None) -> AnyPath:
    """The folder of the extract partition of ``ds`` (its shards and manifest)."""
    base = names.child((home or kd_home()) / "lake", names.use_case_name(use_case)) / "extract"
    return base / f"ds={parse_ds(ds)}"


def extract_path(use_case: str, ds: str, home: AnyPath | None = None, shard: int = 0) -> AnyPath:
    """The file of one shard of an extract partition (shard 0: the whole of a one-shard partition)."""
    return extract_dir(use_case, ds, home) / shard_name(shard)


def shard_name(shard: int) -> str:
    return f"part-{int(shard)}.parquet"


def shard_index(name: str) -> int:
    return int(name[len("part-"):-len(".parquet")])


def soft_label_dir(use_case: str, labelling: str, ds: str, home: AnyPath | None = None) -> AnyPath:
    """The folder of the soft labels of ``ds`` by one labelling (teacher version, and how it ran)."""
    base = names.child((home or kd_home()) / "lake", names.use_case_name(use_case)) / "soft_labels"
    return base / f"teacher={names.labelling(labelling)}" / f"ds={parse_ds(ds)}"


def soft_label_path(use_case: str, labelling: str, ds: str, home: AnyPath | None = None, shard: int = 0) -> AnyPath:
    """The file of the soft labels of one extract shard."""
    return soft_label_dir(use_case, labelling, ds, home) / f"shard={int(shard)}" / PART_FILE


def write_partition(table: pa.Table, path: AnyPath, provenance: Mapping[str, Any]) -> AnyPath:
    """Write ``table`` to ``path`` atomically, with ``provenance`` in the file metadata, then its manifest."""
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    with files.atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True, compression=CODEC)
    files.fault_point("partition_written")
    files.write_manifest(path.parent, [path.name])
    return path


def check_partition(path: AnyPath, what: str, fix: str) -> Any:
    """Verify a partition file against its folder's manifest; an older one without a manifest is
    decoded whole and, if sound, given one. Raises ``IntegrityError`` naming the file and ``fix``.
    Returns what ``pyarrow.parquet`` reads it from: the local path, or on an object store the bytes
    that were verified (a shard is of bounded size: one GET, hashed and parsed from memory)."""
    if not path.is_file():
        raise PartitionMissingError(f"{what} partition {path} does not exist; {fix}")
    if files.has_manifest(path.parent) or not files.may_adopt(path.parent):
        data = {path.name: path.read_bytes()} if is_remote(path) else None
        files.verify(path.parent, f"{what} partition", fix, only=[path.name], contents=data)
        return pa.BufferReader(data[path.name]) if data else path
    try:  # written before manifests: decode every page (checksums too) before trusting it
        table = pq.read_table(path, page_checksum_verification=True)
        if META_KEY not in (table.schema.metadata or {}):
            raise ValueError("no provenance metadata")
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise files.IntegrityError(f"{what} partition {path} is damaged ({type(exc).__name__}: {exc}); {fix}") from None
    files.write_manifest(path.parent, [path.name])
    log.info("verified %s (written before manifests) and gave it a manifest", path)
    return path


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
    raw = (pq.read_schema(check_partition(path, what, fix)).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_partition(path: Path, what: str, fix: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one verified partition; a missing or damaged file raises an error that says how to produce it."""
    source = check_partition(path, what, fix)
    try:
        return pq.read_table(source, columns=list(columns) if columns is not None else None,
                             page_checksum_verification=True)
    except (pa.ArrowException, OSError) as exc:
        raise files.IntegrityError(f"{what} partition {path} could not be read ({exc}); {fix}") from None


def extract_fix(use_case: str, day: str, home: AnyPath | None = None) -> str:
    return (f"re-extract it: run the nightly DAG of {use_case} for ds={day} again, or delete the folder "
            f"{extract_dir(use_case, day, home)} to leave that day out of training windows")


# --------------------------------------------------------------------------- sharded partitions


def write_shards(directory: Path, shards: Iterable[pa.Table], provenance: Mapping[str, Any],
                 totals: Callable[[], Mapping[str, Any]] = dict) -> dict[str, Any]:
    """Write a partition of shards as one folder, atomically: each table of ``shards`` becomes
    ``part-<k>.parquet`` (with ``provenance`` and its shard number in the metadata), then the manifest
    records every file and ``totals()`` (called after the last shard; it may raise to refuse the
    partition, and then nothing is written). Returns the manifest."""
    def build(tmp: Path) -> dict[str, Any]:
        written = []
        for k, table in enumerate(shards):
            name = shard_name(k)
            meta = dict(table.schema.metadata or {})
            meta[META_KEY] = json.dumps({**provenance, "shard": k}, sort_keys=True, default=str).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp / name, write_page_checksum=True,
                           compression=CODEC)
            written.append(name)
        files.fault_point("shards_written")
        return files.write_manifest(tmp, written, partition={**provenance, **totals(), "shards": len(written)})

    return files.publish_dir(directory, build, swap_fault="partition_swap")


def _shard_manifest(directory: Path, what: str, fix: str) -> dict[str, Any]:
    """The manifest of a partition folder (a folder written before manifests, its one ``part-0.parquet``,
    is verified by decoding and given one), with at least one file listed."""
    if not directory.is_dir():
        raise PartitionMissingError(f"{what} partition {directory} does not exist; {fix}")
    if not files.has_manifest(directory) and files.may_adopt(directory):
        check_partition(directory / PART_FILE, what, fix)
    manifest = files.read_json(directory / files.FILES_MANIFEST, f"{what} manifest", fix)
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not listed:
        raise files.IntegrityError(f"{what} manifest {directory / files.FILES_MANIFEST} lists no files; {fix}")
    return manifest


def shards(directory: Path, what: str, fix: str) -> list[str]:
    """The shard files of a partition folder, in order, from its manifest."""
    return sorted(_shard_manifest(directory, what, fix)["files"], key=shard_index)


def partition_info(directory: Path, what: str = "extract", fix: str = "re-extract it") -> dict[str, Any]:
    """What a sharded partition's manifest records about it: provenance, ``rows``, ``labelled``,
    ``shards`` (a partition written before shards: its one file's provenance)."""
    manifest = _shard_manifest(directory, what, fix)
    if isinstance(manifest.get("partition"), dict):
        return manifest["partition"]
    names_ = sorted(manifest["files"], key=shard_index)
    return {**read_provenance(directory / names_[0], what, fix), "shards": len(names_)}


def read_extract(use_case: str, ds: str, columns: Sequence[str] | None = None, home: AnyPath | None = None) -> pa.Table:
    """A whole extract partition (every shard, in order) as one table."""
    directory, fix = extract_dir(use_case, ds, home), extract_fix(use_case, ds, home)
    parts = [read_partition(directory / n, "extract", fix, columns) for n in shards(directory, "extract", fix)]
    return pa.concat_tables(parts, promote_options="permissive")


# --------------------------------------------------------------------------- soft-label partitions


def soft_label_table(ids: Any, day: str, logits: np.ndarray) -> pa.Table:
    """The soft-label partition format: ``row_id``, ``ds`` and raw ``logits`` (a fixed-size list per row).

    Logits are stored as float16 (2 bytes, about 1.9 bytes per row and class with zstd against 5.9 for
    float32 + snappy): on MiniLM teachers fine-tuned on the fashion titles (``make bench-quality``'s)
    the rounding moved no logit by more than 4e-3 (logits up to 12.7), the KL at the training
    temperature by less than 1e-8, and no top-1 class in 4,000 real titles (``make bench-scale``
    measures it again: ``teacher.logits_float16``). A shard with a logit beyond float16's range
    (65,504) keeps float32, and so does a teacher with one output (a binary logit, a ranking score):
    there the order of the rows is the whole signal, and float16's steps (0.002 at a score of 2) would
    tie candidates a cross-encoder tells apart, for 2 bytes a row."""
    logits = np.asarray(logits, dtype=np.float32)
    small = logits.ndim == 2 and logits.shape[1] > 1 and (not len(logits) or
                                                          float(np.abs(logits).max()) < LOGITS_FLOAT16_MAX)
    dtype = np.float16 if small else np.float32
    return pa.table({
        "row_id": ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string()),
        "ds": pa.repeat(pa.scalar(day, pa.string()), len(ids)),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.astype(dtype).ravel()), logits.shape[1]),
    })


def check_finite(logits: np.ndarray, where: str, fix: str) -> None:
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise NaNLogitsError(f"{where}: {int(bad.sum())} of {len(logits)} rows have NaN/inf logits; {fix}")


def read_soft_labels(use_case: str, labelling: str, day: str, shard: int, fix: str,
                     home: AnyPath | None = None) -> tuple[pa.Array, np.ndarray, dict[str, Any]]:
    """Row ids (an Arrow string array), logits (n, outputs, float32) and provenance of the verified soft
    labels of one extract shard; NaN or infinite logits are refused."""
    table = read_partition(soft_label_path(use_case, labelling, day, home, shard), "soft-label", fix)
    ids = table.column("row_id").combine_chunks()
    width = table.schema.field("logits").type.list_size
    values = table.column("logits").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    logits = values.astype(np.float32, copy=False).reshape(len(ids), width)
    check_finite(logits, f"soft labels {day} shard {shard} (labelling {labelling})",
                 f"delete that file and rerun generate_soft_labels for ds={day}")
    return ids, logits, provenance_of(table)
