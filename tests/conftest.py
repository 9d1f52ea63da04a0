"""Shared test setup: an isolated Airflow home and KD_HOME, real data sets, real PostgreSQL.

Airflow reads AIRFLOW_HOME when it is first imported, so it is set here, before any test module
imports airflow.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# one per session: processes a test spawns (which import this file again) share their parent's
_AIRFLOW_HOME = Path(os.environ.get("KD_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="kd-airflow-"))
os.environ["KD_TEST_AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("KD_HOME", str(_AIRFLOW_HOME / "kd_home_unused"))
if str(ROOT / "dags") not in sys.path:
    sys.path.insert(0, str(ROOT / "dags"))

PG_ADMIN_URI = os.environ.get("KD_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture
def kd_home(request, tmp_path, monkeypatch) -> Path:
    """A fresh KD_HOME for one test (in a test that asks for ``home`` or ``s3_home``, that home)."""
    for name in ("home", "s3_home"):
        if name in request.fixturenames:
            return request.getfixturevalue(name)
    home = tmp_path / "kd_home"
    monkeypatch.setenv("KD_HOME", str(home))
    monkeypatch.delenv("KD_WAREHOUSE", raising=False)
    return home


from benchmarks.s3_cas import BUCKET as S3_BUCKET  # noqa: E402

# the test server's credentials (moto accepts any)
S3_ENV = {"AWS_ACCESS_KEY_ID": "kd-test", "AWS_SECRET_ACCESS_KEY": "kd-test-secret", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """A real S3 API on 127.0.0.1 for the session (moto's server); its endpoint URL. The bucket
    ``kd-test`` exists; each test gets its own prefix."""
    from benchmarks.s3_cas import moto_server

    try:
        with moto_server(tmp_path_factory.mktemp("s3") / "moto.log") as endpoint:
            yield endpoint
    except RuntimeError as exc:
        pytest.fail(str(exc))


def use_s3(monkeypatch, endpoint: str, local: Path) -> None:
    """Point this process (and the processes it starts) at the test S3 server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KD_LOCAL_DIR", str(local))


def new_s3_home():
    """A fresh ``s3://kd-test/<unique prefix>/kd_home`` (after ``use_s3``: it binds the store it finds)."""
    import uuid

    from kd_tasks.storage.fs import S3Path

    return S3Path(f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}/kd_home")


def airflow_object_store_env(endpoint: str, secret: str) -> dict[str, str]:
    """The environment of Airflow processes that reach the home through the Airflow AWS connection
    ``kd_object_store`` only (its secret ``secret``)."""
    return {"KD_HOME_CONN_ID": "kd_object_store", "AIRFLOW_CONN_KD_OBJECT_STORE": json.dumps({
        "conn_type": "aws", "login": "kd-test", "password": secret,
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})}


@pytest.fixture
def s3_home(s3_endpoint, tmp_path, monkeypatch):
    """A fresh ``KD_HOME=s3://kd-test/<unique prefix>`` on the test S3 server."""
    use_s3(monkeypatch, s3_endpoint, tmp_path / "local")
    home = new_s3_home()
    monkeypatch.setenv("KD_HOME", str(home))
    monkeypatch.delenv("KD_WAREHOUSE", raising=False)
    return home


@pytest.fixture(params=["local", "s3"])
def home(request, tmp_path, monkeypatch):
    """``KD_HOME`` on local disk, then on the S3 server: storage tests run against both."""
    if request.param == "s3":
        return request.getfixturevalue("s3_home")
    home = tmp_path / "kd_home"
    monkeypatch.setenv("KD_HOME", str(home))
    monkeypatch.delenv("KD_WAREHOUSE", raising=False)
    return home


def put_tree(src: Path, dst) -> None:
    """Copy a local folder to a local path or an S3 location (test setup)."""
    from kd_tasks.storage.fs import is_remote

    if not is_remote(dst):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    for p in sorted(src.rglob("*")):
        if p.is_file():
            (dst / str(p.relative_to(src))).upload(p)


def local_files(home) -> list[str]:
    """Every file under a home, relative (local or S3)."""
    from kd_tasks.storage.fs import is_remote

    if is_remote(home):
        return sorted(str(p.relative_to(home)) for p, _ in home.walk_files())
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``$KD_DATASETS`` (set by the Makefile and .ci/run). Missing data fails the test, never skips it."""
    path = Path(os.environ.get("KD_DATASETS", ROOT.parent / "shared" / "datasets"))
    if not (path / "fashion_product_styles" / "styles.csv.gz").exists():
        pytest.fail(f"real data sets not found at {path}; set KD_DATASETS to the shared/datasets folder")
    return path


@pytest.fixture(scope="session")
def fashion_records(datasets_dir):
    from kd_tasks.loaders.catalogue import read_fashion_styles

    return read_fashion_styles(datasets_dir / "fashion_product_styles")


@pytest.fixture(scope="session")
def taobao_events(datasets_dir):
    """The real Taobao UserBehavior sample as event rows (84,440 after the documented drops)."""
    from kd_tasks.loaders.events import read_taobao

    rows, _ = read_taobao(datasets_dir / "taobao_userbehavior_sample" / "UserBehavior_head.csv.gz")
    return rows


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random BERT with MiniLM's tokenizer: the starting point of fast test teachers."""
    from kd_tasks.models.hf_text import create_tiny_base_model

    return create_tiny_base_model(tmp_path_factory.mktemp("tiny_base") / "model")


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the isolated Airflow metadata database once per session (for dag.test())."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True,
                   env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def pg_uri():
    """A throwaway database on the running PostgreSQL server, dropped after the session."""
    import psycopg2

    name = f"kd_test_{os.getpid()}"
    try:
        admin = psycopg2.connect(PG_ADMIN_URI)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URI} is not reachable ({exc}); start it with "
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    uri = PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{name}"
    yield uri
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
    admin.close()


