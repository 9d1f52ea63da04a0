"""A whole nightly DAG run with dag.test() on real fashion listings and a tiny local teacher."""
import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from conftest import DS, ROOT, TINY_TEACHER_TRAIN
from kd_tasks.storage import lake, registry

LOGICAL = dt.datetime.fromisoformat(DS).replace(tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _state(dagrun):
    return str(getattr(dagrun.state, "value", dagrun.state))


def _task_states(dagrun):
    """Task states of the run, read back from the metadata database."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dagrun.dag_id,
                                                 TaskInstance.run_id == dagrun.run_id).all()
        return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis}


def test_bootstrap_then_nightly_promotes_then_holds_on_dry_run(airflow_db, dagbag, fashion_warehouse,
                                                              tiny_base, kd_home):
    boot = dagbag.get_dag("kd_teacher_bootstrap").test(
        logical_date=LOGICAL, run_conf={"base_model": str(tiny_base), **TINY_TEACHER_TRAIN})
    assert _state(boot) == "success", _task_states(boot)
    manifest = json.loads((kd_home / "teachers" / "product_category" / "kd_manifest.json").read_text())
    assert manifest["label_names"] and manifest["provenance"]["as_of"] == DS
    # the teacher gate judged the tiny teacher on its validation rows: TF-IDF + LR beats it, so it is
    # published (the first teacher) marked weak, with every baseline's numbers
    verdict = manifest["verdict"]
    assert verdict["weak"] is True and "does not beat tfidf_lr" in verdict["reason"]
    assert set(verdict["baselines"]) == {"tfidf_lr", "student_gold_only"}
    assert verdict["validation_rows"] == manifest["provenance"]["validation_rows"] > 0
    assert manifest["validation"]["metric"] == "macro_f1" and len(manifest["validation"]["history"]) >= 1

    nightly = dagbag.get_dag("kd_product_category_nightly")
    run = nightly.test(logical_date=LOGICAL, run_conf={"extract_lookback_days": 3, "epochs": 6,
                                                       "accept_weak_teacher": True})
    states = _task_states(run)
    assert _state(run) == "success", states
    assert states["promote_student"] == "success" and states["hold_student"] == "skipped", states

    extract = lake.extract_path("product_category", DS)
    soft = lake.soft_label_path("product_category", manifest["version"], DS)
    n = pq.read_table(extract).num_rows
    assert n > 400  # 600 listings over 3 days, all inside the window (a few titles are empty)
    soft_table = pq.read_table(soft)
    assert soft_table.num_rows == n
    assert soft_table.schema.field("logits").type.list_size == len(manifest["label_names"])
    assert lake.read_provenance(soft)["teacher_version"] == manifest["version"]
    assert lake.partition_info(extract.parent)["sql_hash"]

    reports = sorted((kd_home / "runs" / "product_category").glob("*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["gate"]["decision"] == "promote"
    assert "waived by accept_weak_teacher: teacher_verdict" in report["gate"]["reason"]
    assert report["evaluation"]["teacher_verdict"]["weak"] is True
    assert report["evaluation"]["champion_version"] is None  # the documented first run
    models = report["evaluation"]["models"]
    assert set(models) == {"teacher", "student", "baseline"}
    for key in ("params", "bytes", "p50_ms_b1", "p95_ms_b1", "p50_ms_b64"):
        assert models["teacher"][key] > 0 and models["student"][key] > 0, key
    assert 0 < models["student"]["top1_agreement"] <= 1
    assert report["evaluation"]["eval_rows"] >= 30
    champion = registry.champion("product_category")
    assert champion["version"] == report["outcome"]["version"]
    assert champion["manifest"]["teacher_version"] == manifest["version"]
    assert champion["manifest"]["data_window"] == [DS]
    assert champion["manifest"]["sql_hash"] == lake.partition_info(extract.parent)["sql_hash"]
    # the mirror task logged the night and the version in the default MLflow store (SQLite under KD_HOME)
    assert states["mirror_to_mlflow"] == "success", states
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{kd_home / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_model_version_by_alias("kd_product_category", "production").tags["kd_version"] \
        == champion["version"]
    experiment = client.get_experiment_by_name("kd/product_category")
    assert experiment.artifact_location == (kd_home / "mlflow" / "artifacts").as_uri()  # not ./mlruns of the cwd
    exp = experiment.experiment_id
    (teacher_run,) = client.search_runs([exp], filter_string="tags.kd_kind = 'teacher'")  # the bootstrap's own run
    assert teacher_run.data.tags["kd_teacher_version"] == manifest["version"]
    assert teacher_run.data.metrics["verdict.weak"] == 1.0
    assert teacher_run.data.metrics["verdict.tfidf_lr.teacher_minus"] == pytest.approx(
        verdict["baselines"]["tfidf_lr"]["teacher_minus"])

    # A second run for the same date is idempotent for the data and evaluates against the champion;
    # dry_run keeps it from promoting whatever the gate says.
    soft_mtime = soft.stat().st_mtime_ns
    again = nightly.test(logical_date=LOGICAL, run_conf={"extract_lookback_days": 3, "epochs": 6, "dry_run": True,
                                                         "accept_weak_teacher": False})
    states = _task_states(again)
    assert _state(again) == "success", states
    assert states["hold_student"] == "success" and states["promote_student"] == "skipped"
    assert soft.stat().st_mtime_ns == soft_mtime, "soft labels of the same teacher version must not be redone"
    assert pq.read_table(extract).num_rows == n
    second = json.loads(max((kd_home / "runs" / "product_category").glob("*/report.json"),
                            key=lambda p: p.stat().st_mtime).read_text())
    assert second["evaluation"]["champion_version"] == champion["version"]
    assert "champion" in second["evaluation"]["models"]
    # the teacher's latency was measured by the first night only, for its version, and reused
    profile = json.loads((kd_home / "profiles" / "product_category" / f"teacher-{manifest['version']}.json")
                         .read_text())
    assert profile["measured"]["ds"] == DS
    for key in ("p50_ms_b1", "p95_ms_b1", "p50_ms_b64"):
        assert second["evaluation"]["models"]["teacher"][key] == models["teacher"][key] == profile[key]
    assert second["gate"]["decision"] == "hold" and second["gate"]["dry_run"] is True
    # without accept_weak_teacher the weak teacher holds the night, and the report says why
    verdict_check = next(c for c in second["gate"]["checks"] if c["name"] == "teacher_verdict")
    assert not verdict_check["passed"] and "teacher_verdict" in second["gate"]["reason"]
    assert second["outcome"] == {"outcome": "held", "reason": second["gate"]["reason"],
                                 "champion": champion["version"]}
    assert registry.champion("product_category")["version"] == champion["version"]
    assert [e["outcome"] for e in registry.promotion_log("product_category")] == ["promoted"]


def test_empty_day_is_skipped_when_asked(airflow_db, dagbag, fashion_warehouse, kd_home):
    nightly = dagbag.get_dag("kd_product_category_nightly")
    empty_day = dt.datetime(2023, 5, 1, tzinfo=dt.timezone.utc)
    run = nightly.test(logical_date=empty_day, run_conf={"on_empty": "skip"})
    states = _task_states(run)
    assert states["extract_products"] == "skipped", states
    assert not lake.extract_dir("product_category", "2023-05-01").exists()
    assert registry.champion("product_category") is None

    for t in nightly.tasks:  # the DAG retries after 5 minutes; this test only needs the first failure
        t.retries = 0
    failed = nightly.test(logical_date=empty_day, run_conf={"on_empty": "fail"})
    assert _task_states(failed)["extract_products"] == "failed"
