"""``make demo``'s terminal: a long command's whole output goes to its log file, the terminal gets the
task starts and ends and the pipeline's progress lines (with ETA), and a failure shows the log's end."""
import io
import os
import sys

from kd_tasks.follow import follow, progress_lines

AIRFLOW_OUTPUT = [  # as `airflow dags test` prints them (structlog), and as the pipeline's loggers do
    "2026-11-30T04:40:15.155347Z [info     ] DAG bundles loaded: dags-folder [airflow.dag_processing] loc=manager.py:304",
    "2026-11-30T04:40:35.540594Z [info     ] [DAG TEST] starting task_id=fine_tune map_index=-1 [airflow.sdk] loc=dag.py:1501",
    "2026-11-30T04:40:45.000000Z [info     ] teacher epoch 1/4: 2240/9000 rows of this block, 63 rows/s, ETA 107 s "
    "[kd_tasks.models.training] loc=training.py:200",
    "2026-11-30T04:40:46.000000Z [warning  ] GitWildMatchPattern is deprecated [py.warnings] category=DeprecationWarning",
    "2026-11-30 04:35:18,527 INFO kd_tasks.models.runtime: soft labels ds=2024-01-10 shard 0: 2240/8000 rows "
    "(222 rows/s, ETA 35 s)",
    "2026-11-30T04:41:00.000000Z [info     ] Filling up the DagBag [airflow.dag_processing.dagbag] loc=dagbag.py:460",
    "2026-11-30T04:41:35.540594Z [info     ] [DAG TEST] end task task_id=fine_tune map_index=-1 [airflow.sdk] loc=dag.py:1563",
    "2026-11-30T04:41:36.000000Z [error    ] Task failed with exception [task] loc=task_runner.py:1676",
]


def test_the_terminal_shows_tasks_progress_and_errors_only():
    ticks = iter(range(0, 1000, 5))
    shown = list(progress_lines(AIRFLOW_OUTPUT, clock=lambda: next(ticks)))
    assert shown == [
        "[0:10] fine_tune: started",  # a line every 5 s of the clock
        "[0:15]   teacher epoch 1/4: 2240/9000 rows of this block, 63 rows/s, ETA 107 s",
        "[0:25]   soft labels ds=2024-01-10 shard 0: 2240/8000 rows (222 rows/s, ETA 35 s)",
        "[0:35] fine_tune: finished in 0:25",
        "[0:40]   ERROR: Task failed with exception",
    ]



def test_a_task_waiting_for_a_person_is_shown_once_with_what_to_do():
    wait = ("2026-11-30T04:42:0{}.000000Z [info     ] Waiting for Human-in-the-loop input for tasks: "
            "['approve_promotion'] [airflow.sdk.definitions.dag] loc=dag.py:1418")
    shown = list(progress_lines([wait.format(i) for i in range(5)], clock=lambda: 0))
    assert len(shown) == 1 and "['approve_promotion']" in shown[0]
    assert "Required Actions" in shown[0] and "approval=off" in shown[0]


def test_the_log_keeps_everything_and_a_failure_shows_its_end(tmp_path):
    script = ("import sys\n" + "".join(f"print({line!r})\n" for line in AIRFLOW_OUTPUT)
              + "print('ValueError: no teacher yet; run kd_teacher_bootstrap first')\nsys.exit(3)\n")
    out = io.StringIO()
    log = tmp_path / "logs" / "night.log"
    assert follow([sys.executable, "-c", script], log, out=out, tail=2) == 3
    assert log.read_text().splitlines() == AIRFLOW_OUTPUT + ["ValueError: no teacher yet; run kd_teacher_bootstrap first"]
    terminal = out.getvalue().splitlines()
    assert "fine_tune: started" in terminal[0] and "ETA 107 s" in terminal[1]
    assert terminal[-3] == f"failed (exit status 3); the last lines of {log}:"
    assert terminal[-1] == "ValueError: no teacher yet; run kd_teacher_bootstrap first"
    assert not any("DagBag" in line or "GitWildMatch" in line for line in terminal)


def test_stopping_it_stops_the_command(tmp_path):
    """A SIGTERM to the follower (a stopped ``make demo``) ends the command too: nothing keeps running."""
    import signal
    import subprocess
    import time

    marker = tmp_path / "child.pid"
    script = f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\nprint('started', flush=True)\ntime.sleep(120)\n"
    follower = subprocess.Popen([sys.executable, "-m", "kd_tasks.follow", "--log", str(tmp_path / "x.log"), "--",
                                 sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.1)
    child = int(marker.read_text())
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while True:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the command outlived its follower"
        time.sleep(0.1)
