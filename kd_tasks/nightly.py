"""The nightly chain as plain functions of (use case, ds, params): what each DAG task calls.

Each task writes its facts into the run's directory (``storage.runs``) and returns small JSON-able
values: the run directory, and from ``evaluate`` the branch decision. The next task reads what it
needs from the directory, so XCom never carries data and a cleared task finds its inputs.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Mapping

from . import warehouse
from .config import DistillConfig, GateConfig, LabelConfig, UseCase, param_fields
from .names import InputError
from .storage import registry
from .storage.runs import RunDir
from .use_cases import get_use_case

log = logging.getLogger(__name__)


def resolve_use_case(name: str, params: Mapping[str, Any] | None = None,
                     sql_params: Mapping[str, Any] | None = None) -> UseCase:
    """The declared use case with the run's Params applied (validated by the config classes).

    ``params`` are a nightly run's Params (extract params among them, by name); ``sql_params`` are
    extract params given apart (the bootstrap DAG), where an unknown name is an error."""
    params = dict(params or {})
    distill = {k: params[k] for k in param_fields(DistillConfig) if params.get(k) is not None}
    labelling = {k: params[k] for k in param_fields(LabelConfig) if params.get(k) is not None}
    gate = {k: params[k] for k in param_fields(GateConfig) if params.get(k) is not None}
    top: dict[str, Any] = {k: params[k] for k in param_fields(UseCase) if params.get(k) is not None}
    declared = get_use_case(name)
    sql = {k: params[k] for k in declared.extract_params if params.get(k) is not None}
    sql.update(sql_params or {})
    if sql:
        top["extract_params"] = sql
    return declared.with_overrides(distill=distill, labelling=labelling, gate=gate, **top)


def bootstrap(use_case: UseCase, ds: str, warehouse_uri: str, base_model: str | None = None,
              force: bool = False, train: Mapping[str, Any] | None = None, publish_weak: bool = False) -> dict[str, Any]:
    from .stages.bootstrap import bootstrap_teacher

    return bootstrap_teacher(use_case, ds, warehouse_uri, base_model, force, train, publish_weak)


def extract(use_case: UseCase, ds: str, warehouse_uri: str) -> dict[str, Any]:
    from .stages.extract import extract_partition

    return extract_partition(use_case, ds, warehouse_uri)


def soft_labels(use_case: UseCase, ds: str, run_id: str) -> dict[str, Any]:
    """Label the window in this process, shard after shard; record what was labelled in the run
    directory. Returns it with ``run_dir``. (The DAG runs ``plan_soft_labels``, ``label_shard`` per
    shard as mapped tasks, then ``collect_soft_labels``.)"""
    from .stages.soft_labels import generate_soft_labels

    run = RunDir.create(use_case.name, run_id)
    result = generate_soft_labels(use_case, ds)
    run.write("soft_labels", result)
    return {**result, "run_dir": str(run)}


def plan_soft_labels(use_case: UseCase, ds: str, run_id: str) -> list[dict[str, Any]]:
    """Plan the night's labelling (recorded in the run directory): one piece per (day, shard) of the
    window, each naming the labelling and the run directory, for the mapped soft-label tasks."""
    from .stages.soft_labels import plan_shards

    run = RunDir.create(use_case.name, run_id)
    plan = plan_shards(use_case, ds)
    run.write("soft_label_plan", plan)
    return [{**piece, "labelling": plan["labelling"], "run_dir": str(run)} for piece in plan["shards"]]


def label_shard(use_case: UseCase, piece: Mapping[str, Any]) -> dict[str, Any]:
    """Label one planned piece (one mapped task)."""
    from .stages.soft_labels import label_shard as label

    return label(use_case, piece["day"], piece["shard"], piece["labelling"])


def collect_soft_labels(run_dir: str, results: Any) -> dict[str, Any]:
    """Check the shards' results against the run's plan; record the soft-label fact in the run directory."""
    from .stages.soft_labels import collect

    run = RunDir(run_dir)
    result = collect(run.read("soft_label_plan"), results)
    run.write("soft_labels", result)
    return {**result, "run_dir": str(run)}


def distill(use_case: UseCase, ds: str, run_dir: str) -> dict[str, Any]:
    """Train the students on the teacher version the soft-label task recorded. Returns the run
    directory and a summary for the task's XCom (the next task reads the run directory)."""
    from .stages.distill import distill_student

    run = RunDir(run_dir)
    labelled = run.read("soft_labels")
    fact = distill_student(use_case, ds, labelled["teacher_version"], run,
                           labelling=labelled.get("labelling", labelled["teacher_version"]))
    return {"run_dir": str(run), "teacher_version": fact["teacher_version"],
            "student_version": fact["models"]["student"]["version"], "warm_started_from": fact["warm_started_from"],
            "champion_version": fact["champion_version"], "train_rows": fact["train_rows"],
            "gold_rows": fact["gold_rows"], "window": fact["window"]}


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


