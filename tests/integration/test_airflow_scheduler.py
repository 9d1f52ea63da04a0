"""Nightly, backfill and manual runs on a real Airflow in its production shape: scheduler,
dag-processor, triggerer and api-server as processes, metadata on the running PostgreSQL, the CeleryExecutor with
the Redis broker on 127.0.0.1:6379 and two `airflow celery worker` processes (one serving only the
``teacher`` queue, one ``default`` and ``teacher``), parallelism 2, the ``kd_heavy`` pool with 2 slots.
The LocalExecutor is configured beside it (``CeleryExecutor,LocalExecutor``) for the reference run.
``KD_HOME`` is on object storage (the test S3 server), the one place every worker sees; the Airflow
processes get its credentials, endpoint and region from an Airflow AWS connection only, and each
worker keeps its own local cache.

Sequence (one module-scoped Airflow, every process stopped by PID at the end, pass or fail):
1. unpause the nightly DAG: the scheduler creates the scheduled run for yesterday, judged by the gate
   with the weak tiny teacher accepted by an operator (`cli accept-teacher`), and its deadline alert
   (1 hour after its logical date) mails the on-call address on a real SMTP server; an operator's
   forced manual night waits for approval (mailed too), is approved through the REST API and promotes
   a champion; the promoted-model asset event triggers the export DAG; two more forced nights are held,
   one by a person's answer, one by the approval timeout's default, and logged as rejected;
2. `airflow backfill create` over the two days before: two successful runs, in date order, each
   date's partitions written once, the production alias untouched, two gate decisions logged as
   candidates;
3. a manual trigger with a bad param is refused by the API and creates no run;
4. the same night on the LocalExecutor (a copy of the nightly DAG whose tasks name it) and on the
   Celery workers, with its partition in several shards: the shards spread over both workers, and
   the soft labels (bit for bit), the student version and the gate decision are the same; both
   workers downloaded the teacher once into their own caches, and the connection's secret is in no
   log and no object.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from urllib.parse import quote

import pytest

from benchmarks import airflow_stack as stack
from conftest import TINY_TEACHER_TRAIN, airflow_object_store_env, new_s3_home, use_s3

NIGHTLY, EXPORT = "kd_product_category_nightly", "kd_export_production_model"
REFERENCE = "kd_product_category_nightly_local"  # the nightly chain with every task on the LocalExecutor
REFERENCE_DAG = f'''"""The nightly chain of product_category, every task on the LocalExecutor (test reference)."""
import datetime as dt

from airflow.sdk import dag

from kd_common import DEFAULT_ARGS, distill_params, nightly_tasks


@dag(dag_id="{REFERENCE}", schedule=None, start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
     catchup=False, max_active_runs=1, default_args={{**DEFAULT_ARGS, "executor": "LocalExecutor"}},
     params=distill_params("product_category"))
def reference():
    nightly_tasks("product_category")


reference()
'''
REDIS_DB = 9  # the broker's database on the running Redis, emptied before and after
TODAY = dt.datetime.now(dt.timezone.utc).date()
DAYS = [(TODAY - dt.timedelta(days=k)).isoformat() for k in (3, 2, 1)]  # yesterday is DAYS[-1]
SECRET = "kd-stack-secret-3Fv9-never-shown"


ONCALL = "oncall@example.com"


@pytest.fixture(scope="module")
def inbox():
    """A real SMTP server (aiosmtpd) on 127.0.0.1: the stack's alerts arrive here."""
    import email
    from email import policy

    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            msg = email.message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append({"to": list(envelope.rcpt_tos), "subject": str(msg["Subject"]),
                                  "body": msg.get_body(("html", "plain")).get_content()})
            return "250 OK"

    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=stack.free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_endpoint, fashion_records, tiny_base, inbox):
    from kd_tasks.loaders import catalogue
    from kd_tasks import cli
    from kd_tasks.nightly import bootstrap, resolve_use_case

    root = tmp_path_factory.mktemp("airflow_cluster")
    db = f"kd_airflow_{os.getpid()}"
    metadata = stack.create_database(db)
    mp = pytest.MonkeyPatch()  # this process reads the same home with the test server's credentials
    use_s3(mp, s3_endpoint, root / "test-local")
    home = new_s3_home()
    mp.setenv("KD_HOME", str(home))
    c = stack.cluster(root, home, metadata, REDIS_DB, {"kd_reference_local.py": REFERENCE_DAG})
    # the warehouse stands for a database server every worker reaches; the object store's credentials
    # reach the Airflow processes through an Airflow connection only
    warehouse = f"sqlite:///{root / 'warehouse.db'}"
    for name in [k for k in c.env if k.startswith("AWS_")]:
        del c.env[name]
    c.env.update(KD_WAREHOUSE=warehouse, KD_LOCAL_DIR=str(root / "local"),
                 **airflow_object_store_env(s3_endpoint, SECRET))
    # alerts to the test's SMTP server; a nightly run must finish within 1 hour of its logical date (the
    # scheduled run's, yesterday 00:00 UTC, is long past: its deadline is missed as soon as it exists)
    c.env.update(KD_ALERT_EMAIL=ONCALL, KD_ALERT_SMTP_CONN_ID="kd_smtp", KD_NIGHTLY_DEADLINE_HOURS="1",
                 AIRFLOW_CONN_KD_SMTP=json.dumps({
                     "conn_type": "smtp", "host": "127.0.0.1", "port": inbox.port,
                     "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "kd-nightly@example.com"}}))
    stack.flush_broker(REDIS_DB)
    mp.setenv("KD_WAREHOUSE", warehouse)
    try:
        # The warehouse: 1,600 real fashion listings over the four days; a tiny teacher bootstrapped on them.
        rows = catalogue.catalogue_rows(fashion_records[:1600], source="fashion",
                                        text_column="productDisplayName", label_column="masterCategory",
                                        id_column="id", end_date=DAYS[-1], days=len(DAYS))
        for r in rows[::4]:
            r["category"] = None
        catalogue.load_products(warehouse, rows, replace=True)
        bootstrap(resolve_use_case("product_category"), DAYS[-1], warehouse, base_model=str(tiny_base),
                  train=TINY_TEACHER_TRAIN)
        # the tiny teacher is weak (TF-IDF + LR beats it): an operator accepts it for the scheduled nights
        assert cli.main(["accept-teacher", "--reason", "tiny test teacher"]) == 0
        # two workers, one task at a time each: a GPU-like worker on the teacher queue only, and a general one
        stack.start(c, [("worker-teacher", "teacher"), ("worker-general", "default,teacher")],
                    [NIGHTLY, EXPORT, REFERENCE], own_local_dirs=True)
        yield c
    finally:
        c.stop()
        mp.undo()
        stack.flush_broker(REDIS_DB)
        stack.drop_database(db)


def _promotions(c: stack.Cluster) -> list[dict]:
    """The promotion log's outcomes (each move's intent line left out)."""
    from kd_tasks.storage import registry

    return registry.promotion_log("product_category", c.kd_home)


def _alias(c: stack.Cluster) -> str | None:
    from kd_tasks.storage import registry

    return registry.alias_version("product_category", c.kd_home)


def test_scheduled_nightly_run_is_judged_and_a_promotion_triggers_the_export(cluster, inbox):
    c = cluster
    assert c.api("PATCH", f"/dags/{EXPORT}", {"is_paused": False})[0] == 200
    assert c.api("PATCH", f"/dags/{NIGHTLY}", {"is_paused": False})[0] == 200
    runs = c.wait("the scheduled nightly run", lambda: stack.finished(c.runs(NIGHTLY), 1))
    assert [r["run_type"] for r in runs] == ["scheduled"]
    assert runs[0]["logical_date"].startswith(DAYS[-1])
    (night,) = [p for p in (c.kd_home / "runs" / "product_category").iterdir() if p.name.startswith("scheduled__")]
    report = json.loads((night / "report.json").read_bytes())
    verdict = next(ch for ch in report["gate"]["checks"] if ch["name"] == "teacher_verdict")
    assert verdict["waived"] and "accepted by" in verdict["detail"] and "tiny test teacher" in verdict["detail"]
    assert report["gate"]["decision"] in ("promote", "hold") and report["outcome"]["outcome"] in ("promoted", "held")
    # the night's page: write_report's "Night report" link, served from the object store by the
    # project's plugin behind Airflow's login
    run_id = runs[0]["dag_run_id"]
    status, links = c.api("GET", f"/dags/{NIGHTLY}/dagRuns/{run_id}/taskInstances/write_report/links")
    url = links["extra_links"]["Night report"]
    assert status == 200 and url == f"http://127.0.0.1:{c.port}/kd-reports/{NIGHTLY}/{quote(run_id, safe='')}"
    # behind Airflow's own authentication: a forged token is refused (this stack's simple auth manager
    # makes every visitor an admin, so a request without a token passes, here as on /api/v2)
    assert c.page(url, token="forged")[0] == 403
    status, page = c.page(url)
    assert status == 200 and f"Gate decision: {report['gate']['decision']}" in page and run_id in page
    assert page == (night / "report.html").read_text()
    status, page = c.page(f"http://127.0.0.1:{c.port}/kd-reports/{NIGHTLY}/manual__no-such-run")
    assert status == 404 and "has no report" in page
    # the deadline alert: the scheduler saw the deadline pass, the triggerer ran the SMTP notifier
    missed = c.wait("the deadline alert's mail", lambda: [m for m in inbox.messages if "missed its deadline" in
                                                        m["subject"]], timeout=120)
    assert missed[0]["to"] == [ONCALL] and NIGHTLY in missed[0]["body"] and "scheduled__" in missed[0]["body"]

    # an operator's forced promotion of another student of that night (the one-day window of a tiny
    # test catalogue may leave the student under 0.9 of the teacher) waits for a person's approval; once
    # approved through the API it moves the alias and fires the export
    before = len(_promotions(c))
    run_id = c.trigger(NIGHTLY, {"ds": DAYS[-1], "seed": 1, "force_promote": True, "force_reason": "scheduler test"},
                       wait=False)
    who = _answer(c, run_id, "Promote")
    asked = [m for m in inbox.messages if "waits for your approval" in m["subject"] and run_id in m["subject"]]
    assert asked and asked[0]["to"] == [ONCALL] and "approve_promotion" in asked[0]["body"], inbox.messages
    c.wait_run(NIGHTLY, run_id)
    log = _promotions(c)
    assert [e["outcome"] for e in log[before:]] == ["promoted"] and log[-1]["ds"] == DAYS[-1]
    assert "scheduler test" in log[-1]["reason"] and _alias(c) == log[-1]["version"]
    assert log[-1]["approval"]["chosen"] == "Promote" and log[-1]["approval"]["by"] == who and who
    assert f"approved: Promote by {who} at " in log[-1]["reason"]
    assert _state(c, run_id, "reject_promotion") == "skipped"

    c.wait("the export DAG run", lambda: stack.finished(c.runs(EXPORT), 1))
    assert {r["run_type"] for r in c.runs(EXPORT)} == {"asset_triggered"}
    info = c.wait("the export of the promoted version", lambda: _export(c, log[-1]["version"]))
    assert info["smoke_test"]["same_top1"] is True and info["version"] == log[-1]["version"]


def _state(c: stack.Cluster, run_id: str, task_id: str) -> str | None:
    (ti,) = c.task_instances(NIGHTLY, run_id, task_id)
    return ti["state"]


def _answer(c: stack.Cluster, run_id: str, option: str) -> str:
    """Wait for ``approve_promotion`` of ``run_id`` to ask, answer ``option`` through the REST API (what
    the Required Actions page does); returns the name of the user who answered."""
    c.wait(f"approve_promotion of {run_id} to wait for a person",
           lambda: _state(c, run_id, "approve_promotion") == "awaiting_input")
    path = f"/dags/{NIGHTLY}/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails"
    status, detail = c.api("GET", path)
    assert status == 200 and detail["options"] == ["Promote", "Hold"] and detail["defaults"] == ["Hold"], detail
    assert "forced promotion" in detail["body"] and "scheduler test" in detail["body"] + detail["subject"]
    status, body = c.api("PATCH", path, {"chosen_options": [option]})
    assert status == 200 and body["chosen_options"] == [option], body
    assert c.api("PATCH", path, {"chosen_options": ["Promote"]})[0] == 409  # answered once, for good
    return body["responded_by"]["name"]


def test_a_forced_promotion_held_by_a_person_or_by_the_timeout_keeps_production(cluster):
    c = cluster
    champion, before = _alias(c), len(_promotions(c))
    assert champion, "the first test must have promoted first"
    rejected = c.trigger(NIGHTLY, {"ds": DAYS[-1], "seed": 2, "force_promote": True, "force_reason": "scheduler test"},
                         wait=False)
    who = _answer(c, rejected, "Hold")
    c.wait_run(NIGHTLY, rejected)
    assert _state(c, rejected, "promote_student") == "skipped" and _state(c, rejected, "reject_promotion") == "success"
    # no answer: after approval_timeout_minutes the scheduler applies the default answer, Hold
    unanswered = c.trigger(NIGHTLY, {"ds": DAYS[-1], "seed": 3, "force_promote": True, "force_reason": "scheduler test",
                                     "approval_timeout_minutes": 1})
    log = _promotions(c)[before:]
    assert [e["outcome"] for e in log] == ["rejected", "rejected"] and _alias(c) == champion
    assert [e["run_id"] for e in log] == [rejected, unanswered] and all(e["previous"] == champion for e in log)
    assert log[0]["approval"]["by"] == who and f"promotion not approved: Hold by {who} at " in log[0]["reason"]
    assert log[1]["approval"]["timed_out"] is True and log[1]["approval"]["by"] is None
    assert "no answer within 1 min: Hold (the default)" in log[1]["reason"]
    from kd_tasks.storage.runs import RunDir

    night = RunDir.create("product_category", unanswered, c.kd_home).path
    assert json.loads((night / "report.json").read_bytes())["outcome"]["outcome"] == "rejected"


def _export(c: stack.Cluster, version: str) -> dict | None:
    path = c.kd_home / "registry" / "product_category" / "exports" / version / "export.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_backfill_runs_in_order_once_per_date_and_never_moves_production(cluster):
    c = cluster
    champion = _alias(c)
    assert champion, "the first test must have promoted first"
    promoted, exported = [e["outcome"] for e in _promotions(c)].count("promoted"), len(c.runs(EXPORT))
    c.cli("backfill", "create", "--dag-id", NIGHTLY, "--from-date", DAYS[0], "--to-date", DAYS[-2],
          "--max-active-runs", "1", "--reprocess-behavior", "none")
    runs = c.wait("two backfill runs", lambda: stack.finished([r for r in c.runs(NIGHTLY) if r["run_type"] == "backfill"],
                                                         2), timeout=420)
    runs = sorted(runs, key=lambda r: r["logical_date"])
    assert [r["logical_date"][:10] for r in runs] == DAYS[:-1]
    for earlier, later in zip(runs, runs[1:]):  # one at a time, oldest first
        assert earlier["end_date"] <= later["start_date"], (earlier, later)

    lake = c.kd_home / "lake" / "product_category"
    for day in DAYS:
        assert sorted(p.name for p in (lake / "extract" / f"ds={day}").iterdir()) == ["_kd_files.json",
                                                                                    "part-0.parquet"], day
    teachers = [p.name for p in (lake / "soft_labels").iterdir()]
    assert len(teachers) == 1, f"soft labels of one teacher version only, got {teachers}"
    for day in DAYS:
        shard = lake / "soft_labels" / teachers[0] / f"ds={day}" / "shard=0"
        assert sorted(p.name for p in shard.parent.iterdir()) == ["shard=0"], day  # one shard per day here
        assert sorted(p.name for p in shard.iterdir()) == ["_kd_files.json", "part-0.parquet"], day

    assert _alias(c) == champion, "a backfill must not move the production alias"
    candidates = [e for e in _promotions(c) if e["outcome"] == "candidate"]
    assert sorted(e["ds"] for e in candidates) == DAYS[:-1]
    assert all(e["gate"]["decision"] in ("promote", "hold") and e["gate"]["checks"] for e in candidates)
    assert [e["outcome"] for e in _promotions(c)].count("promoted") == promoted
    assert len(c.runs(EXPORT)) == exported, "no promotion, so no new export"


def test_bad_param_is_refused_and_creates_no_run(cluster):
    c = cluster
    before = len(c.runs(NIGHTLY))
    status, body = c.api("POST", f"/dags/{NIGHTLY}/dagRuns", {"logical_date": None, "conf": {"alpha": 1.5}})
    assert status == 400, body
    assert "alpha" in json.dumps(body)
    assert len(c.runs(NIGHTLY)) == before


def _night(c: stack.Cluster, dag_id: str, conf: dict) -> dict:
    """Trigger ``dag_id`` for ``conf`` with no soft labels in the lake (every shard is labelled); return
    what the night produced: each shard's logits, the student version, the gate decision."""
    import numpy as np

    from kd_tasks.storage import lake

    (c.kd_home / "lake" / "product_category" / "soft_labels").remove_tree()
    run_id = c.trigger(dag_id, conf)
    from kd_tasks.storage.runs import RunDir

    run = RunDir.create("product_category", run_id, c.kd_home).path
    labelled = json.loads((run / "soft_labels.json").read_text())
    logits = {}
    for piece in json.loads((run / "soft_label_plan.json").read_text())["shards"]:
        _, z, _ = lake.read_soft_labels("product_category", labelled["labelling"], piece["day"], piece["shard"], "",
                                        c.kd_home)
        logits[(piece["day"], piece["shard"])] = np.ascontiguousarray(z).tobytes()
    return {"run_id": run_id, "logits": logits, "labelled": labelled,
            "student": json.loads((run / "distill.json").read_text())["models"]["student"]["version"],
            "gate": json.loads((run / "gate.json").read_text())["decision"]}


def _shards_run_by(c: stack.Cluster, worker: str, run_id: str) -> set[int]:
    return c.map_indexes_run_by(worker, run_id, "generate_soft_labels")


def test_shards_spread_over_two_celery_workers_give_the_same_night_as_the_local_executor(cluster):
    c = cluster
    for dag_id in (REFERENCE, NIGHTLY):
        assert c.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})[0] == 200
    # yesterday's partition in 4 shards; one CPU thread per teacher, so the logits are bit-identical
    conf = {"ds": DAYS[-1], "shard_rows": 100, "label_threads": 1, "dry_run": True}
    local = _night(c, REFERENCE, conf)
    celery = _night(c, NIGHTLY, conf)
    assert local["labelled"]["shards"] == celery["labelled"]["shards"] >= 4  # yesterday alone has 4 or more
    assert sorted(local["logits"]) == sorted(celery["logits"])
    assert all(local["logits"][k] == celery["logits"][k] for k in local["logits"]), "logits differ"
    assert local["student"] == celery["student"]
    assert local["gate"] == celery["gate"] and local["gate"] in ("promote", "hold")
    assert {r["threads"] for r in celery["labelled"]["runs"]} == {1}
    teacher, general = (_shards_run_by(c, w, celery["run_id"]) for w in ("worker-teacher", "worker-general"))
    assert teacher and general, f"shards ran on worker-teacher {teacher} and worker-general {general}"
    assert teacher | general == set(range(celery["labelled"]["shards"])) and not teacher & general
    assert not _shards_run_by(c, "worker-teacher", local["run_id"]) | _shards_run_by(c, "worker-general",
                                                                                    local["run_id"])
    for worker in ("worker-teacher", "worker-general"):  # each downloaded the teacher once, by its version
        cached = [p.name for p in (c.root / worker / "local" / "cache" / "teachers").iterdir()]
        assert cached == [celery["labelled"]["teacher_version"]], (worker, cached)


def test_the_object_store_secret_is_in_no_log_no_local_file_and_no_object(cluster):
    c = cluster
    assert any(c.root.rglob("*.log")), "the stack's logs must be there to be searched"
    local = [p for p in c.root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert local == []
    assert [p for p, _ in c.kd_home.walk_files() if SECRET.encode() in p.read_bytes()] == []
