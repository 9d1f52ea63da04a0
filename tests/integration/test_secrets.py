"""A warehouse password never reaches output, logs, reports or files: loads and extraction through a
URL that carries a password, and a whole night (`airflow dags test`) through an Airflow connection
(its hook's SQLAlchemy engine), against the real PostgreSQL."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ACCEPT_WEAK, DS, ROOT

PASSWORD = "Pw-9f3Kq2-never-shown"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _with_password(uri: str) -> str:
    # PostgreSQL here trusts loopback connections: the password travels but is not needed to log in
    return uri.replace("postgresql://", f"postgresql://postgres:{PASSWORD}@", 1)


def _files_containing(root: Path, secret: str) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and secret.encode() in p.read_bytes():
            hits.append(str(p))
    return hits


@pytest.mark.postgres
@pytest.mark.slow
def test_the_password_is_in_no_output_log_report_or_file(airflow_db, pg_uri, tiny_teacher, kd_home, tmp_path,
                                                         datasets_dir):
    uri = _with_password(pg_uri)
    env = {**os.environ, "KD_WAREHOUSE": uri}
    outputs = []
    fashion = datasets_dir / "fashion_product_styles"
    for args in (["load-fashion", "--folder", str(fashion), "--label", "masterCategory", "--limit", "600",
                  "--end-date", DS, "--days", "3", "--replace"],
                 ["--warehouse", uri, "load-fashion", "--folder", str(fashion), "--label", "masterCategory",
                  "--limit", "600", "--end-date", DS, "--days", "3"],
                 ["--warehouse", uri.replace("postgresql://", "mongodb://"), "seed-demo"],
                 ["--warehouse", f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:3306/test", "seed-demo"]):
        out = subprocess.run([sys.executable, "-m", "kd_tasks.cli", *args], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        outputs.append(out.stdout + out.stderr)
    assert "loaded 600 fashion products" in outputs[0] and "postgresql://postgres:***@" in outputs[0]
    assert "error: warehouse 'mongodb://postgres:***@" in outputs[2]
    assert "error: " in outputs[3] and "Access denied for user 'root'" in outputs[3]  # MariaDB refused the password

    # the night reads the warehouse through an Airflow connection: PostgresHook builds the engine
    env = {**os.environ, "AIRFLOW_CONN_KD_WAREHOUSE_PG": uri}
    night = subprocess.run([AIRFLOW, "dags", "test", "kd_product_category_nightly", DS, "-c",
                            json.dumps({"extract_lookback_days": 3, "warehouse_conn_id": "kd_warehouse_pg", **ACCEPT_WEAK})],
                           env=env, capture_output=True, text=True, timeout=600)
    outputs.append(night.stdout + night.stderr)
    assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
    assert "promote_student" in outputs[-1]
    reports = list((kd_home / "runs" / "product_category").glob("*/report.json"))
    assert len(reports) == 1

    from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
    from kd_tasks.stages.extract import EmptyPartitionError, extract_partition

    with pytest.raises(EmptyPartitionError) as empty:  # an error that names the warehouse
        extract_partition(PRODUCT_CATEGORY, "2023-05-01", uri)
    outputs.append(str(empty.value))
    assert "no rows for product_category in window 2023-05-01..2023-05-01 (postgresql://postgres:***@" in outputs[-1]

    assert [i for i, o in enumerate(outputs) if PASSWORD in o] == []
    assert _files_containing(kd_home, PASSWORD) == []
    assert _files_containing(Path(os.environ["AIRFLOW_HOME"]), PASSWORD) == []
