"""A broken teacher cannot pass the gate by dragging its student down with it: the no-KD baseline
beats the KD student, becomes the night's candidate, the report says distillation did not pay, and
the teacher's zero-recall classes hold the night unless a person accepts the weak teacher."""
import json

from conftest import DS, TINY_TEACHER_TRAIN, run_chain
from kd_tasks import cli
from kd_tasks.home import default_warehouse_uri
from kd_tasks.loaders import catalogue
from kd_tasks.nightly import bootstrap, resolve_use_case
from kd_tasks.storage import registry
from kd_tasks.storage.runs import RunDir


def test_broken_teacher_promotes_nothing_or_the_baseline(kd_home, fashion_records, tiny_base):
    rows = catalogue.catalogue_rows(fashion_records[:600], source="fashion", text_column="productDisplayName",
                                    label_column="masterCategory", id_column="id", end_date=DS, days=3)
    for r in rows[::4]:
        r["category"] = None
    uri = default_warehouse_uri()
    # the teacher learns every class under another class's name
    names = sorted({r["category"] for r in rows if r["category"]})
    shifted = {n: names[(i + 1) % len(names)] for i, n in enumerate(names)}
    catalogue.load_products(uri, [{**r, "category": shifted.get(r["category"])} for r in rows], replace=True)
    bootstrap(resolve_use_case("product_category"), DS, uri, base_model=str(tiny_base), train=TINY_TEACHER_TRAIN)
    catalogue.load_products(uri, rows, replace=True)  # the warehouse's true labels judge the night

    held = run_chain(alpha=1.0, accept_weak_teacher=False)  # the KD student learns from the teacher alone
    gate = RunDir(held["evaluated"]["run_dir"]).read("gate")
    assert gate["candidate"] == "baseline" and gate["distillation"]["paid"] is False
    assert gate["distillation"]["interval"][0] > 0.01
    health = next(c for c in gate["checks"] if c["name"] == "teacher_health")
    assert not health["passed"] and health["value"] >= 1 and "zero recall" in health["detail"]
    assert held["evaluated"]["action"] == "hold" and registry.champion("product_category") is None
    text = open(held["report"]).read()
    report = json.loads(text)
    assert report["outcome"]["outcome"] == "held"
    assert "distillation did not pay" in report["gate"]["reason"]

    accepted = run_chain(run_id="accepted", alpha=1.0, accept_weak_teacher=True)
    run = RunDir(accepted["evaluated"]["run_dir"])
    assert accepted["evaluated"]["action"] == "promote"
    champion = registry.champion("product_category")
    assert champion["version"] == run.read("distill")["models"]["baseline"]["version"]
    last = registry.promotion_log("product_category")[-1]
    assert last["outcome"] == "promoted" and "waived by accept_weak_teacher: teacher_health" in last["reason"]
    assert "the candidate is the no-KD baseline" in last["reason"]

    # a person accepts this teacher version for every later night (not only one run's Param)
    assert cli.main(["accept-teacher", "--reason", "INC-9: reviewed, the baseline is what ships"]) == 0
    later = run_chain(run_id="later", alpha=1.0, accept_weak_teacher=False, seed=1)
    gate = RunDir(later["evaluated"]["run_dir"]).read("gate")
    assert gate["decision"] == "promote" and "a person's acceptance of the teacher" in gate["reason"]
    verdict = next(c for c in gate["checks"] if c["name"] == "teacher_verdict")
    assert verdict["waived"] and "INC-9" in verdict["detail"]
