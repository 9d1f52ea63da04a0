"""The nightly DAG labels its window as mapped tasks, one per (day, shard): a shard that fails is
retried alone, and the night it completes is the night an uninterrupted run gives."""
import datetime as dt
import json

import numpy as np
import pytest

from conftest import ACCEPT_WEAK, DS, ROOT
from kd_tasks.storage import lake
from kd_tasks.storage.runs import RunDir

NIGHTLY = "kd_product_category_nightly"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def _night(dagbag, conf):
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    dag = dagbag.dags[NIGHTLY]
    labels = dag.get_task("generate_soft_labels")
    labels.partial_kwargs["retry_delay"] = dt.timedelta(seconds=1)  # the DAG waits 5 minutes
    run = dag.test(logical_date=dt.datetime(2024, 1, 10, tzinfo=dt.timezone.utc), run_conf=conf)
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == NIGHTLY,
                                                 TaskInstance.run_id == run.run_id).all()
        states = {(ti.task_id, ti.map_index): (str(getattr(ti.state, "value", ti.state)), ti.try_number)
                  for ti in tis}
    rundir = RunDir.create("product_category", run.run_id)
    return run, states, rundir


@pytest.mark.slow
def test_one_failed_shard_is_retried_alone_and_the_night_is_unchanged(airflow_db, dagbag, kd_home, tiny_teacher,
                                                                       monkeypatch, tmp_path):
    conf = {"extract_lookback_days": 3, "shard_rows": 150, "label_threads": 1, **ACCEPT_WEAK}
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("KD_FAULT_ONCE", f"label_shard:{DS}:2@{marker}")
    run, states, rundir = _night(dagbag, conf)
    assert str(getattr(run.state, "value", run.state)) == "success", states
    shards = sorted(k for (task, k) in states if task == "generate_soft_labels")
    assert shards == list(range(4)), "600 rows in shards of 150: four mapped task instances"
    assert marker.exists(), "the injected failure happened"
    assert states[("generate_soft_labels", 2)] == ("success", 2)  # failed once, retried, succeeded
    assert all(states[("generate_soft_labels", k)] == ("success", 1) for k in (0, 1, 3))  # not rerun
    assert states[("collect_soft_labels", -1)][0] == "success"
    labelled = rundir.read("soft_labels")
    assert labelled["shards"] == 4 and labelled["labelled"] == [DS] and len(labelled["runs"]) == 4
    assert {r["threads"] for r in labelled["runs"]} == {1} and {r["device"] for r in labelled["runs"]} == {"cpu"}
    retried = lake.read_soft_labels("product_category", labelled["labelling"], DS, 2, "")[1]

    # the same night again, uninterrupted, from scratch: the same logits and the same student
    import shutil

    shutil.rmtree(kd_home / "lake" / "product_category" / "soft_labels")
    monkeypatch.delenv("KD_FAULT_ONCE")
    again, states_again, rundir_again = _night(dagbag, {**conf, "dry_run": True})
    assert all(states_again[("generate_soft_labels", k)] == ("success", 1) for k in range(4))
    assert np.array_equal(lake.read_soft_labels("product_category", labelled["labelling"], DS, 2, "")[1], retried)
    student = json.loads((rundir.path / "distill.json").read_text())["models"]["student"]["version"]
    assert rundir_again.read("distill")["models"]["student"]["version"] == student
