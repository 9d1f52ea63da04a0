"""Stage 5: the quality gate. A rejected promotion is a decision, not an error.

First the night's candidate: the KD student, unless the no-KD baseline (trained every night on the
same gold rows) beats it beyond the tolerance, i.e. the bootstrap interval of (baseline - student)
lies wholly above ``max_champion_regression``: then distillation did not pay that night, the report
says so, and the baseline is the candidate. A broken teacher can no longer pass by dragging the
student's retention down with it.

Checks on the candidate, each recorded with its value, threshold and numbers:

- ``eval_rows``: enough gold-labelled held-out rows (groups, for a use case with a grouping key) to
  judge at all: >= ``min_eval_rows``; for macro-F1 also >= ``min_rows_per_class`` x the teacher's
  classes; for a binary task >= ``min_rows_per_class`` rows of each class;
- ``teacher_retention``: candidate metric >= ``min_teacher_retention`` x teacher metric;
- ``champion_regression``: fails only when the paired bootstrap interval of (candidate - champion) on
  the same held-out rows lies wholly below -``max_champion_regression``; the interval is reported.
  It passes on the first run, when there is no champion, and when the champion's files fail
  verification (a damaged production model must not block every later night; the report says so);
- ``teacher_health``: the teacher has no class with >= ``teacher_health_min_rows`` held-out rows on
  which its recall is zero (binary: its AUC is above 0.5; ranking: its scores' Spearman correlation
  with the human grades is above 0);
- ``teacher_verdict``: the teacher was not marked weak by its teacher gate;
- ``size_budget``: candidate bytes on disk <= ``max_student_bytes``;
- ``latency_budget``: candidate CPU p50 at batch 1, robust (the fastest of 5 rounds' medians: load
  from other processes only adds time) <= ``max_student_p50_ms_b1``; the rounds' spread and the
  machine's load are in the detail;
- ``slice:<name>``: per declared slice (``GateConfig.slices``), the candidate's recall of a class or
  metric on a row slice >= the slice's ``min_retention`` x the teacher's.

``accept_weak_teacher`` (a run's Param) or a person's acceptance of the teacher version
(``cli accept-teacher``, for every night it labels) lets the two teacher checks pass, marked
``waived``, and the reason says so.
The decision is ``promote`` when every check passes, else ``hold``. ``dry_run`` evaluates the same
checks but always holds. A promotion is ``borderline`` when the champion check passed although its
interval reaches below -``max_champion_regression`` (a regression beyond the tolerance is plausible):
the nightly DAG then waits for a person's approval (``approval`` Param) before it promotes.
"""
from __future__ import annotations

from typing import Any

from ..config import GateConfig, SliceCheck

MACRO = {"macro_f1"}  # metrics averaged over classes: the minimum held-out rows grow with the classes


def _check(name: str, passed: bool, value: Any, threshold: Any, detail: str, waived: bool = False) -> dict[str, Any]:
    out = {"name": name, "passed": bool(passed or waived), "value": value, "threshold": threshold, "detail": detail}
    if waived and not passed:
        out["waived"] = True
    return out


def _r(x: Any) -> Any:
    return None if x is None else round(float(x), 4)


def _interval(c: dict[str, Any]) -> str:
    return (f"{c['delta']:+.4f}, {round(c['confidence'] * 100)}% interval [{c['low']:+.4f}, {c['high']:+.4f}] "
            f"over {c['resamples']} paired resamples of {c['units']} held-out {c['unit']}")


def choose_candidate(report: dict[str, Any], gate: GateConfig) -> tuple[str, dict[str, Any]]:
    """The night's candidate (``student`` or ``baseline``) and what the distillation check found."""
    kd = (report.get("comparisons") or {}).get("baseline_vs_student")
    if "baseline" not in report["models"] or not kd or kd.get("low") is None:
        return "student", {"paid": None, "detail": "no paired comparison of the KD student with the no-KD baseline"}
    tol = gate.max_champion_regression
    paid = not kd["low"] > tol
    detail = (f"baseline - KD student {gate.metric} {_interval(kd)}; "
              + ("distillation paid or tied: the KD student is the candidate" if paid else
                 f"the whole interval is above +{tol}: distillation did not pay tonight, the no-KD baseline is "
                 "the candidate"))
    return ("student" if paid else "baseline"), {"paid": paid, "delta": _r(kd["delta"]),
                                                 "interval": [_r(kd["low"]), _r(kd["high"])], "detail": detail}


