"""Forced promotions, backfill candidates and lost races, through the functions the DAG tasks call."""
import json

from conftest import ACCEPT_WEAK, DS, run_chain
from kd_tasks import nightly
from kd_tasks.storage import registry
from kd_tasks.home import default_warehouse_uri


def test_forced_promotion_is_logged_with_its_reason(kd_home, tiny_teacher):
    run_chain()
    strict = {"gate": {"max_student_bytes": 1}}  # no student fits: the gate holds
    # another seed: another student (the same inputs would give the promoted one again)
    uc = nightly.resolve_use_case("product_category", {"extract_lookback_days": 3, "seed": 1, **ACCEPT_WEAK})
    uc = uc.with_overrides(gate=strict["gate"])
    extracted = nightly.extract(uc, DS, default_warehouse_uri())
    assert extracted["rows"] > 0
    distilled = nightly.distill(uc, DS, nightly.soft_labels(uc, DS, "forced")["run_dir"])
    evaluated = nightly.evaluate(uc, DS, distilled["run_dir"], False, force_promote=True, force_reason="INC-7 hotfix")
    assert evaluated["decision"] == "hold" and evaluated["action"] == "promote"
    assert evaluated["approval"].startswith("a forced promotion (INC-7 hotfix); the gate said hold")
    approved = {"chosen": "Promote", "by": "alice", "at": "2024-01-10T07:00:00+00:00", "timed_out": False}
    outcome = nightly.promote(uc, DS, distilled["run_dir"], "forced", reason=evaluated["action_reason"],
                              approval=approved)
    assert outcome["outcome"] == "promoted"
    last = registry.promotion_log("product_category")[-1]
    assert last["outcome"] == "promoted" and "INC-7 hotfix" in last["reason"] and "gate said hold" in last["reason"]
    assert last["approval"] == approved and "approved: Promote by alice at 2024-01-10T07:00" in last["reason"]
    report = json.loads(open(nightly.write_report(uc, DS, "forced", distilled["run_dir"])).read())
    from kd_tasks.stages.report import format_report

    assert "approval asked: a forced promotion (INC-7 hotfix)" in format_report(report)
    assert "; approved: Promote by alice at" in format_report(report)


def test_a_rejected_or_unanswered_promotion_keeps_production_and_is_logged(kd_home, tiny_teacher):
    run_chain()
    champion = registry.alias_version("product_category")
    for seed, answer in ((1, {"chosen": "Hold", "by": "bob", "at": "2024-01-10T07:00:00+00:00", "timed_out": False}),
                         (2, {"chosen": "Hold", "by": None, "at": "2024-01-10T19:00:00+00:00", "timed_out": True,
                              "timeout": "720 min"})):
        uc = nightly.resolve_use_case("product_category", {"extract_lookback_days": 3, "seed": seed, **ACCEPT_WEAK})
        distilled = nightly.distill(uc, DS, nightly.soft_labels(uc, DS, f"asked{seed}")["run_dir"])
        evaluated = nightly.evaluate(uc, DS, distilled["run_dir"], False, force_promote=True, force_reason="try it")
        outcome = nightly.reject(uc, DS, distilled["run_dir"], f"asked{seed}", answer)
        assert outcome["outcome"] == "rejected" and registry.alias_version("product_category") == champion
        last = registry.promotion_log("product_category")[-1]
        assert last["outcome"] == "rejected" and last["approval"] == answer and last["previous"] == champion
        assert last["version"] == distilled["student_version"] and last["run_id"] == f"asked{seed}"
        assert (registry.registry_dir("product_category") / "versions" / last["version"]).is_dir()  # kept
        assert evaluated["approval"] in last["reason"]
    log = registry.promotion_log("product_category")
    assert "promotion not approved: Hold by bob at 2024-01-10T07:00" in log[-2]["reason"]
    assert "promotion not approved: no answer within 720 min: Hold (the default)" in log[-1]["reason"]
    from kd_tasks.stages.report import format_report

    text = format_report(json.loads(open(nightly.write_report(uc, DS, "asked2", distilled["run_dir"])).read()))
    assert "NOT promoted, promotion not approved: no answer within 720 min" in text


def test_backfill_run_records_a_candidate_and_keeps_production(kd_home, tiny_teacher):
    run_chain()
    champion = registry.champion("product_category")["version"]
    out = run_chain(run_id="backfill__2024-01-10", epochs=3, action={"is_backfill": True})
    assert out["evaluated"]["action"] == "candidate"
    assert registry.champion("product_category")["version"] == champion
    last = registry.promotion_log("product_category")[-1]
    assert last["outcome"] == "candidate" and last["gate"]["decision"] in ("promote", "hold")
    report = json.loads(open(out["report"]).read())
    assert report["outcome"]["outcome"] == "candidate"


def test_a_promotion_that_lost_the_race_is_reported_not_lost(kd_home, tiny_teacher):
    uc = nightly.resolve_use_case("product_category", {"extract_lookback_days": 3, "seed": 1, **ACCEPT_WEAK})
    nightly.extract(uc, DS, default_warehouse_uri())
    labelled = nightly.soft_labels(uc, DS, "slow")
    slow = nightly.distill(uc, DS, labelled["run_dir"])  # reads "no champion" here...
    run_chain(run_id="fast")  # ...while another run promotes first
    winner = registry.champion("product_category")["version"]
    nightly.evaluate(uc, DS, slow["run_dir"], False)
    outcome = nightly.promote(uc, DS, slow["run_dir"], "slow")
    assert outcome["outcome"] == "lost_race" and outcome["champion"] == winner
    assert registry.champion("product_category")["version"] == winner
    assert registry.promotion_log("product_category")[-1]["outcome"] == "lost_race"
    assert (registry.registry_dir("product_category") / "versions" / outcome["version"]).exists()


def test_a_rerun_of_a_night_with_the_same_inputs_is_already_promoted(kd_home, tiny_teacher):
    """The second run warm-starts from the champion of the night's first run (none), not from the
    student the first run promoted: same inputs, same student, nothing moves."""
    first = run_chain(run_id="first")
    again = run_chain(run_id="again")
    v = first["distilled"]["student_version"]
    assert again["distilled"]["student_version"] == v
    assert json.loads(open(again["report"]).read())["outcome"] == {**json.loads(open(again["report"]).read())["outcome"],
                                                                   "outcome": "promoted", "version": v, "already": True}
    assert [e["outcome"] for e in registry.promotion_log("product_category")] == ["promoted"]
    from kd_tasks.stages.report import format_report

    assert f"promoted version {v} -> " in format_report(json.loads(open(again["report"]).read()))
    assert "(already in production: nothing moved)" in format_report(json.loads(open(again["report"]).read()))
    # the next night warm-starts from that champion
    nxt = run_chain(ds="2024-01-11", run_id="next")
    assert nxt["distilled"]["warm_started_from"] == v
