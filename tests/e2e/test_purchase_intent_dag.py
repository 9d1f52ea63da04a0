"""kd_purchase_intent_nightly end to end with dag.test() on real Taobao days: the same stages as
product_category, a tabular teacher with privileged features, a serving-feature student, the AUC gate."""
import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from kd_tasks.storage import lake, registry
from kd_tasks.use_cases.purchase_intent import PRIVILEGED as INTENT_PRIVILEGED, SERVING as INTENT_SERVING
from kd_tasks.home import default_warehouse_uri
from kd_tasks.loaders.events import load_events, select_days

# the student budget of a test run (both students get the same); the teacher of these few days may tie
# with boosted trees on the same features (the teacher gate then marks it weak): the runs accept it
FAST = {"epochs": 3, "accept_weak_teacher": True, "approval": "off"}  # dag.test(): no one to ask


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _run(dag, ds, conf=None):
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc),
                   run_conf={**FAST, **(conf or {})})
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id,
                                                 TaskInstance.run_id == run.run_id).all()
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis}
    return str(getattr(run.state, "value", run.state)), states


def test_intent_nightly_over_real_taobao_days(airflow_db, dagbag, taobao_events, kd_home):
    uri = default_warehouse_uri()
    load_events(uri, select_days(taobao_events, "2017-11-25", "2017-11-28"), replace=True)
    boot = dagbag.get_dag("kd_teacher_bootstrap")
    state, states = _run(boot, "2017-11-27", {"use_case": "purchase_intent"})
    assert state == "success", states
    teacher = json.loads((kd_home / "teachers" / "purchase_intent" / "kd_manifest.json").read_text())
    assert teacher["family"] == "tabular_mlp"
    assert teacher["feature_names"] == list(INTENT_SERVING) + list(INTENT_PRIVILEGED)
    assert teacher["provenance"]["window"] == ["2017-11-21", "2017-11-27"]
    # the teacher gate: boosted trees on the same (privileged) features, and the serving-time student on gold
    verdict = teacher["verdict"]
    assert set(verdict["baselines"]) == {"boosted_trees", "student_gold_only"} and verdict["metric"] == "auc"
    assert verdict["baselines"]["student_gold_only"]["beaten"], verdict  # privileged features pay
    assert teacher["validation"]["metric"] == "auc" and teacher["validation"]["best_epoch"] >= 1

    nightly = dagbag.get_dag("kd_purchase_intent_nightly")
    state, states = _run(nightly, "2017-11-27")
    assert state == "success", states
    assert states["extract_candidates"] == "success" and states["promote_student"] == "success", states
    first = registry.champion("purchase_intent")

    # The next night: two partitions in the window, the first night's student is the champion.
    state, states = _run(nightly, "2017-11-28")
    assert state == "success", states
    reports = [json.loads(p.read_text()) for p in (kd_home / "runs" / "purchase_intent").glob("*/report.json")]
    (report,) = [r for r in reports if r["ds"] == "2017-11-28"]
    ev = report["evaluation"]
    assert ev["window"] == ["2017-11-27", "2017-11-28"] and ev["metric"] == "auc"
    assert ev["champion_version"] == first["version"]
    models = ev["models"]
    for name in ("teacher", "student", "baseline", "champion"):
        assert 0.5 < models[name]["auc"] <= 1.0, (name, models[name])
        assert models[name]["pr_auc"] > 0 and models[name]["logloss"] > 0 and models[name]["ece"] >= 0
    # privileged features make the teacher better than any serving-time student can be
    assert models["teacher"]["auc"] > models["student"]["auc"]
    assert models["teacher"]["params"] > 50 * models["student"]["params"]
    assert 0 <= models["student"]["top1_agreement"] <= 1 and models["student"]["p50_ms_b1"] > 0
    checks = {c["name"]: c for c in report["gate"]["checks"]}
    assert "student auc" in checks["teacher_retention"]["detail"]
    regression = ev["comparisons"]["student_vs_champion"]
    assert checks["champion_regression"]["value"] == round(models["student"]["auc"] - models["champion"]["auc"], 4)
    assert regression["low"] <= regression["delta"] <= regression["high"]
    assert f"[{regression['low']:+.4f}, {regression['high']:+.4f}]" in checks["champion_regression"]["detail"]
    # new and returning users are judged apart, each with its numbers
    for name in ("new_users", "returning_users"):
        rows = ev["slices"][name]["teacher"]["rows"]
        assert rows > 0 and ev["slices"][name]["student"]["rows"] == rows
        assert f"{rows} held-out rows" in checks[f"slice:{name}"]["detail"]
    assert sum(ev["slices"][n]["teacher"]["rows"] for n in ("new_users", "returning_users")) == ev["eval_rows"]

    # the student reads serving-time columns only; the teacher's soft labels are one logit per row
    student = json.loads((kd_home / "registry" / "purchase_intent" / "versions" /
                          registry.champion("purchase_intent")["version"] / "student.json").read_text())
    assert student["feature_names"] == list(INTENT_SERVING)
    soft = pq.read_table(lake.soft_label_path("purchase_intent", teacher["version"], "2017-11-28"))
    assert soft.schema.field("logits").type.list_size == 1
    assert soft.num_rows == lake.read_extract("purchase_intent", "2017-11-28").num_rows
