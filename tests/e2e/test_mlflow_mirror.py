"""The MLflow mirror against a real ``mlflow server`` (its own environment, .venv-mlflow) on a real
PostgreSQL backend: nights as runs, registered versions as pyfunc model versions, the production alias
where the registry has it, an outage during a promotion and the replay that catches up."""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PG_ADMIN_URI, ROOT, run_chain
from kd_tasks import cli, nightly
from kd_tasks.models import load_student
from kd_tasks.stages import mirror
from kd_tasks.storage import registry
from kd_tasks.storage.runs import RunDir

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVER = Path(os.environ.get("KD_MLFLOW_SERVER", ROOT / ".venv-mlflow" / "bin" / "mlflow"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1 with a PostgreSQL backend and artifacts under ``root``."""

    def __init__(self, backend: str, root: Path):
        self.backend, self.root, self.port, self.proc = backend, root, _free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not SERVER.exists():
            pytest.fail(f"{SERVER} is missing: `make install` builds the MLflow server's environment (.venv-mlflow)")
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(SERVER), "server", "--backend-store-uri", self.backend, "--artifacts-destination",
             (self.root / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(self.root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"mlflow server did not answer in 180 s: {(self.root / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(30)
        self.proc = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    import psycopg2

    name = f"kd_mlflow_{os.getpid()}"
    admin = psycopg2.connect(PG_ADMIN_URI)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    backend = PG_ADMIN_URI.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"
    server = Server(backend, tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
    admin.close()


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def test_nights_versions_and_the_alias_follow_the_registry_through_an_outage(kd_home, tiny_teacher, mlflow_server,
                                                                             monkeypatch, capsys):
    monkeypatch.setenv("KD_MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)  # for this test's own reads of artifacts
    uc = nightly.resolve_use_case("product_category")
    first = run_chain(run_id="night1")
    assert first["evaluated"]["action"] == "promote"
    out = nightly.mirror(uc, first["report"])
    v1 = registry.alias_version("product_category")
    assert out["production"] == v1 and out["versions"].keys() == {v1}

    client = _client(mlflow_server.url)
    exp = client.get_experiment_by_name("kd/product_category")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.kd_kind = 'night'")
    report = RunDir(Path(first["report"]).parent).read("report")
    ev = report["evaluation"]
    assert run.data.tags["kd_ds"] == report["ds"] and run.data.tags["kd_decision"] == report["gate"]["decision"]
    assert run.data.params["teacher_version"] == ev["teacher_version"]
    assert run.data.params["data_window"] == ",".join(ev["window"])
    for model in ("teacher", "student", "baseline"):
        assert run.data.metrics[f"{model}.macro_f1"] == pytest.approx(ev["models"][model]["macro_f1"])
    some_class, recall = next(iter(ev["models"]["teacher"]["per_class_recall"].items()))
    assert run.data.metrics[f"teacher.per_class_recall.{some_class}"] == pytest.approx(recall)
    for check in report["gate"]["checks"]:
        assert run.data.metrics[f"gate.{check['name']}.passed"] == float(check["passed"])
    assert run.data.metrics["timing.train_student_s"] > 0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.json", "report.txt"}

    (mv,) = client.search_model_versions("name = 'kd_product_category'")
    assert mv.tags["kd_version"] == v1 and mv.run_id == run.info.run_id
    manifest = registry.version_manifest("product_category", v1)
    assert mv.tags["teacher_version"] == manifest["teacher_version"] and mv.tags["sql_hash"] == manifest["sql_hash"]
    assert mv.tags["gate_decision"] == report["gate"]["decision"]
    assert client.get_model_version_by_alias("kd_product_category", "production").version == mv.version

    # the registered model serves through mlflow.pyfunc, as the registry's copy does
    import mlflow.pyfunc

    titles = ["Nike Men Blue T-shirt", "Puma Women Black Running Shoes", "Titan Men Silver Watch"]
    model = mlflow.pyfunc.load_model("models:/kd_product_category@production")
    served = model.predict(pd.DataFrame({uc.input_columns[0]: titles}))
    student = load_student(registry.version_dir("product_category", v1))
    assert list(served.columns) == student.label_names
    np.testing.assert_allclose(served.to_numpy(), student.logits(titles), rtol=1e-5, atol=1e-5)

    # an outage during the next promotion: the promotion stands, the mirror task fails (and retries)
    mlflow_server.stop()
    second = run_chain(run_id="night2", seed=1, action={"force_promote": True, "force_reason": "test outage"})
    v2 = registry.alias_version("product_category")
    assert second["evaluated"]["action"] == "promote" and v2 != v1
    started = time.monotonic()
    with pytest.raises(mirror.MirrorError, match="promotion stands"):
        nightly.mirror(uc, second["report"])
    assert time.monotonic() - started < 60, "an unreachable server fails the attempt in seconds, not minutes"
    assert registry.alias_version("product_category") == v2

    # MLflow back: the replay catches up (the second night, its version, the alias) and is idempotent
    mlflow_server.start()
    for _ in range(2):
        assert cli.main(["mlflow-sync", "--use-case", "product_category"]) == 0
        runs = client.search_runs([exp.experiment_id], filter_string="tags.kd_kind = 'night'")
        assert sorted(r.data.tags["kd_run_id"] for r in runs) == ["night1", "night2"]
        versions = {m.tags["kd_version"]: m.version for m in client.search_model_versions("name = 'kd_product_category'")}
        assert versions.keys() == {v1, v2}
        assert client.get_model_version_by_alias("kd_product_category", "production").version == versions[v2]

    # a rollback in the registry moves MLflow's alias at the next sync, never the other way round
    registry.rollback("product_category", v1, "test rollback")
    assert cli.main(["mlflow-sync", "--use-case", "product_category"]) == 0
    assert client.get_model_version_by_alias("kd_product_category", "production").version == versions[v1]

    # the same replay into another store (a SQLite file), and the switch that turns the mirror off
    assert "MLFLOW_TRACKING_URI" in os.environ and os.environ["MLFLOW_TRACKING_URI"] == mlflow_server.url
    db = kd_home / "elsewhere" / "mlflow.db"
    assert cli.main(["mlflow-sync", "--use-case", "product_category", "--tracking-uri", f"sqlite:///{db}"]) == 0
    assert f"mlflow ui --backend-store-uri sqlite:///{db}" in capsys.readouterr().out
    local = _client(f"sqlite:///{db}")
    assert {m.tags["kd_version"] for m in local.search_model_versions("name = 'kd_product_category'")} == {v1, v2}
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_server.url  # the mirror leaves the process's settings alone
    monkeypatch.setenv("KD_MLFLOW_TRACKING_URI", "off")
    assert nightly.mirror(uc, second["report"]) == {"off": True}
