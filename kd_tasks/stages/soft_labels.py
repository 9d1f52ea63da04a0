"""Stage 2: the teacher writes raw logits for every extract partition in the training window.

Soft labels keep raw logits (temperature is applied at training time, so one labelling serves any T)
and live under ``teacher=<version>``, so labels of two teacher versions are never mixed. A partition
already labelled by this teacher version, from the same extract, is not labelled again.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import UseCase
from ..models import load_teacher, teacher_inputs
from ..storage import files, lake
from ..storage.files import IntegrityError
from ..storage.lake import NaNLogitsError, check_finite

__all__ = ["NaNLogitsError", "generate_soft_labels", "teacher_version"]
log = logging.getLogger(__name__)


def extract_fingerprint(ids: list[str], inputs: Any) -> str:
    """Hash of the row ids and the teacher's inputs: soft labels are reused only for identical rows."""
    h = hashlib.sha256("\n".join(ids).encode())
    if isinstance(inputs, np.ndarray):
        h.update(np.ascontiguousarray(inputs).tobytes())
    else:
        h.update("\x00".join(inputs).encode())
    return h.hexdigest()[:16]


def teacher_version(use_case: UseCase) -> str:
    path = use_case.resolved_teacher_dir()
    if not path.is_dir():
        load_teacher(path)  # raises the documented "no teacher" error
    return files.content_version(path)


def generate_soft_labels(use_case: UseCase, ds: str, lookback_days: int | None = None,
                         home: Path | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Label every extract partition in the window ending at ``ds`` that lacks current soft labels.

    Returns ``{"teacher_version", "labelled": [ds...], "reused": [ds...], "missing_extract": [ds...],
    "healed": [ds...], "rows_labelled"}``; ``healed`` lists partitions that failed verification (damaged
    after they were written) and were relabelled. The partition for ``ds`` itself must exist.
    """
    days = lake.window_days(ds, lookback_days or use_case.distill.lookback_days)
    version = teacher_version(use_case)
    teacher = None
    result: dict[str, Any] = {"teacher_version": version, "labelled": [], "reused": [],
                              "missing_extract": [], "healed": [], "rows_labelled": 0}
    for day in days:
        src = lake.extract_path(use_case.name, day, home)
        if not src.exists():
            if day == ds:
                lake.read_partition(src, "extract", f"run the extract task for ds={ds} first")
            result["missing_extract"].append(day)
            continue
        extract = lake.read_partition(src, "extract", lake.extract_fix(use_case.name, day, home))
        ids = extract.column(use_case.id_column).to_pylist()
        inputs = teacher_inputs(use_case, extract)
        fingerprint = extract_fingerprint(ids, inputs)
        dst = lake.soft_label_path(use_case.name, version, day, home)
        if dst.exists():
            try:
                reusable = lake.read_provenance(dst, "soft-label", "").get("extract_ids") == fingerprint
            except IntegrityError as exc:
                log.warning("relabelling ds=%s: %s", day, str(exc).rstrip("; "))
                result["healed"].append(day)
                reusable = False
            if reusable:
                result["reused"].append(day)
                continue
        if teacher is None:
            teacher = load_teacher(use_case.resolved_teacher_dir())
            log.info("loaded teacher %s (%d outputs, %.2fM params)", version, len(teacher.label_names),
                     teacher.num_parameters() / 1e6)
        started = time.perf_counter()
        logits = np.concatenate([
            teacher.logits(inputs[i:i + 1024], batch_size=batch_size) for i in range(0, len(inputs), 1024)
        ]) if len(inputs) else np.zeros((0, len(teacher.label_names)), np.float32)
        check_finite(logits, f"teacher {version} on ds={day}",
                     "the teacher weights are corrupt; re-run kd_teacher_bootstrap or restore the teacher directory")
        lake.write_partition(lake.soft_label_table(ids, day, logits), dst, {
            "use_case": use_case.name, "ds": day, "teacher_version": version,
            "label_names": teacher.label_names, "extract_path": str(src), "extract_ids": fingerprint,
            "extract_provenance": lake.provenance_of(extract),
        })
        elapsed = time.perf_counter() - started
        log.info("soft labels ds=%s: %d rows in %.1fs (%.0f rows/s) -> %s", day, len(ids), elapsed,
                 len(ids) / max(elapsed, 1e-9), dst)
        result["labelled"].append(day)
        result["rows_labelled"] += len(ids)
    if result["reused"]:
        log.info("already labelled by teacher %s, not redone: %s", version, result["reused"])
    if result["missing_extract"]:
        log.info("no extract partition (skipped or not yet extracted): %s", result["missing_extract"])
    return result
