"""Teacher bootstrap: train the use case's teacher family on the warehouse's gold rows up to ``ds``
(held-out rows never), into its teacher directory, unless a sound teacher is already there."""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Mapping

from .. import warehouse
from ..config import TeacherTrainConfig, UseCase, from_dict
from ..holdout import is_holdout
from ..models import load_teacher, train_teacher
from ..storage import lake
from ..storage.teachers import TeacherError, recover_teacher
from .extract import sql_params

log = logging.getLogger(__name__)


def bootstrap_teacher(use_case: UseCase, ds: str, warehouse_uri: str, base_model: str | None = None,
                      force: bool = False, train: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune the use case's teacher on gold rows up to ``ds`` unless one exists (or ``force``).

    ``train`` overrides fields of the use case's ``TeacherTrainConfig`` (epochs, learning_rate, ...).
    """
    train_config = from_dict(TeacherTrainConfig, {**asdict(use_case.teacher_train), **(train or {})})
    target = use_case.resolved_teacher_dir()
    if not force and (target.is_dir() or recover_teacher(target)):
        try:
            teacher = load_teacher(target)  # verifies it
        except TeacherError as exc:
            log.warning("the existing teacher is unusable, training a new one: %s", exc)
        else:
            log.info("teacher %s already exists at %s; pass force=True to retrain", teacher.version, target)
            return {"version": teacher.version, "path": str(target), "trained": False}
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
    log.info("teacher data: %d gold-labelled training rows from %s..%s (%d held out or unlabelled)",
             len(keep), start_ds, ds, len(keys) - len(keep))
    manifest = train_teacher(
        use_case, table.take(keep), target, base_model, train_config,
        {"as_of": ds, "window": [start_ds, ds], "sql_file": use_case.teacher_sql,
         "sql_hash": warehouse.sql_hash(use_case.teacher_sql), "sql_params": dict(use_case.extract_params),
         "holdout_percent": use_case.holdout_percent},
    )
    return {"version": manifest["version"], "path": str(target), "trained": True}