MARIADB_ADMIN = os.environ.get("KD_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def mariadb_uri():
    """A throwaway database on the running MariaDB server (root, no password), dropped after the session."""
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(MARIADB_ADMIN)
    name = f"kd_test_{os.getpid()}"
    try:
        admin = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "",
                                autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB at {url.render_as_string(hide_password=True)} is not reachable ({exc}); start it "
                    "with: service mariadb start")
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name} character set utf8mb4")
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
    admin.close()


DS = "2024-01-10"
TINY_TEACHER_TRAIN = {"epochs": 6, "learning_rate": 3e-3, "max_rows": 2000, "patience": 6}
# Tiny test teachers lose to TF-IDF + LR, so the teacher gate marks them weak (tests of that assert it);
# the nightly runs that test other behaviour accept them, as an operator would with the Param.
ACCEPT_WEAK = {"accept_weak_teacher": True}


WAREHOUSE_ENGINES = ("sqlite", "postgresql", "mariadb")


def engine_uri(engine: str, request, tmp_path) -> str:
    """A warehouse URL on ``engine``: a SQLite file under ``tmp_path``, or the running PostgreSQL / MariaDB."""
    return f"sqlite:///{tmp_path / 'wh.db'}" if engine == "sqlite" else request.getfixturevalue(
        {"postgresql": "pg_uri", "mariadb": "mariadb_uri"}[engine])


@pytest.fixture
def fashion_warehouse(kd_home, fashion_records) -> str:
    """600 real fashion listings (masterCategory labels, every 4th unlabelled) over 3 days ending DS."""
    from kd_tasks.loaders import catalogue
    from kd_tasks.home import default_warehouse_uri

    rows = catalogue.catalogue_rows(fashion_records[:600], source="fashion", text_column="productDisplayName",
                                    label_column="masterCategory", id_column="id", end_date=DS, days=3)
    for r in rows[::4]:
        r["category"] = None
    uri = default_warehouse_uri()
    catalogue.load_products(uri, rows, replace=True)
    return uri


@pytest.fixture
def tiny_teacher(fashion_warehouse, tiny_base) -> dict:
    """A teacher fine-tuned from the tiny base on the fashion warehouse's gold rows (seconds)."""
    from kd_tasks.nightly import bootstrap, resolve_use_case

    return bootstrap(resolve_use_case("product_category"), DS, fashion_warehouse, base_model=str(tiny_base),
                     train=TINY_TEACHER_TRAIN)


def run_chain(ds: str = DS, run_id: str = "test_run", action: dict | None = None, **params) -> dict:
    """The nightly chain in-process, without Airflow (the same functions the DAG tasks call).

    ``action`` goes to the action choice (is_backfill, force_promote, force_reason, ...).
    """
    from kd_tasks import nightly
    from kd_tasks.home import default_warehouse_uri

    uc = nightly.resolve_use_case("product_category", {"extract_lookback_days": 3, **ACCEPT_WEAK, **params})
    extracted = nightly.extract(uc, ds, default_warehouse_uri())
    labelled = nightly.soft_labels(uc, ds, run_id)
    distilled = nightly.distill(uc, ds, labelled["run_dir"])
    evaluated = nightly.evaluate(uc, ds, distilled["run_dir"], params.get("dry_run", False), **(action or {}))
    if evaluated["action"] == "promote":
        nightly.promote(uc, ds, distilled["run_dir"], run_id, reason=evaluated["action_reason"])
    elif evaluated["action"] == "candidate":
        nightly.record_candidate(uc, ds, distilled["run_dir"], run_id, evaluated["action_reason"])
    else:
        nightly.hold(uc, evaluated["run_dir"], evaluated["reason"])
    report = nightly.write_report(uc, ds, run_id, evaluated["run_dir"])
    return {"extracted": extracted, "labelled": labelled, "distilled": distilled, "evaluated": evaluated,
            "report": report}