def eval_rows_check(report: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    grouped = report.get("eval_groups") is not None
    units, unit = (report["eval_groups"], "groups") if grouped else (report["eval_rows"], "rows")
    support = report.get("support") or {}
    if report.get("task") == "binary":
        fewest = min(support.values()) if len(support) == 2 else 0
        passed = units >= gate.min_eval_rows and fewest >= gate.min_rows_per_class
        return _check("eval_rows", passed, units, gate.min_eval_rows,
                      f"held-out gold {unit} >= min_eval_rows and each class >= min_rows_per_class "
                      f"{gate.min_rows_per_class} (rows per class: {support})")
    classes = report.get("classes") or len(support)
    need = max(gate.min_eval_rows, gate.min_rows_per_class * classes if gate.metric in MACRO else 0)
    return _check("eval_rows", units >= need, units, need,
                  f"held-out gold {unit} >= max(min_eval_rows {gate.min_eval_rows}, min_rows_per_class "
                  f"{gate.min_rows_per_class} x {classes} classes)" if gate.metric in MACRO else
                  f"held-out gold {unit} >= min_eval_rows")


def _accepted(report: dict[str, Any], gate: GateConfig) -> str:
    """Why a weak teacher is accepted tonight ("" when it is not)."""
    record = report.get("teacher_accepted")
    if record:
        return f"weak teacher accepted by {record.get('by')} on {str(record.get('at'))[:10]}: {record.get('reason')}"
    return "weak teacher accepted: accept_weak_teacher" if gate.accept_weak_teacher else ""


def teacher_health_check(report: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    teacher = report["models"]["teacher"]
    accepted = _accepted(report, gate)
    waive = bool(accepted)
    if report.get("task") == "binary":
        auc = teacher.get("auc")
        if auc is None:
            return _check("teacher_health", True, None, 0.5, "teacher AUC not measurable (one class held out)")
        return _check("teacher_health", auc > 0.5, _r(auc), 0.5, "teacher AUC on the held-out rows > 0.5"
                      + (f" ({accepted})" if waive and auc <= 0.5 else ""), waive)
    if report.get("task") == "ranking":
        rho = teacher.get("spearman")
        if rho is None:
            return _check("teacher_health", True, None, 0.0, "teacher's Spearman correlation with the grades not "
                                                             "measurable (no judged held-out pairs, or constant scores)")
        return _check("teacher_health", rho > 0, _r(rho), 0.0, "teacher scores rise with the human grade on the "
                      "held-out pairs (Spearman > 0)" + (f" ({accepted})" if waive and rho <= 0 else ""), waive)
    recall, support = teacher.get("per_class_recall") or {}, report.get("support") or {}
    zero = {c: support.get(c, 0) for c, r in recall.items() if r == 0}
    dead = sorted(c for c, n in zero.items() if n >= gate.teacher_health_min_rows)
    detail = (f"teacher has zero recall on {len(dead)} of {len(recall)} held-out classes with >= "
              f"{gate.teacher_health_min_rows} rows" + (f": {', '.join(f'{c} ({zero[c]} rows)' for c in dead)}"
                                                        if dead else ""))
    small = sorted(set(zero) - set(dead))
    if small:
        detail += f"; also zero on classes with fewer rows: {', '.join(f'{c} ({zero[c]})' for c in small)}"
    if dead and waive:
        detail += f" ({accepted})"
    return _check("teacher_health", not dead, len(dead), 0, detail, waive)


def teacher_verdict_check(report: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    verdict = report.get("teacher_verdict")
    if verdict is None:
        return _check("teacher_verdict", True, None, "not weak",
                      "the teacher carries no teacher-gate verdict (published without one)")
    weak = bool(verdict.get("weak"))
    detail = verdict.get("reason") or ("marked weak by its teacher gate" if weak else "beat its baselines")
    accepted = _accepted(report, gate)
    if weak and accepted:
        detail += f" ({accepted})"
    return _check("teacher_verdict", not weak, "weak" if weak else "strong", "not weak", detail, bool(accepted))


def slice_check(sl: SliceCheck, report: dict[str, Any], candidate: str) -> dict[str, Any]:
    models, name = report["models"], f"slice:{sl.name}"
    if sl.label:
        rows = (report.get("support") or {}).get(sl.label, 0)
        figure = {n: (m.get("per_class_recall") or {}).get(sl.label) for n, m in models.items()}
        what = f"recall of class {sl.label!r}"
    else:
        by_model = (report.get("slices") or {}).get(sl.name, {})
        rows = (by_model.get("teacher") or {}).get("rows", 0)
        metric = report.get("metric", "macro_f1")
        figure = {n: m.get(metric) for n, m in by_model.items()}
        bounds = " and ".join(f"{sl.column} {op} {v}" for op, v in ((">=", sl.min_value), ("<=", sl.max_value))
                              if v is not None)
        what = f"{metric} on rows with {bounds}"
    cand, teacher = figure.get(candidate), figure.get("teacher")
    numbers = ", ".join(f"{n} {v:.4f}" for n, v in figure.items() if v is not None)
    if rows < sl.min_rows or cand is None or teacher is None:
        return _check(name, True, _r(cand), None, f"{what}: {rows} held-out rows < min_rows {sl.min_rows} or not "
                                                  f"measurable; reported, not judged ({numbers or 'no figures'})")
    need = sl.min_retention * teacher
    return _check(name, cand >= need, _r(cand), _r(need),
                  f"{candidate} {what} >= {sl.min_retention} x teacher's, over {rows} held-out rows ({numbers})")


def decide(report: dict[str, Any], gate: GateConfig, dry_run: bool = False) -> dict[str, Any]:
    models = report["models"]
    candidate, distillation = choose_candidate(report, gate)
    cand, teacher = models[candidate], models["teacher"]
    checks = [eval_rows_check(report, gate)]
    enough = checks[0]["passed"]
    metric = gate.metric
    c_score, t_score = cand.get(metric), teacher.get(metric)
    if enough and c_score is not None and t_score:
        need = gate.min_teacher_retention * t_score
        checks.append(_check("teacher_retention", c_score >= need, _r(c_score), _r(need),
                             f"{candidate} {metric} >= {gate.min_teacher_retention} x teacher {metric} {t_score:.4f}"))
    else:
        checks.append(_check("teacher_retention", False, _r(c_score), None, "no quality measurement"))
    checks.append(_champion_check(report, gate, candidate, enough))
    checks += [teacher_health_check(report, gate), teacher_verdict_check(report, gate)]
    checks.append(_check("size_budget", cand["bytes"] <= gate.max_student_bytes, cand["bytes"],
                         gate.max_student_bytes, f"{candidate} bytes on disk <= max_student_bytes"))
    p50 = cand.get("p50_ms_b1_robust", cand.get("p50_ms_b1"))
    spread = cand.get("p50_ms_b1_spread")
    load = (f"; all calls' p50 {cand['p50_ms_b1']:.4f} ms, rounds' medians {spread[0]:.4f}..{spread[1]:.4f} ms, "
            f"load {cand.get('load_1m')} on {cand.get('cpus')} CPUs" if spread else "")
    checks.append(_check("latency_budget", p50 is not None and p50 <= gate.max_student_p50_ms_b1, _r(p50),
                         gate.max_student_p50_ms_b1,
                         f"{candidate} CPU p50 latency at batch 1 (ms, fastest round's median) <= "
                         f"max_student_p50_ms_b1" + load))
    checks += [slice_check(sl, report, candidate) for sl in gate.slices]
    failed = [c["name"] for c in checks if not c["passed"]]
    waived = [c["name"] for c in checks if c.get("waived")]
    if failed:
        decision, reason = "hold", f"failed checks: {', '.join(failed)}"
    elif dry_run:
        decision, reason = "hold", "dry_run: every check passed, promotion skipped on request"
    else:
        decision, reason = "promote", "every check passed"
    if waived:
        by = "a person's acceptance of the teacher" if report.get("teacher_accepted") else "accept_weak_teacher"
        reason += f" (waived by {by}: {', '.join(waived)})"
    if candidate == "baseline":
        reason += "; distillation did not pay tonight: the candidate is the no-KD baseline"
    borderline = decision == "promote" and any(c.get("borderline") for c in checks)
    if borderline:
        reason += "; borderline: the interval of (candidate - champion) crosses the regression tolerance"
    return {"decision": decision, "reason": reason, "dry_run": dry_run, "candidate": candidate,
            "distillation": distillation, "borderline": borderline, "checks": checks}


def _champion_check(report: dict[str, Any], gate: GateConfig, candidate: str, enough: bool) -> dict[str, Any]:
    models, metric, tol = report["models"], gate.metric, gate.max_champion_regression
    champ = models.get("champion")
    if champ is None:
        return _check("champion_regression", True, None, None, "first run: no champion to compare against")
    if champ.get("error"):
        return _check("champion_regression", True, None, None,
                      f"champion {report.get('champion_version')} is damaged and was not compared ({champ['error']})")
    ci = (report.get("comparisons") or {}).get(f"{candidate}_vs_champion")
    if enough and ci and ci.get("high") is not None:
        check = _check("champion_regression", ci["high"] >= -tol, _r(ci["delta"]), -tol,
                       f"{candidate} - champion {report.get('champion_version')} {metric} {_interval(ci)}; fails only "
                       f"when the whole interval is below -{tol}")
        if check["passed"] and ci["low"] < -tol:  # passes, but a regression beyond the tolerance is plausible
            check["borderline"] = True
            check["detail"] += f" (borderline: the interval crosses -{tol})"
        return check
    c_score = models[candidate].get(metric)
    if enough and c_score is not None and champ.get(metric) is not None:  # a report without intervals
        need = champ[metric] - tol
        return _check("champion_regression", c_score >= need, _r(c_score), _r(need),
                      f"{candidate} {metric} >= champion {report.get('champion_version')} {metric} "
                      f"{champ[metric]:.4f} - {tol} (no bootstrap interval recorded)")
    return _check("champion_regression", False, _r(c_score), None, "no quality measurement")

