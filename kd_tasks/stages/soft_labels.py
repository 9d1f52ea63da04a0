"""Stage 2: the teacher writes raw logits for every extract shard in the training window.

The work is split by (day, shard) so that each piece is one task of its own (the DAG maps
``label_shard`` over ``plan_shards``), retried on its own, and spread over the workers that serve the
``teacher`` queue. ``generate_soft_labels`` runs the same pieces one after the other, in process.

Soft labels keep raw logits (temperature is applied at training time, so one labelling serves any T)
and live under ``teacher=<labelling>``: the teacher version, plus the dtype where it is not fp32
(``models.runtime.labelling``; int8 is the teacher quantised by ONNX Runtime), so labels of two teachers, or of one teacher run two ways, are never
mixed in one training window. A shard already labelled by this labelling, from the same rows, is
not labelled again.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..config import LabelConfig, UseCase
from ..models import load_teacher, teacher_inputs
from ..models import runtime
from ..storage import files, lake
from ..storage.files import IntegrityError
from ..storage.lake import NaNLogitsError, check_finite

__all__ = ["NaNLogitsError", "generate_soft_labels", "teacher_version", "plan_shards", "label_shard", "collect"]
log = logging.getLogger(__name__)


def extract_fingerprint(ids: Any, inputs: Any) -> str:
    """Hash of the row ids and the teacher's inputs (texts, (query, text) pairs or a feature matrix):
    soft labels are reused only for identical rows."""
    h = hashlib.sha256("\n".join(ids).encode())
    if isinstance(inputs, np.ndarray):
        h.update(np.ascontiguousarray(inputs).tobytes())
    else:
        h.update("\x00".join(x if isinstance(x, str) else "\x1f".join(x) for x in inputs).encode())
    return h.hexdigest()[:16]


def teacher_version(use_case: UseCase) -> str:
    path = use_case.resolved_teacher_dir()
    if not path.is_dir():
        load_teacher(path)  # raises the documented "no teacher" error
    return files.content_version(path)


def plan_shards(use_case: UseCase, ds: str, lookback_days: int | None = None,
                home: Path | None = None) -> dict[str, Any]:
    """The (day, shard) pieces of the training window ending at ``ds`` and the labelling they get.

    Returns ``{"teacher_version", "labelling", "shards": [{"day", "shard"}...], "missing_extract": [ds...]}``.
    The partition of ``ds`` itself must exist; earlier days without one are skipped (and listed).
    """
    version = teacher_version(use_case)
    labelling = runtime.labelling(version, use_case.labelling.label_dtype)
    pieces, missing = [], []
    for day in lake.window_days(ds, lookback_days or use_case.distill.lookback_days):
        directory = lake.extract_dir(use_case.name, day, home)
        if not directory.exists():
            if day == ds:
                lake.shards(directory, "extract", f"run the extract task for ds={ds} first")
            missing.append(day)
            continue
        names = lake.shards(directory, "extract", lake.extract_fix(use_case.name, day, home))
        pieces += [{"day": day, "shard": lake.shard_index(n)} for n in names]
    if missing:
        log.info("no extract partition (skipped or not yet extracted): %s", missing)
    log.info("soft labels for ds=%s: %d shard(s) over %d day(s), labelling %s", ds, len(pieces),
             len({p["day"] for p in pieces}), labelling)
    return {"teacher_version": version, "labelling": labelling, "shards": pieces, "missing_extract": missing}


class _Teachers:
    """The teacher, loaded and placed once per process (a sequential run labels many shards)."""

    def __init__(self, use_case: UseCase):
        self.use_case, self.teacher, self.placed, self._version = use_case, None, None, None
        self._threads_before: int | None = None

    def close(self) -> None:
        """Give the process back its CPU thread count (labelling in process, between other stages)."""
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def version(self) -> str:
        if self._version is None:
            self._version = teacher_version(self.use_case)
        return self._version

    def get(self, cfg: LabelConfig) -> tuple[Any, dict[str, Any]]:
        if self.teacher is None:
            import torch

            device = runtime.label_device(cfg.label_device, cfg.label_dtype)
            dtype = runtime.check_dtype(cfg.label_dtype, device)
            self._threads_before = torch.get_num_threads()
            threads = runtime.cpu_threads(cfg.label_threads)
            self.teacher = load_teacher(self.use_case.resolved_teacher_dir()).prepare(device, dtype, threads)
            self.placed = {"device": device, "device_name": runtime.device_name(device), "dtype": dtype,
                           "runtime": self.teacher.runtime, "threads": threads,
                           "batch_size": runtime.batch_size(cfg.label_batch_size, device)}
            log.info("loaded teacher %s (%d outputs, %.2fM params) on %s (%s), %s on %s, %d CPU thread(s), batch %d",
                     self.teacher.version, len(self.teacher.label_names), self.teacher.num_parameters() / 1e6,
                     device, self.placed["device_name"], dtype, self.teacher.runtime, threads,
                     self.placed["batch_size"])
        return self.teacher, self.placed


def label_shard(use_case: UseCase, day: str, shard: int, labelling: str, home: Path | None = None,
                teachers: _Teachers | None = None) -> dict[str, Any]:
    """Label one extract shard (unless its labels are current) with the labelling the plan chose.

    Returns ``{"day", "shard", "labelling", "teacher_version", "rows", "status"}`` (status: labelled,
    reused or healed, i.e. relabelled after its file failed verification) and, when labelled, the
    device, dtype, threads, batch size and rows/s. Refuses to label when the teacher or the dtype
    changed since the plan (the window would mix labellings).
    """
    if teachers is None:  # a task of its own: its teacher, and the thread count restored after
        teachers = _Teachers(use_case)
        try:
            return label_shard(use_case, day, shard, labelling, home, teachers)
        finally:
            teachers.close()
    version = teachers.version()
    current = runtime.labelling(version, use_case.labelling.label_dtype)
    if current != labelling:
        raise IntegrityError(f"the plan labels with {labelling} but the teacher directory now gives {current} "
                             "(the teacher or label_dtype changed during the run); rerun the soft-label tasks "
                             "from the plan")
    directory, name = lake.extract_dir(use_case.name, day, home), lake.shard_name(shard)
    fix = lake.extract_fix(use_case.name, day, home)
    extract = lake.read_partition(directory / name, "extract", fix)
    ids = extract.column(use_case.id_column)
    inputs = teacher_inputs(use_case, extract)
    fingerprint = extract_fingerprint(ids.to_pylist(), inputs)
    dst = lake.soft_label_path(use_case.name, labelling, day, home, shard)
    result: dict[str, Any] = {"day": day, "shard": int(shard), "labelling": labelling, "teacher_version": version,
                              "rows": len(ids), "status": "labelled"}
    if dst.exists():
        try:
            provenance = lake.read_provenance(dst, "soft-label", "")
            if (provenance.get("extract_ids") == fingerprint
                    and provenance.get("recipe") == runtime.recipe(use_case.labelling.label_dtype)):
                return {**result, "status": "reused"}
        except IntegrityError as exc:
            log.warning("relabelling ds=%s shard %d: %s", day, shard, str(exc).rstrip("; "))
            result["status"] = "healed"
    teacher, placed = teachers.get(use_case.labelling)
    files.fault_point(f"label_shard:{day}:{shard}")
    started = time.perf_counter()
    progress = runtime.Progress(f"soft labels ds={day} shard {shard}", len(ids))
    logits = teacher.logits(inputs, batch_size=placed["batch_size"], progress=progress)
    check_finite(logits, f"teacher {version} on ds={day} shard {shard}",
                 "the teacher weights are corrupt; re-run kd_teacher_bootstrap or restore the teacher directory")
    elapsed = time.perf_counter() - started
    rate = len(ids) / max(elapsed, 1e-9)
    run = {**placed, "seconds": round(elapsed, 3), "rows_per_s": round(rate, 1)}
    table = lake.soft_label_table(ids, day, logits)
    lake.write_partition(table, dst, {
        "use_case": use_case.name, "ds": day, "shard": int(shard), "teacher_version": version,
        "labelling": labelling, "label_names": teacher.label_names, "extract_path": str(directory / name),
        "extract_ids": fingerprint, "extract_provenance": lake.provenance_of(extract), "run": run,
        "logits_dtype": str(table.schema.field("logits").type.value_type),
        **({"recipe": runtime.recipe(placed["dtype"])} if runtime.recipe(placed["dtype"]) else {}),
        **({"teacher_members": teacher.member_versions()} if hasattr(teacher, "member_versions") else {}),
    })
    log.info("soft labels ds=%s shard %d: %d rows in %.1fs (%.0f rows/s on %s, %s) -> %s", day, shard, len(ids),
             elapsed, rate, placed["device"], placed["dtype"], dst)
    return {**result, **run}


def collect(plan: Mapping[str, Any], results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Summarise the shards of one plan; refuses results of another labelling, or missing shards.

    Returns ``{"teacher_version", "labelling", "labelled": [ds...], "reused": [ds...], "healed": [ds...],
    "missing_extract": [ds...], "rows_labelled", "shards", "runs"}``: a day is labelled when any of
    its shards was, reused when all were; ``runs`` lists where each labelled shard ran and how fast.
    """
    results = [dict(r) for r in results]
    other = sorted({r["labelling"] for r in results} - {plan["labelling"]})
    if other:
        raise IntegrityError(f"soft-label shards came back labelled by {other}, not {plan['labelling']}; one "
                             "training window never mixes labellings: rerun the soft-label tasks")
    done = {(r["day"], r["shard"]) for r in results}
    missing = [p for p in plan["shards"] if (p["day"], p["shard"]) not in done]
    if missing:
        raise IntegrityError(f"soft labels missing for shards {missing[:5]}; rerun the soft-label tasks")
    by_day: dict[str, set[str]] = {}
    for r in results:
        by_day.setdefault(r["day"], set()).add(r["status"])
    summary = {
        "teacher_version": plan["teacher_version"], "labelling": plan["labelling"],
        "labelled": sorted(d for d, s in by_day.items() if s != {"reused"}),
        "reused": sorted(d for d, s in by_day.items() if s == {"reused"}),
        "healed": sorted(d for d, s in by_day.items() if "healed" in s),
        "missing_extract": list(plan["missing_extract"]),
        "rows_labelled": sum(r["rows"] for r in results if r["status"] != "reused"),
        "shards": len(results),
        "runs": [{k: r[k] for k in ("day", "shard", "rows", "device", "device_name", "dtype", "runtime", "threads",
                                    "batch_size", "rows_per_s") if k in r}
                 for r in results if r["status"] != "reused"],
    }
    if summary["reused"]:
        log.info("already labelled by %s, not redone: %s", plan["labelling"], summary["reused"])
    return summary


def generate_soft_labels(use_case: UseCase, ds: str, lookback_days: int | None = None,
                         home: Path | None = None) -> dict[str, Any]:
    """Label every extract shard in the window ending at ``ds`` that lacks current soft labels, one
    after the other in this process (the DAG runs the same pieces as mapped tasks). Returns
    ``collect``'s summary."""
    plan = plan_shards(use_case, ds, lookback_days, home)
    teachers = _Teachers(use_case)
    try:
        results = [label_shard(use_case, p["day"], p["shard"], plan["labelling"], home, teachers)
                   for p in plan["shards"]]
    finally:
        teachers.close()
    return collect(plan, results)
