"""A real Airflow in its production shape, for the tests and benchmarks that need one: the api-server,
dag-processor, scheduler and triggerer as processes, metadata in a database of its own on PostgreSQL, the
CeleryExecutor (LocalExecutor beside it) with a Redis broker, ``airflow celery worker`` processes
on named queues, the ``kd_heavy`` pool. Every process is stopped by its process group at the end.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

from kd_tasks.storage.fs import AnyPath, as_path

AIRFLOW = str(Path(sys.executable).parent / "airflow")
ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URI = os.environ.get("KD_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flush_broker(db: int) -> None:
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()


def finished(runs: list[dict], n: int) -> list[dict] | None:
    """The successful runs once there are ``n``; a failed run raises."""
    failed = [r for r in runs if r["state"] == "failed"]
    if failed:
        raise AssertionError(f"runs failed: {[(r['dag_run_id'], r['logical_date']) for r in failed]}")
    done = [r for r in runs if r["state"] == "success"]
    return done if len(done) >= n else None


class Cluster:
    def __init__(self, root: Path, env: dict[str, str], port: int):
        self.root, self.env, self.port = root, env, port
        self.procs: list[subprocess.Popen] = []
        self.kd_home = as_path(env["KD_HOME"])  # a local folder or an object-store location
        self._token = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=180)
        if check and out.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
        return out

    def start(self, *args: str, name: str | None = None, env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name or args[0]}.log", "w")
        self.procs.append(subprocess.Popen([AIRFLOW, *args], env={**self.env, **(env or {})}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.time() + 30
        for p in self.procs:
            try:
                p.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)

    def token(self) -> str:
        """This stack's API token (the simple auth manager's, fetched once)."""
        if self._token is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/auth/token", timeout=10) as r:
                self._token = json.loads(r.read())["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token()}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def page(self, url: str, token: str | None = None) -> tuple[int, str]:
        """GET a page of the api-server (a plugin's, say) with this stack's API token, or ``token``."""
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token or self.token()}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 240, every: float = 3) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{' '.join(p.args[1:3])} exited with {p.returncode} while waiting for "
                                         f"{what}; see the logs in {self.root}")
            try:
                value = check()
            except (urllib.error.URLError, ConnectionError, OSError):
                value = None
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {self.root}")

    def runs(self, dag_id: str) -> list[dict]:
        status, body = self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")
        assert status == 200, body
        return body["dag_runs"]

    def trigger(self, dag_id: str, conf: dict, timeout: float = 420, wait: bool = True) -> str:
        """Trigger ``dag_id`` with ``conf`` and (``wait``) wait for its run to succeed; returns the run id."""
        status, body = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        assert status == 200, body
        run_id = body["dag_run_id"]
        if wait:
            self.wait_run(dag_id, run_id, timeout)
        return run_id

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 420) -> dict:
        """Wait for the run ``run_id`` of ``dag_id`` to succeed; returns it."""
        return self.wait(f"{dag_id} run {run_id}",
                         lambda: finished([r for r in self.runs(dag_id) if r["dag_run_id"] == run_id], 1),
                         timeout=timeout)[0]

    def map_indexes_run_by(self, worker: str, run_id: str, task_id: str) -> set[int]:
        """Map indexes of ``task_id`` of ``run_id`` that the Celery worker ``worker`` executed (its log)."""
        lines = (self.root / f"{worker}.log").read_text().splitlines()
        return {int(m) for line in lines if "Executing workload" in line and task_id in line
                and run_id in line for m in re.findall(r"map_index=(\d+)", line)}

    def task_instances(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        status, body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?task_id={task_id}&limit=1000")
        assert status == 200, body
        return body["task_instances"]


def fresh_database(name: str) -> str:
    """An empty PostgreSQL database ``name`` (dropped first if it exists); returns its URL."""
    import psycopg2

    admin = psycopg2.connect(PG_ADMIN_URI)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
        cur.execute(f"create database {name}")
    admin.close()
    return PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{name}"


def create_database(name: str) -> str:
    """A fresh database ``name`` for the Airflow metadata; returns its SQLAlchemy URL (psycopg2)."""
    return fresh_database(name).replace("postgresql://", "postgresql+psycopg2://", 1)


def drop_database(name: str) -> None:
    import psycopg2

    admin = psycopg2.connect(PG_ADMIN_URI)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
    admin.close()


def cluster(root: Path, kd_home: AnyPath, metadata: str, redis_db: int, extra_dags: dict[str, str] | None = None,
            parallelism: int = 2, quick: bool = True) -> Cluster:
    """A stack's environment (not started): the project's DAG files (plus ``extra_dags``, file name ->
    source) in a folder of its own, Airflow home under ``root``. ``quick``: the scheduler's heartbeat
    every 2 s and the DAG folder rescanned every 5 s (tests that add runs and files as they go);
    otherwise Airflow's defaults, as a deployment runs (benchmarks)."""
    port = free_port()
    dags = root / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "dags").glob("*.py"):
        (dags / f.name).write_text(f.read_text())
    for name, source in (extra_dags or {}).items():
        (dags / name).write_text(source)
    env = {**os.environ,
           "AIRFLOW_HOME": str(root / "airflow"), "KD_HOME": str(kd_home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
           "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor,LocalExecutor",
           "AIRFLOW__CORE__PARALLELISM": str(parallelism),
           "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
           "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),  # the night reports' pages
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    if quick:
        env.update({"AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"})
    env.pop("KD_WAREHOUSE", None)
    return Cluster(root, env, port)


def start(c: Cluster, workers: Sequence[tuple[str, str]], dag_ids: Sequence[str], pool_slots: int = 2,
          own_local_dirs: bool = False) -> None:
    """Migrate the metadata, create the ``kd_heavy`` pool, start the control plane and one Celery worker
    per (name, queues) with one task at a time, and wait until ``dag_ids`` are parsed.
    ``own_local_dirs``: each worker gets a ``KD_LOCAL_DIR`` of its own (its cache), as on a machine of its
    own beside an object-store home."""
    c.cli("db", "migrate")
    c.cli("pools", "set", "kd_heavy", str(pool_slots), "teacher inference, training, latency measurement")
    c.start("api-server", "--port", str(c.port))
    c.start("dag-processor")
    c.start("scheduler")
    c.start("triggerer")  # deferred tasks and deadline-alert callbacks (approvals wait without it on 3.3)
    for name, queues in workers:
        c.start("celery", "worker", "--queues", queues, "--concurrency", "1", "--celery-hostname",
                f"{name}@%h", name=name, env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                                              **({"KD_LOCAL_DIR": str(c.root / name / "local")}
                                                 if own_local_dirs else {})})
    c.wait("the API server", lambda: c.api("GET", "/monitor/health")[0] == 200, timeout=120)
    for dag_id in dag_ids:
        c.wait(f"{dag_id} to be parsed", lambda d=dag_id: c.api("GET", f"/dags/{d}")[0] == 200, timeout=120)
