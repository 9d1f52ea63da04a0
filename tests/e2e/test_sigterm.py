"""`airflow dags test` and the tasks stop within 10 s of SIGTERM: Airflow's timeouts, a task marked
failed in the UI and worker shutdowns all rely on it. Real `airflow dags test` processes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DS

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _run_until(args, marker, log_path, timeout=240):
    """Start ``airflow dags test ...`` and wait until its output contains ``marker``."""
    log = open(log_path, "w")
    proc = subprocess.Popen([AIRFLOW, "dags", "test", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=os.environ.copy(), start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker in Path(log_path).read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"never saw {marker!r}; output:\n{Path(log_path).read_text(errors='replace')[-3000:]}")


def _seconds_to_stop(proc):
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return 99.0
    return time.time() - started


@pytest.mark.slow
def test_sigterm_stops_teacher_fine_tuning(airflow_db, fashion_warehouse, tiny_base, kd_home, tmp_path):
    conf = f'{{"base_model": "{tiny_base}", "epochs": 50, "max_rows": 2000}}'
    proc = _run_until(["kd_teacher_bootstrap", DS, "-c", conf], "teacher epoch 1/50", tmp_path / "boot.log")
    took = _seconds_to_stop(proc)
    assert took < 10, f"dags test ran on for {took:.0f}s after SIGTERM"
    assert not (kd_home / "teachers" / "product_category").exists(), "no teacher may be published"
    assert not [p for p in (kd_home / "teachers").glob(".*")], "no half-written teacher may be left"


@pytest.mark.slow
def test_sigterm_stops_a_run_waiting_for_a_retry(airflow_db, fashion_warehouse, kd_home, tmp_path):
    # an empty window fails extract_products; the DAG retries it 5 minutes later
    proc = _run_until(["kd_product_category_nightly", "2023-05-01"], "up_for_retry", tmp_path / "nightly.log")
    took = _seconds_to_stop(proc)
    assert took < 10, f"dags test waited on for {took:.0f}s after SIGTERM"