APPROVAL_MODES = ("when_needed", "off")


def approval_needed(action: str, decision: Mapping[str, Any], *, approval: str = "when_needed",
                    force_promote: bool = False, force_reason: str = "") -> str | None:
    """Why a person must approve the promotion before it happens, or None.

    With ``approval`` ``when_needed`` (the default) a promotion waits for a person when it is forced
    (the gate's word is overruled) or when the gate marks it ``borderline`` (the interval of candidate
    - champion crosses the regression tolerance); ``off`` never waits (no one to ask: ``airflow dags
    test``, a demo). Holds and candidates never wait: production does not move.
    """
    if approval not in APPROVAL_MODES:
        raise InputError(f"approval must be one of {list(APPROVAL_MODES)}, got {approval!r}")
    if approval == "off" or action != "promote":
        return None
    if force_promote:
        return f"a forced promotion ({force_reason.strip()}); the gate said {decision['decision']}: {decision['reason']}"
    if decision.get("borderline"):
        check = next(c for c in decision["checks"] if c.get("borderline"))
        return f"a borderline promotion: {check['detail']}"
    return None


def evaluate(use_case: UseCase, ds: str, run_dir: str, dry_run: bool, approval: str = "when_needed",
             **action_args: Any) -> dict[str, Any]:
    """Evaluate, apply the gate and choose the action; writes the run's evaluation and gate facts.
    Returns the run directory, the branch decision (``action``) and, when the promotion waits for a
    person, why (``approval``; ``approval_needed``).

    ``action_args`` go to ``choose_action`` (is_backfill, allow_backfill_promotion, force_promote, force_reason).
    """
    from .stages import gate
    from .stages.evaluate import evaluate_student

    run = RunDir(run_dir)
    distilled = run.read("distill")
    for name, model in distilled["models"].items():
        registry.check_model_dir(run.model_dir(name), model["version"])
    report = evaluate_student(use_case, ds, distilled["teacher_version"], run,
                              champion_version=distilled.get("champion_version"),
                              labelling=distilled.get("labelling"))
    decision = gate.decide(report, use_case.gate, dry_run=dry_run)
    for c in decision["checks"]:
        log.info("gate %-20s %s value=%s threshold=%s (%s)", c["name"], "PASS" if c["passed"] else "FAIL",
                 c["value"], c["threshold"], c["detail"])
    action, why = ("hold", decision["reason"]) if dry_run else choose_action(
        decision["decision"], decision["reason"], **action_args)
    ask = approval_needed(action, decision, approval=approval, force_promote=action_args.get("force_promote", False),
                          force_reason=action_args.get("force_reason", ""))
    decision.update({"action": action, "action_reason": why, "approval": ask})
    log.info("gate decision: %s (%s); action: %s (%s)", decision["decision"], decision["reason"], action, why)
    if ask:
        log.info("the promotion waits for a person's approval: %s", ask)
    run.write("gate", decision)
    return {"run_dir": str(run), "decision": decision["decision"], "reason": decision["reason"],
            "action": action, "action_reason": why, "approval": ask}


def candidate(run: RunDir) -> str:
    """The model the night registers: the KD student, or the no-KD baseline when the gate found that
    distillation did not pay (``gate.choose_candidate``)."""
    return run.read("gate").get("candidate", "student")


def _manifest(use_case: UseCase, ds: str, run: RunDir, run_id: str, distilled: Mapping[str, Any]) -> dict[str, Any]:
    """The registry manifest of the run's candidate (``distilled``: the run's distill fact)."""
    evaluation = run.read("evaluation")
    name = candidate(run)
    return {
        "use_case": use_case.name, "ds": ds, "run_id": run_id, "version": distilled["models"][name]["version"],
        "model": name, "distilled": name == "student",
        "data_window": distilled["window"], "teacher_version": distilled["teacher_version"],
        "sql_file": use_case.extract_sql, "sql_hash": warehouse.sql_hash(use_case.extract_sql),
        "config": {"distill": asdict(use_case.distill), "gate": asdict(use_case.gate)},
        "metrics": evaluation["models"][name],
        "warm_started_from": distilled["warm_started_from"] if name == "student" else None,
        "gate": run.read("gate"),
    }


