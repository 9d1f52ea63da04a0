"""Gate decisions, table-driven: every check with its numbers; holding is a decision, not an error."""
import pytest

from kd_tasks.config import GateConfig
from kd_tasks.stages.gate import decide

GATE = GateConfig(min_teacher_retention=0.9, max_champion_regression=0.01, max_student_bytes=1000,
                  max_student_p50_ms_b1=1.0, min_eval_rows=30)


def report(student_f1=0.9, teacher_f1=0.95, champion_f1=None, eval_rows=100, size=500, p50=0.2):
    models = {"teacher": {"macro_f1": teacher_f1},
              "student": {"macro_f1": student_f1, "bytes": size, "p50_ms_b1": p50}}
    if champion_f1 is not None:
        models["champion"] = {"macro_f1": champion_f1}
    return {"eval_rows": eval_rows, "champion_version": "abc" if champion_f1 is not None else None,
            "models": models}


CASES = [
    # id, report kwargs, dry_run, decision, failed checks
    ("first run, all good", {}, False, "promote", []),
    ("retention too low", {"student_f1": 0.80}, False, "hold", ["teacher_retention"]),
    ("retention exactly at threshold", {"student_f1": 0.855}, False, "promote", []),
    ("regresses beyond epsilon", {"student_f1": 0.90, "champion_f1": 0.92}, False, "hold", ["champion_regression"]),
    ("regresses within epsilon", {"student_f1": 0.90, "champion_f1": 0.905}, False, "promote", []),
    ("beats champion", {"student_f1": 0.93, "champion_f1": 0.90}, False, "promote", []),
    ("too big", {"size": 5000}, False, "hold", ["size_budget"]),
    ("too slow", {"p50": 3.0}, False, "hold", ["latency_budget"]),
    ("too few eval rows", {"eval_rows": 10}, False, "hold", ["eval_rows", "teacher_retention"]),
    ("dry run holds even when all pass", {}, True, "hold", []),
    ("two failures both reported", {"student_f1": 0.5, "p50": 9.0}, False, "hold",
     ["teacher_retention", "latency_budget"]),
]


@pytest.mark.parametrize("kwargs,dry_run,decision,failed", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gate_table(kwargs, dry_run, decision, failed):
    out = decide(report(**kwargs), GATE, dry_run=dry_run)
    assert out["decision"] == decision
    assert [c["name"] for c in out["checks"] if not c["passed"]] == failed
    for name in failed:
        assert name in out["reason"]
    assert {c["name"] for c in out["checks"]} == {"eval_rows", "teacher_retention", "champion_regression",
                                                  "teacher_health", "teacher_verdict", "size_budget",
                                                  "latency_budget"}


def test_checks_carry_their_numbers():
    out = decide(report(student_f1=0.8, teacher_f1=0.95), GATE)
    retention = next(c for c in out["checks"] if c["name"] == "teacher_retention")
    assert retention["value"] == 0.8 and retention["threshold"] == pytest.approx(0.855)
    first = next(c for c in out["checks"] if c["name"] == "champion_regression")
    assert first["passed"] and "first run" in first["detail"]
