"""The nightly chain as plain functions of (use case, ds, params): what each DAG task calls.

Every function takes and returns small JSON-able values (names, dates, paths, metrics), so the DAG
passes paths through XCom, never data.
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from . import files, gate, lake, names, registry, warehouse
from .config import TeacherTrainConfig, UseCase, from_dict, get_use_case, kd_home
from .data import is_holdout
from .distill import distill_student
from .evaluate import evaluate_student
from .extract import extract_partition, sql_params
from .families import train_teacher
from .report import format_report
from .soft_labels import generate_soft_labels
from .teacher import TeacherError, load_teacher, recover_teacher

log = logging.getLogger(__name__)

# Params a person may change by hand, and where each lands in the use case's config.
DISTILL_PARAMS = ("temperature", "alpha", "epochs", "learning_rate", "seed", "student_size", "lookback_days")


def resolve_use_case(name: str, params: Mapping[str, Any] | None = None,
                     sql_params: Mapping[str, Any] | None = None) -> UseCase:
    """The declared use case with the run's Params applied (validated by the config classes).

    ``params`` are a nightly run's Params (extract params among them, by name); ``sql_params`` are
    extract params given apart (the bootstrap DAG), where an unknown name is an error."""
    params = dict(params or {})
    distill = {k: params[k] for k in DISTILL_PARAMS if params.get(k) is not None}
    top: dict[str, Any] = {k: params[k] for k in ("extract_lookback_days",) if params.get(k) is not None}
    declared = get_use_case(name)
    sql = {k: params[k] for k in declared.extract_params if params.get(k) is not None}
    sql.update(sql_params or {})
    if sql:
        top["extract_params"] = sql
    return declared.with_overrides(distill=distill, **top)


def run_dir_for(use_case: UseCase, run_id: str, home: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).lstrip(".") or "_"
    path = names.child((home or kd_home()) / "runs" / names.use_case_name(use_case.name), safe)
    path.mkdir(parents=True, exist_ok=True)
    return path


def bootstrap(use_case: UseCase, ds: str, warehouse_uri: str, base_model: str | None = None,
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
    ids = table.column(use_case.id_column).to_pylist()
    keep = [i for i, (rid, y) in enumerate(zip(ids, labels))
            if y is not None and not is_holdout(rid, use_case.holdout_percent)]
    if not keep:
        raise ValueError(
            f"no gold-labelled rows in {start_ds}..{ds} in the warehouse (sql/{use_case.teacher_sql}); "
            "load labelled data for those dates first (python -m kd_tasks.cli load-catalogue / load-events ...)"
        )
    log.info("teacher data: %d gold-labelled training rows from %s..%s (%d held out or unlabelled)",
             len(keep), start_ds, ds, len(ids) - len(keep))
    manifest = train_teacher(
        use_case, table.take(keep), target, base_model, train_config,
        {"as_of": ds, "window": [start_ds, ds], "sql_file": use_case.teacher_sql,
         "sql_hash": warehouse.sql_hash(use_case.teacher_sql), "sql_params": dict(use_case.extract_params),
         "holdout_percent": use_case.holdout_percent},
    )
    return {"version": manifest["version"], "path": str(target), "trained": True}


def extract(use_case: UseCase, ds: str, warehouse_uri: str) -> dict[str, Any]:
    return extract_partition(use_case, ds, warehouse_uri)


def soft_labels(use_case: UseCase, ds: str) -> dict[str, Any]:
    return generate_soft_labels(use_case, ds)


def distill(use_case: UseCase, ds: str, labelled: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Train the students; ``labelled`` is the soft-label stage's result (recorded in the run report)."""
    run_dir = run_dir_for(use_case, run_id)
    files.write_json(run_dir / "soft_labels.json", dict(labelled))
    result = distill_student(use_case, ds, labelled["teacher_version"], run_dir)
    return {**result, "run_dir": str(run_dir), "teacher_version": labelled["teacher_version"]}


def choose_action(decision: str, reason: str, *, is_backfill: bool = False, allow_backfill_promotion: bool = False,
                  force_promote: bool = False, force_reason: str = "") -> tuple[str, str]:
    """What the run does with its student: ``promote``, ``candidate`` (register, alias untouched) or ``hold``.

    - ``force_promote`` promotes whatever the gate said; it needs a ``force_reason``, which is logged.
    - A backfill run never moves the alias unless ``allow_backfill_promotion``: it records a candidate
      with its gate decision instead, so reprocessing history cannot replace today's model.
    - Otherwise the gate decides.
    """
    if force_promote:
        if not force_reason.strip():
            raise ValueError("force_promote=true needs a force_reason (it is written to the promotion log)")
        return "promote", f"forced: {force_reason.strip()} (gate said {decision}: {reason})"
    if is_backfill and not allow_backfill_promotion:
        return "candidate", f"backfill run: recorded as a candidate (gate said {decision}: {reason})"
    return ("promote", reason) if decision == "promote" else ("hold", reason)