def promote(use_case: UseCase, ds: str, run_dir: str, run_id: str, reason: str = "gate passed",
            approval: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Register the student and move the production alias (compare-and-swap on the champion).

    A promotion that lost a race (another run moved the alias since this one read it) is reported
    as ``lost_race`` in the outcome and the promotion log; the version stays in the registry.
    ``approval``: the person's answer when the promotion waited for one (written to the log).
    """
    run = RunDir(run_dir)
    distilled = run.read("distill")
    manifest = _manifest(use_case, ds, run, run_id, distilled)
    if approval:
        from .stages.report import approval_text

        reason = f"{reason}; approved: {approval_text(approval)}"
        manifest["approval"] = dict(approval)
    try:
        result = registry.promote(use_case.name, run.model_dir(manifest["model"]), manifest["version"], manifest,
                                  expected_champion=distilled.get("champion_version"), reason=reason)
    except registry.PromotionConflict as exc:
        log.warning("%s", exc)
        return _record_outcome(run, {"outcome": "lost_race", "version": manifest["version"], "reason": str(exc),
                                     "champion": registry.alias_version(use_case.name)})
    if result["already"]:
        log.info("version %s is already in production (a retry, or a rerun with the same inputs): nothing moved",
                 result["version"])
    else:
        log.info("promoted %s to production (previous: %s) at %s", result["version"], result["previous"],
                 result["path"])
    return _record_outcome(run, {"outcome": "promoted", "reason": reason, "teacher_version": manifest["teacher_version"],
                                 **({"approval": dict(approval)} if approval else {}), **result})


def record_candidate(use_case: UseCase, ds: str, run_dir: str, run_id: str, reason: str) -> dict[str, Any]:
    """Register the student as a candidate with its gate decision; production does not move."""
    run = RunDir(run_dir)
    manifest = _manifest(use_case, ds, run, run_id, run.read("distill"))
    result = registry.record_candidate(use_case.name, run.model_dir(manifest["model"]), manifest["version"], manifest,
                                       reason=reason)
    log.info("candidate %s recorded (%s); production stays %s", result["version"], reason, result["champion"])
    return _record_outcome(run, {"outcome": "candidate", "reason": reason, **result})


def reject(use_case: UseCase, ds: str, run_dir: str, run_id: str, approval: Mapping[str, Any]) -> dict[str, Any]:
    """A promotion a person rejected (or that no one approved in time): the candidate is registered
    and logged as ``rejected`` with who and why; production does not move."""
    from .stages.report import approval_text

    run = RunDir(run_dir)
    manifest = _manifest(use_case, ds, run, run_id, run.read("distill"))
    manifest["approval"] = dict(approval)
    reason = f"promotion not approved: {approval_text(approval)} (asked because of {run.read('gate')['approval']})"
    result = registry.record_candidate(use_case.name, run.model_dir(manifest["model"]), manifest["version"], manifest,
                                       reason=reason, outcome="rejected")
    log.info("promotion of %s rejected (%s); production stays %s", result["version"], reason, result["champion"])
    return _record_outcome(run, {"outcome": "rejected", "reason": reason, "approval": dict(approval), **result})


def hold(use_case: UseCase, run_dir: str, reason: str) -> dict[str, Any]:
    """Keep the champion. Holding is a normal outcome, not a failure."""
    champ = registry.alias_version(use_case.name)
    log.info("holding: %s; production stays %s", reason, champ or "(none)")
    return _record_outcome(RunDir(run_dir), {"outcome": "held", "reason": reason, "champion": champ})


def _record_outcome(run: RunDir, outcome: dict[str, Any]) -> dict[str, Any]:
    run.write("outcome", outcome)
    return outcome


def write_report(use_case: UseCase, ds: str, run_id: str, run_dir: str) -> str:
    """Combine evaluation, gate and outcome into the run's report; log the table; return its path."""
    from .stages.report import format_report

    run = RunDir(run_dir)
    report = {"use_case": use_case.name, "ds": ds, "run_id": run_id,
              **{fact: run.read(fact) for fact in ("soft_labels", "evaluation", "gate", "outcome")}}
    path = run.write("report", report)
    from .stages.html_report import write_html

    page = write_html(use_case.name, report, run.path / "report.html")
    log.info("run report %s (the page with plots: %s)\n%s", path, page, format_report(report))
    return str(path)


def mirror(use_case: UseCase, report_path: str | None = None, uri: str | None = None) -> dict[str, Any]:
    """Mirror the night of ``report_path`` into MLflow (None: every night of the use case), with every
    registered version and the production alias as the registry has them (``stages.mirror``)."""
    from .stages.mirror import mirror as mirror_to_mlflow

    return mirror_to_mlflow(use_case, None if report_path is None else [report_path], uri)


def mirror_teacher(use_case: UseCase, result: dict[str, Any], uri: str | None = None) -> dict[str, Any]:
    """Log a teacher bootstrap (``bootstrap``'s result) as its own MLflow run."""
    from .stages.mirror import mirror_teacher as log_teacher

    return log_teacher(use_case, result, uri)
