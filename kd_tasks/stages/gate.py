"""Stage 5: the quality gate. A rejected promotion is a decision, not an error.

Checks, each recorded with its value and threshold:

- ``eval_rows``: enough gold-labelled held-out rows to judge at all;
- ``teacher_retention``: student metric >= min_teacher_retention x teacher metric;
- ``champion_regression``: student metric >= champion metric - max_champion_regression
  (passes by definition on the first run, when there is no champion, and when the champion's files
  fail verification: a damaged production model must not block every later night; the report says so);
- ``size_budget``: student bytes on disk <= max_student_bytes;
- ``latency_budget``: student CPU p50 at batch 1 <= max_student_p50_ms_b1.

The metric is ``gate.metric`` (macro-F1 for a multiclass use case, ROC-AUC for a binary one).
The decision is ``promote`` when every check passes, else ``hold``. ``dry_run`` evaluates the same
checks but always holds.
"""
from __future__ import annotations

from typing import Any

from ..config import GateConfig


def _check(name: str, passed: bool, value: Any, threshold: Any, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail}


def decide(report: dict[str, Any], gate: GateConfig, dry_run: bool = False) -> dict[str, Any]:
    models = report["models"]
    student, teacher = models["student"], models["teacher"]
    checks = [_check("eval_rows", report["eval_rows"] >= gate.min_eval_rows, report["eval_rows"],
                     gate.min_eval_rows, "gold-labelled held-out rows >= min_eval_rows")]
    enough = checks[0]["passed"]
    metric = gate.metric
    s_score, t_score = student.get(metric), teacher.get(metric)
    if enough and s_score is not None and t_score:
        need = gate.min_teacher_retention * t_score
        checks.append(_check("teacher_retention", s_score >= need, round(s_score, 4), round(need, 4),
                             f"student {metric} >= {gate.min_teacher_retention} x teacher {metric} {t_score:.4f}"))
    else:
        checks.append(_check("teacher_retention", False, s_score, None, "no quality measurement"))
    champ = models.get("champion")
    if champ is None:
        checks.append(_check("champion_regression", True, None, None, "first run: no champion to compare against"))
    elif champ.get("error"):
        checks.append(_check("champion_regression", True, None, None,
                             f"champion {report.get('champion_version')} is damaged and was not compared "
                             f"({champ['error']})"))
    elif enough and s_score is not None and champ.get(metric) is not None:
        need = champ[metric] - gate.max_champion_regression
        checks.append(_check("champion_regression", s_score >= need, round(s_score, 4), round(need, 4),
                             f"student {metric} >= champion {report.get('champion_version')} {metric} "
                             f"{champ[metric]:.4f} - {gate.max_champion_regression}"))
    else:
        checks.append(_check("champion_regression", False, s_score, None, "no quality measurement"))
    checks.append(_check("size_budget", student["bytes"] <= gate.max_student_bytes, student["bytes"],
                         gate.max_student_bytes, "student bytes on disk <= max_student_bytes"))
    p50 = student.get("p50_ms_b1")
    checks.append(_check("latency_budget", p50 is not None and p50 <= gate.max_student_p50_ms_b1,
                         None if p50 is None else round(p50, 4), gate.max_student_p50_ms_b1,
                         "student CPU p50 latency at batch 1 (ms) <= max_student_p50_ms_b1"))
    failed = [c["name"] for c in checks if not c["passed"]]
    if failed:
        decision, reason = "hold", f"failed checks: {', '.join(failed)}"
    elif dry_run:
        decision, reason = "hold", "dry_run: every check passed, promotion skipped on request"
    else:
        decision, reason = "promote", "every check passed"
    return {"decision": decision, "reason": reason, "dry_run": dry_run, "checks": checks}
