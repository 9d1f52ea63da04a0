"""DagBag integrity: one case per DAG file; the files import cleanly, fast, and without heavy modules."""
import datetime as dt
import json
import subprocess
import sys

import pytest

from conftest import ROOT

DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if p.name != "kd_common.py")
PLUGIN_FILES = sorted((ROOT / "plugins").glob("*.py"))  # loaded by every Airflow process, the scheduler's too
HEAVY = ["torch", "transformers", "pandas", "sklearn", "pyarrow", "numpy"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_file_is_covered():
    assert [p.name for p in DAG_FILES] == ["kd_export_production_model.py", "kd_product_category_nightly.py",
                                           "kd_purchase_intent_nightly.py", "kd_search_relevance_nightly.py",
                                           "kd_teacher_bootstrap.py"]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_errors(dagbag, path):
    errors = {k: v for k, v in dagbag.import_errors.items() if k.endswith(path.name)}
    assert errors == {}, f"{path.name} failed to import; run `python {path}` to see the traceback"
    dags = [d for d in dagbag.dags.values() if d.fileloc.endswith(path.name)]
    assert len(dags) == 1, f"{path.name} should define exactly one DAG"
    dag = dags[0]
    assert dag.tags, f"{dag.dag_id} has no tags; add tags=[...] to @dag"
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries; set default_args['retries']"
        assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id} has no execution_timeout"


@pytest.mark.parametrize("path", DAG_FILES + PLUGIN_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_heavy_modules(path):
    code = (f"import sys, json, runpy; sys.path.insert(0, {str(path.parent)!r}); "
            f"runpy.run_path({str(path)!r}); "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == [], f"parsing {path.name} imported {heavy}; move those imports inside the tasks"


@pytest.mark.parametrize("dag_id,extract", [("kd_product_category_nightly", "extract_products"),
                                             ("kd_purchase_intent_nightly", "extract_candidates"),
                                             ("kd_search_relevance_nightly", "extract_pairs")])
def test_nightly_dag_shape(dagbag, dag_id, extract):
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.task_ids) == {extract, "plan_soft_labels", "generate_soft_labels", "collect_soft_labels",
                                 "distill_student", "evaluate_student", "gate_student", "approve_promotion",
                                 "promote_student", "reject_promotion", "record_candidate", "hold_student",
                                 "write_report", "mirror_to_mlflow"}
    # the MLflow mirror comes after the promotion and the report, blocks nothing and retries on its own
    mirror = dag.get_task("mirror_to_mlflow")
    assert mirror.upstream_task_ids == {"write_report"} and not mirror.downstream_task_ids
    assert mirror.retries >= 2
    assert dag.get_task("promote_student").downstream_task_ids == {"write_report"}
    labels = dag.get_task("generate_soft_labels")
    assert labels.is_mapped and labels.queue == "teacher"  # one task per (day, shard), on the teacher's workers
    assert labels.upstream_task_ids == {"plan_soft_labels"}
    assert dag.get_task("gate_student").downstream_task_ids == {"approve_promotion", "record_candidate",
                                                                "hold_student"}
    # every promotion passes the approval step, which asks a person only when it is forced or borderline
    approve = dag.get_task("approve_promotion")
    assert approve.downstream_task_ids == {"promote_student", "reject_promotion"}
    assert approve.options == ["Promote", "Hold"] and approve.defaults == ["Hold"]
    assert approve.response_timeout == dt.timedelta(hours=12)  # then Hold, the default answer
    assert dag.get_task("reject_promotion").downstream_task_ids == {"write_report"}
    for heavy in ("generate_soft_labels", "distill_student", "evaluate_student"):
        assert dag.get_task(heavy).pool == "kd_heavy", heavy
    params = dag.params
    for name in ("temperature", "alpha", "epochs", "lookback_days", "student_size", "dry_run", "force_promote",
                 "force_reason", "allow_backfill_promotion", "ds", "approval", "approval_timeout_minutes"):
        assert name in params, name


def test_purchase_intent_params_come_from_its_declaration(dagbag):
    from kd_tasks.use_cases.purchase_intent import USE_CASE as PURCHASE_INTENT

    params = dagbag.dags["kd_purchase_intent_nightly"].params
    assert params["temperature"] == PURCHASE_INTENT.distill.temperature
    assert params["label_horizon_days"] == 1 and params["candidate_days"] == PURCHASE_INTENT.extract_params["candidate_days"]
    assert [a.name for a in dagbag.dags["kd_purchase_intent_nightly"].get_task("promote_student").outlets] == [
        "kd_purchase_intent_production_model"]


def test_export_dag_is_scheduled_on_the_promoted_model_asset(dagbag):
    nightly, export = dagbag.dags["kd_product_category_nightly"], dagbag.dags["kd_export_production_model"]
    promoted = nightly.get_task("promote_student").outlets
    assert [a.name for a in promoted] == ["kd_product_category_production_model"]
    assert [a.name for a in nightly.get_task("collect_soft_labels").outlets] == ["kd_product_category_soft_labels"]
    # every use case whose student exports: product_category's n-gram student, search_relevance's two towers
    condition = str(export.timetable.asset_condition)
    assert "kd_product_category_production_model" in condition and "kd_search_relevance_production_model" in condition
    assert "kd_purchase_intent_production_model" not in condition  # its tabular student is served as it is
    assert export.params["use_case"] == "product_category"


NIGHTLY = "kd_product_category_nightly"


@pytest.mark.parametrize("dag_id,conf,bad", [
    (NIGHTLY, {"alpha": 1.5}, "alpha"), (NIGHTLY, {"temperature": -1}, "temperature"),
    (NIGHTLY, {"student_size": "huge"}, "student_size"), (NIGHTLY, {"epochs": "ten"}, "epochs"),
    (NIGHTLY, {"ds": "10/01/2024"}, "ds"), (NIGHTLY, {"ds": "2024-13-45"}, "ds"), (NIGHTLY, {"ds": "2024-02-30"}, "ds"),
    ("kd_purchase_intent_nightly", {"label_horizon_days": "abc"}, "label_horizon_days"),
    ("kd_export_production_model", {"version": "../versions/0123456789ab"}, "version"),
    ("kd_export_production_model", {"version": "0123456789AB"}, "version"),
    ("kd_export_production_model", {"use_case": "purchase_intent"}, "use_case"),
    ("kd_teacher_bootstrap", {"use_case": "../product_category"}, "use_case"),
    ("kd_teacher_bootstrap", {"sql_params": {"label_horizn_days": 7}}, "sql_params"),
    ("kd_teacher_bootstrap", {"sql_params": {"label_horizon_days": "abc"}}, "sql_params"),
    ("kd_teacher_bootstrap", {"ds": "2024-02-30"}, "ds"),
])
def test_bad_params_create_no_run_and_name_the_param(airflow_db, dagbag, dag_id, conf, bad):
    import datetime as dt

    from airflow.models import DagRun
    from airflow.utils.session import create_session

    dag = dagbag.dags[dag_id]
    with create_session() as session:
        before = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).count()
    with pytest.raises(Exception, match=f"Invalid input for param {bad}"):
        dag.test(logical_date=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc), run_conf=conf)
    with create_session() as session:
        assert session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).count() == before


