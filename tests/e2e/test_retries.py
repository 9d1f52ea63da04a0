"""Every task of the nightly DAG, run twice in a row (an Airflow retry, a cleared task), gives one
outcome: the same result, the same files, no second promotion or log entry."""
import json
from pathlib import Path

from conftest import ACCEPT_WEAK, DS
from kd_tasks.storage import lake, registry
from kd_tasks import nightly
from kd_tasks.home import default_warehouse_uri


def twice(fn, *args, **kwargs):
    first = fn(*args, **kwargs)
    second = fn(*args, **kwargs)
    return first, second


def _without_timings(evaluated_or_report):
    return json.loads(json.dumps(evaluated_or_report))


def test_every_nightly_task_run_twice_gives_one_outcome(kd_home, tiny_teacher):
    uc = nightly.resolve_use_case("product_category", {"extract_lookback_days": 3, **ACCEPT_WEAK})
    a, b = twice(nightly.extract, uc, DS, default_warehouse_uri())
    assert a == b
    assert lake.read_extract("product_category", DS).num_rows == a["rows"]

    a, b = twice(nightly.soft_labels, uc, DS, "run")
    assert a["teacher_version"] == b["teacher_version"] and b["reused"] == a["labelled"] + a["reused"]

    a, b = twice(nightly.distill, uc, DS, a["run_dir"])
    assert a == b, "a retried distill trains the same student (same version)"
    distilled = b

    a, b = twice(nightly.evaluate, uc, DS, distilled["run_dir"], False)
    assert a == b and a["action"] == "promote"

    a, b = twice(nightly.promote, uc, DS, distilled["run_dir"], "run", reason=a["action_reason"])
    assert a["outcome"] == b["outcome"] == "promoted" and a["version"] == b["version"]
    assert b["already"] is True
    assert [e["outcome"] for e in registry.promotion_log("product_category")] == ["promoted"]

    a, b = twice(nightly.write_report, uc, DS, "run", distilled["run_dir"])
    assert a == b and json.loads(Path(a).read_text())["outcome"]["outcome"] == "promoted"


def test_record_candidate_and_hold_run_twice_log_once(kd_home, tiny_teacher):
    from conftest import run_chain

    run_chain(run_id="first")
    uc = nightly.resolve_use_case("product_category", {"extract_lookback_days": 3, "seed": 1, **ACCEPT_WEAK})
    distilled = nightly.distill(uc, DS, nightly.soft_labels(uc, DS, "backfill__x")["run_dir"])
    evaluated = nightly.evaluate(uc, DS, distilled["run_dir"], False, is_backfill=True)
    assert evaluated["action"] == "candidate"
    a, b = twice(nightly.record_candidate, uc, DS, distilled["run_dir"], "backfill__x", evaluated["action_reason"])
    assert a == b
    assert [e["outcome"] for e in registry.promotion_log("product_category")] == ["promoted", "candidate"]
    a, b = twice(nightly.hold, uc, evaluated["run_dir"], evaluated["reason"])
    assert a == b and a["outcome"] == "held"
