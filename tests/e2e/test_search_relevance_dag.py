"""kd_search_relevance_nightly end to end with dag.test() on real Home Depot search pairs: a tiny
cross-encoder teacher bootstrapped by the teacher DAG (judged against BM25 and the two-tower student
on gold alone), then two nights of the same stages as every use case: extract with sampled catalogue
candidates, scores as soft labels, a two-tower student distilled with pointwise, listwise and InfoNCE
terms, evaluated per held-out query on NDCG@10 against teacher and champion, gated, promoted."""
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import text

from conftest import ROOT
from kd_tasks import warehouse
from kd_tasks.home import default_warehouse_uri
from kd_tasks.loaders.catalogue import read_rows
from kd_tasks.loaders.search import SearchRows, load_search
from kd_tasks.stages.report import format_report
from kd_tasks.storage import registry
from kd_tasks.models.hashed_ngram import batch_inputs
from kd_tasks.models.two_tower import TwoTowerStudent

NIGHTS = ("2024-01-01", "2024-01-02")
FAST = {"epochs": 3, "accept_weak_teacher": True,  # a tiny teacher on 2 nights may not beat BM25: accepted
        "approval": "off"}  # dag.test(): no one to ask for an approval


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _run(dag, ds, conf):
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc), run_conf=conf)
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id,
                                                 TaskInstance.run_id == run.run_id).all()
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis}
    return str(getattr(run.state, "value", run.state)), states


def test_search_nightly_over_real_home_depot_pairs(airflow_db, dagbag, datasets_dir, tiny_base, kd_home):
    uri = default_warehouse_uri()
    records = list(read_rows(Path(datasets_dir) / "homedepot_search_relevance" / "train.csv.gz", "latin-1"))[:2400]
    rows = SearchRows(records, source="homedepot", query_column="search_term", text_column="product_title",
                      grade_column="relevance", product_id_column="product_uid", grade_range=(1.0, 3.0),
                      end_date=NIGHTS[-1], days=len(NIGHTS))
    summary = load_search(uri, rows, replace=True)
    assert summary["pairs"] == 2400 and summary["products"] > 300

    state, states = _run(dagbag.get_dag("kd_teacher_bootstrap"), NIGHTS[0],
                         {"use_case": "search_relevance", "base_model": str(tiny_base), "epochs": 2,
                          "learning_rate": 3e-4})
    assert state == "success", states
    teacher = json.loads((kd_home / "teachers" / "search_relevance" / "kd_manifest.json").read_text())
    assert teacher["family"] == "hf_cross_encoder" and teacher["label_names"] == ["grade"]
    assert teacher["objective"].startswith("graded regression")
    assert teacher["validation"]["metric"] == "ndcg_at_10"
    verdict = teacher["verdict"]
    assert set(verdict["baselines"]) == {"bm25", "student_gold_only"} and verdict["metric"] == "ndcg_at_10"
    assert 0 < verdict["baselines"]["bm25"]["ndcg_at_10"] <= 1  # BM25 ranks the validation queries

    nightly = dagbag.get_dag("kd_search_relevance_nightly")
    for ds in NIGHTS:
        state, states = _run(nightly, ds, FAST)
        assert state == "success", states
        assert states["extract_pairs"] == "success", states
    reports = sorted(((json.loads(p.read_text()), p.parent) for p in (kd_home / "runs" / "search_relevance").glob(
        "*/report.json")), key=lambda r: r[0]["ds"])
    (first, _), (second, run_dir) = reports
    assert first["outcome"]["outcome"] == "promoted", first["gate"]
    ev = second["evaluation"]
    assert ev["task"] == "ranking" and ev["metric"] == "ndcg_at_10" and ev["window"] == list(NIGHTS)
    # held out by query: the evaluation's units are queries, the interval resamples them
    assert ev["eval_groups"] >= 30 and ev["support"]["queries"] == ev["eval_groups"]
    models = ev["models"]
    for name in ("teacher", "student", "baseline", "champion"):
        m = models[name]
        assert 0 < m["ndcg_at_10"] <= 1 and 0 < m["mrr"] <= 1 and -1 <= m["spearman"] <= 1, (name, m)
    for name in ("student", "baseline", "champion"):
        assert -1 <= models[name]["kendall_tau_vs_teacher"] <= 1 and "top1_agreement" not in models[name]
    assert models["teacher"]["params"] > models["student"]["params"] / 10
    c = ev["comparisons"]["student_vs_champion"]
    assert c["unit"] == "groups" and c["units"] == ev["eval_groups"] and c["low"] <= c["delta"] <= c["high"]
    checks = {c["name"]: c for c in second["gate"]["checks"]}
    assert "Spearman" in checks["teacher_health"]["detail"]
    assert checks["champion_regression"]["value"] is not None
    # the sampled candidates were extracted, scored by the teacher and trained on (never judged)
    distill = json.loads((run_dir / "distill.json").read_text())
    assert distill["distill"]["loss_terms"] == {"pointwise_kd": 1.0, "listwise_kd": 1.0, "infonce_kd": 1.0,
                                                "graded_gold": 1.0}
    assert distill["train_rows"] > 1.5 * distill["gold_rows"]
    champion = registry.champion("search_relevance")
    student_cfg = json.loads((Path(champion["path"]) / "student.json").read_text())
    assert student_cfg["family"] == "two_tower"
    table = format_report(second)
    assert "NDCG@10" in table and "tau vs teacher" in table

    # the two-tower export a service loads without this project, run by the export DAG: the query
    # tower and the item vectors
    state, states = _run(dagbag.get_dag("kd_export_production_model"), NIGHTS[-1], {"use_case": "search_relevance"})
    assert state == "success", states
    folder = registry.export_dir("search_relevance", champion["version"])
    info = json.loads((folder / "export.json").read_text())
    assert info["version"] == champion["version"] and info["smoke_test"]["rows"] >= 30
    items = json.loads((folder / "items.json").read_text())
    vectors = np.load(folder / "item_vectors.npy")
    assert vectors.shape == (len(items), info["vector_dim"]) and len(items) == info["items"] > 100
    tower = torch.export.load(folder / "query_tower.pt2").module()
    student = TwoTowerStudent.load(champion["path"])
    query, item = "cordless drill", items[0]
    with warehouse.connect(uri) as conn:
        title = conn.execute(text("select title from search_products where product_id = :id"), {"id": item}).scalar()
    with torch.inference_mode():
        q = tower(*batch_inputs([query], info["featurizer"]["n_buckets"])).numpy()
    served = info["scale"] * float(q[0] @ vectors[0]) + info["bias"]
    assert served == pytest.approx(float(student.logits([(query, title)])[0, 0]), abs=1e-4)