def evaluate(use_case: UseCase, ds: str, distilled: Mapping[str, Any], dry_run: bool,
             **action_args: Any) -> dict[str, Any]:
    """Evaluate, apply the gate and choose the action; writes evaluation.json and gate.json.

    ``action_args`` go to ``choose_action`` (is_backfill, allow_backfill_promotion, force_promote, force_reason).
    """
    run_dir = Path(distilled["run_dir"])
    for name in ("student", "baseline"):
        registry.check_model_dir(distilled[name]["dir"], distilled[name]["version"])
    report = evaluate_student(use_case, ds, distilled["teacher_version"], run_dir,
                              champion_version=distilled.get("champion_version"))
    decision = gate.decide(report, use_case.gate, dry_run=dry_run)
    for c in decision["checks"]:
        log.info("gate %-20s %s value=%s threshold=%s (%s)", c["name"], "PASS" if c["passed"] else "FAIL",
                 c["value"], c["threshold"], c["detail"])
    action, why = ("hold", decision["reason"]) if dry_run else choose_action(
        decision["decision"], decision["reason"], **action_args)
    decision.update({"action": action, "action_reason": why})
    log.info("gate decision: %s (%s); action: %s (%s)", decision["decision"], decision["reason"], action, why)
    files.write_json(run_dir / "gate.json", decision)
    return {"run_dir": str(run_dir), "decision": decision["decision"], "reason": decision["reason"],
            "action": action, "action_reason": why}


def _manifest(use_case: UseCase, ds: str, distilled: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    run_dir = Path(distilled["run_dir"])
    distill_cfg = _run_file(run_dir, "distill.json", "distill_student")
    evaluation = _run_file(run_dir, "evaluation.json", "evaluate_student")
    return {
        "use_case": use_case.name, "ds": ds, "run_id": run_id, "version": distilled["student"]["version"],
        "data_window": distill_cfg["window"], "teacher_version": distill_cfg["teacher_version"],
        "sql_file": use_case.extract_sql, "sql_hash": warehouse.sql_hash(use_case.extract_sql),
        "config": {"distill": asdict(use_case.distill), "gate": asdict(use_case.gate)},
        "metrics": evaluation["models"]["student"], "warm_started_from": distill_cfg["warm_started_from"],
        "gate": _run_file(run_dir, "gate.json", "evaluate_student"),
    }


def promote(use_case: UseCase, ds: str, distilled: Mapping[str, Any], run_id: str,
            reason: str = "gate passed") -> dict[str, Any]:
    """Register the student and move the production alias (compare-and-swap on the champion).

    A promotion that lost a race (another run moved the alias since this one read it) is reported
    as ``lost_race`` in the outcome and the promotion log; the version stays in the registry.
    """
    run_dir = Path(distilled["run_dir"])
    manifest = _manifest(use_case, ds, distilled, run_id)
    try:
        result = registry.promote(use_case.name, distilled["student"]["dir"], distilled["student"]["version"],
                                  manifest, expected_champion=distilled.get("champion_version"), reason=reason)
    except registry.PromotionConflict as exc:
        log.warning("%s", exc)
        return _record_outcome(run_dir, {"outcome": "lost_race", "version": manifest["version"], "reason": str(exc),
                                         "champion": registry.alias_version(use_case.name)})
    if result["already"]:
        log.info("version %s is already in production (a retry, or a rerun with the same inputs): nothing moved",
                 result["version"])
    else:
        log.info("promoted %s to production (previous: %s) at %s", result["version"], result["previous"],
                 result["path"])
    return _record_outcome(run_dir, {"outcome": "promoted", "reason": reason, **result})


def record_candidate(use_case: UseCase, ds: str, distilled: Mapping[str, Any], run_id: str,
                     reason: str) -> dict[str, Any]:
    """Register the student as a candidate with its gate decision; production does not move."""
    run_dir = Path(distilled["run_dir"])
    result = registry.record_candidate(use_case.name, distilled["student"]["dir"], distilled["student"]["version"],
                                       _manifest(use_case, ds, distilled, run_id), reason=reason)
    log.info("candidate %s recorded (%s); production stays %s", result["version"], reason, result["champion"])
    return _record_outcome(run_dir, {"outcome": "candidate", "reason": reason, **result})


def hold(use_case: UseCase, evaluated: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the champion. Holding is a normal outcome, not a failure."""
    champ = registry.alias_version(use_case.name)
    log.info("holding: %s; production stays %s", evaluated["reason"], champ or "(none)")
    return _record_outcome(Path(evaluated["run_dir"]), {"outcome": "held", "reason": evaluated["reason"],
                                                        "champion": champ})


def _record_outcome(run_dir: Path, outcome: dict[str, Any]) -> dict[str, Any]:
    files.write_json(run_dir / "outcome.json", outcome)
    return outcome


def _run_file(run_dir: Path, name: str, task: str) -> Any:
    """A JSON file of the run directory, written by ``task``; damaged or missing: clear that task."""
    return files.read_json(run_dir / name, "run file", f"clear the {task} task of this run so it writes it again")


def write_report(use_case: UseCase, ds: str, run_id: str, run_dir: str) -> str:
    """Combine evaluation, gate and outcome into ``report.json``; log the table; return the path."""
    run_dir = Path(run_dir)
    report = {
        "use_case": use_case.name, "ds": ds, "run_id": run_id,
        "soft_labels": _run_file(run_dir, "soft_labels.json", "distill_student"),
        "evaluation": _run_file(run_dir, "evaluation.json", "evaluate_student"),
        "gate": _run_file(run_dir, "gate.json", "evaluate_student"),
        "outcome": _run_file(run_dir, "outcome.json", "promote_student / record_candidate / hold_student"),
    }
    path = files.write_json(run_dir / "report.json", report)
    log.info("run report %s\n%s", path, format_report(report))
    return str(path)