def test_ds_comes_from_the_param_then_the_logical_date_then_the_data_interval():
    import datetime as dt

    from kd_common import run_ds

    when = dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)
    assert run_ds({"params": {"ds": "2024-01-02"}, "logical_date": when}) == "2024-01-02"
    assert run_ds({"params": {"ds": None}, "logical_date": when}) == "2024-03-05"
    assert run_ds({"params": {}, "logical_date": None, "data_interval_start": when}) == "2024-03-05"
    with pytest.raises(ValueError, match=r"no logical date; trigger it with conf \{\"ds\""):
        run_ds({"params": {}, "logical_date": None, "data_interval_start": None})


def test_backfill_runs_are_recognised():
    from types import SimpleNamespace

    from kd_common import is_backfill

    assert is_backfill({"dag_run": SimpleNamespace(run_type="backfill")})
    assert not is_backfill({"dag_run": SimpleNamespace(run_type="scheduled")})
    assert not is_backfill({})


def test_a_deterministic_input_error_fails_at_once_without_retries(airflow_db, dagbag, kd_home, monkeypatch):
    """A warehouse URL SQLAlchemy has no dialect for cannot work on a retry: the task fails on its first try (the DAG's
    retries would otherwise re-run it 5 minutes later, twice), and the password is not in the log."""
    import datetime as dt

    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    monkeypatch.setenv("KD_WAREHOUSE", "mongodb://kd:s3cr3t-pw@127.0.0.1/wh")
    dag = dagbag.dags[NIGHTLY]
    assert dag.get_task("extract_products").retries == 2
    run = dag.test(logical_date=dt.datetime(2031, 2, 1, tzinfo=dt.timezone.utc))
    with create_session() as session:
        ti = session.query(TaskInstance).filter(TaskInstance.dag_id == NIGHTLY, TaskInstance.run_id == run.run_id,
                                                TaskInstance.task_id == "extract_products").one()
        assert str(getattr(ti.state, "value", ti.state)) == "failed" and ti.try_number == 1


def test_the_teacher_bootstrap_is_mirrored_after_it_is_published(dagbag):
    dag = dagbag.dags["kd_teacher_bootstrap"]
    mirror = dag.get_task("mirror_to_mlflow")
    assert mirror.upstream_task_ids == {"bootstrap_teacher"} and mirror.retries >= 2
