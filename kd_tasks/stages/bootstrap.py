"""Teacher bootstrap: train the use case's teacher family on the warehouse's gold rows up to ``ds``
(held-out rows never), judge it with the teacher gate, and publish it into its teacher directory,
unless a sound teacher is already there.

The gold rows are split by a hash of the row id (or group) into training rows and ``validation_share``
validation rows: the teacher is validated on them after every epoch (early stopping), then the teacher
gate (``stages.teacher_gate``) compares it there with cheap baselines. A teacher that does not beat
them is ``weak``: the first teacher of a use case is published marked weak (every night's report says
so and the gate holds promotion unless ``accept_weak_teacher``); a weak teacher never replaces an
existing one unless ``publish_weak``.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from .. import warehouse
from ..config import TeacherTrainConfig, UseCase, from_dict
from ..holdout import is_holdout
from ..models import load_teacher, train_teacher
from ..storage import fs, lake
from ..storage.files import listed_files
from ..storage.teachers import MANIFEST, TeacherError, publish_teacher, recover_teacher
from .extract import sql_params

log = logging.getLogger(__name__)


def validation_mask(keys: list[Any], share: float) -> np.ndarray:
    """The validation rows: the ``share`` of ``keys`` (row ids or groups) with the smallest hash, so the
    split is the same every time and a group is never split."""
    digest = np.array([int.from_bytes(hashlib.sha1(f"teacher-validation:{k}".encode()).digest()[:8], "big")
                       for k in keys], dtype=np.uint64)
    distinct = np.unique(digest)
    if len(distinct) < 2:
        return np.zeros(len(keys), bool)
    cut = distinct[min(len(distinct) - 1, max(1, round(share * len(distinct)))) - 1]
    return digest <= cut


def bootstrap_teacher(use_case: UseCase, ds: str, warehouse_uri: str, base_model: str | None = None,
                      force: bool = False, train: Mapping[str, Any] | None = None,
                      publish_weak: bool = False) -> dict[str, Any]:
    """Fine-tune the use case's teacher on gold rows up to ``ds`` unless one exists (or ``force``),
    judge it, and publish it when it may replace what is there.

    ``train`` overrides fields of the use case's ``TeacherTrainConfig`` (epochs, learning_rate, ...).
    Returns the version, path, whether one was trained and published, and the teacher gate's verdict.
    """
    train_config = from_dict(TeacherTrainConfig, {**asdict(use_case.teacher_train), **(train or {})})
    target = use_case.resolved_teacher_dir()
    existing = None
    if target.is_dir() or recover_teacher(target):
        try:
            existing = load_teacher(target)  # verifies it
        except TeacherError as exc:
            log.warning("the existing teacher is unusable, training a new one: %s", exc)
    if existing is not None and not force:
        log.info("teacher %s already exists at %s; pass force=True to retrain", existing.version, target)
        return {"version": existing.version, "path": str(target), "trained": False, "published": False}
    start_ds = (lake.window_days(ds, use_case.teacher_lookback_days)[0] if use_case.teacher_lookback_days
                else "1970-01-01")
    table = warehouse.query_table(warehouse_uri, use_case.teacher_sql, sql_params(use_case, start_ds, ds))
    labels = table.column(use_case.label_column).to_pylist()
    keys = table.column(use_case.holdout_column).to_pylist()
    keep = [i for i, (key, y) in enumerate(zip(keys, labels))
            if y is not None and not is_holdout(key, use_case.holdout_percent)]
    if not keep:
        raise ValueError(
            f"no gold-labelled rows in {start_ds}..{ds} in the warehouse (sql/{use_case.teacher_sql}); "
            "load labelled data for those dates first (python -m kd_tasks.cli load-catalogue / load-events ...)"
        )
    table = table.take(keep)
    val = validation_mask(table.column(use_case.holdout_column).to_pylist(), train_config.validation_share)
    train_rows, val_rows = table.filter(pa.array(~val)), table.filter(pa.array(val))
    log.info("teacher data: %d gold-labelled rows from %s..%s: %d to train on, %d to validate on "
             "(%d held out or unlabelled)", len(keep), start_ds, ds, len(train_rows), len(val_rows),
             len(keys) - len(keep))
    provenance = {"as_of": ds, "window": [start_ds, ds], "sql_file": use_case.teacher_sql,
                  "sql_hash": warehouse.sql_hash(use_case.teacher_sql), "sql_params": dict(use_case.extract_params),
                  "holdout_percent": use_case.holdout_percent, "validation_rows": len(val_rows)}
    fs.cache_dir().mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"teacher-{use_case.name}-", dir=fs.cache_dir()))
    try:
        manifest = train_teacher(use_case, train_rows, scratch / "teacher", base_model, train_config, provenance,
                                 val_rows if len(val_rows) else None)
        candidate = load_teacher(scratch / "teacher")
        verdict = judge_teacher(use_case, candidate, train_rows, val_rows)
        if verdict.get("weak") and existing is not None and not publish_weak:
            log.warning("the new teacher %s is WEAK (%s): not published; teacher %s stays at %s (pass publish_weak "
                        "to replace it anyway)", manifest["version"], verdict["reason"], existing.version, target)
            return {"version": existing.version, "path": str(target), "trained": True, "published": False,
                    "rejected_version": manifest["version"], "verdict": verdict}
        if verdict.get("weak"):
            log.warning("publishing teacher %s marked WEAK (%s): nightly runs hold promotion unless "
                        "accept_weak_teacher", manifest["version"],
                        verdict["reason"] + ("; publish_weak" if existing is not None else "; the first teacher"))
        source = scratch / "teacher"
        published = publish_teacher(target, lambda tmp: _copy_teacher(source, tmp, manifest),
                                    {"verdict": verdict})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"version": published["version"], "path": str(target), "trained": True, "published": True,
            "verdict": verdict}


def judge_teacher(use_case: UseCase, teacher: Any, train_rows: pa.Table, val_rows: pa.Table) -> dict[str, Any]:
    """The teacher gate's verdict (``stages.teacher_gate``): the teacher against its family's baselines
    and the student family trained on gold alone, all trained on ``train_rows`` and scored on
    ``val_rows``; weak without judging when there are too few rows."""
    from dataclasses import replace

    from ..models import family, student_inputs, teacher_inputs
    from ..models.baselines import BASELINES
    from ..models.training import Validation
    from ..tasks import get_task
    from .distill import train_student
    from .teacher_gate import GOLD_ONLY, verdict
    from .window import Window

    if len(val_rows) < 2 or len(train_rows) < 2:
        return {"weak": True, "reason": f"not judged: {len(val_rows)} validation rows; load more gold rows"}
    names, metric = teacher.label_names, use_case.gate.metric
    labels = train_rows.column(use_case.label_column).to_pylist()
    val_labels = val_rows.column(use_case.label_column).to_pylist()
    gold = get_task(use_case.task).gold_index(labels, names)
    groups = None if not use_case.group_column else val_rows.column(use_case.group_column).to_pylist()
    check = Validation(teacher_inputs(use_case, val_rows), val_labels, names, use_case.task, metric, groups)
    # a teacher tuned on these rows beyond early stopping (an ensemble's weights) gives honest logits
    honest = getattr(teacher, "validation_logits", None)
    logits = {"teacher": honest(check) if honest is not None else teacher.logits(check.inputs)}
    info: dict[str, dict[str, Any]] = {}
    for name in family(use_case.teacher_family).baselines:
        predict, info[name] = BASELINES[name](teacher_inputs(use_case, train_rows), gold, len(names),
                                              use_case.task == "binary", check)
        logits[name] = predict(check.inputs)
    window = Window([str(i) for i in range(len(labels))], student_inputs(use_case, train_rows), labels,
                    np.zeros((len(labels), len(names)), np.float32), list(names), np.zeros(len(labels), bool), [],
                    use_case.task, groups=None if not use_case.group_column else
                    train_rows.column(use_case.group_column).to_pylist())
    student = train_student(window, replace(use_case.distill, alpha=0.0), None, GOLD_ONLY,
                            family=use_case.student_family, feature_names=use_case.input_columns)
    logits[GOLD_ONLY] = student.logits(student_inputs(use_case, val_rows))
    info[GOLD_ONLY] = {"family": use_case.student_family, "params": student.num_parameters()}
    return verdict(use_case.task, metric, names, val_labels, logits, info, use_case.gate.bootstrap_resamples,
                   use_case.gate.confidence, groups)


def _copy_teacher(source: Path, tmp: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    for name in listed_files(source):
        if name != MANIFEST:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, tmp / name)
    return {k: v for k, v in manifest.items() if k not in ("version", "files")}
