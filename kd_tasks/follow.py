"""Run a long command with its full output in a log file and its progress on the terminal.

    python -m kd_tasks.follow --log var/logs/nightly.log -- airflow dags test kd_product_category_nightly 2024-01-10

``make demo`` runs ``airflow dags test`` this way: the log keeps every line, the terminal shows when
each task starts and ends (with its duration) and the pipeline's own progress lines (rows done,
rows/s, epochs and ETA, which the training and labelling loops log every 10-30 s), each prefixed
with the time since the command started. On failure the last lines of the log follow. The exit
status is the command's.
"""
from __future__ import annotations

import argparse
import collections
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, TextIO

# Airflow's dag.test() marks each task's start and end; the pipeline's loops log rows/s and ETA
_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_PROGRESS = re.compile(r"\bETA\b|\bepoch \d+/\d+|rows/s|teacher version|promot|\bgate\b|verdict|approval")
# dag.test() repeats this every second while a task waits for a person: shown once, with what to do
_WAITING = "Waiting for Human-in-the-loop input"
_WAITING_HINT = ("a task waits for a person's answer: answer it in the Airflow UI (Required Actions) of an "
                 "api-server on this metadata database, or stop this command and run the night again with "
                 "the Param approval=off (airflow dags test has no scheduler to apply the timeout)")
# a log line: Airflow's structlog form ("<time> [info     ] message [logger] key=value ...") or
# logging's ("<date> <time>,<ms> INFO logger: message")
_STRUCTLOG = re.compile(r"^\S+\s+\[(?P<level>\w+)\s*\]\s+(?P<message>.*?)(?:\s+\[(?P<logger>[\w.]+)\](?:\s.*)?)?$")
_LOGGING = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")
_NOISE = ("py.warnings",)  # library deprecation warnings: in the log, not on the terminal
_NOISE_MESSAGES = ("Could not import graphviz",)  # Airflow's, on every `airflow dags test`


def parse(line: str) -> tuple[str, str, str]:
    """(level, logger, message) of a log line; ("", "", line) for a line of neither form."""
    m = _STRUCTLOG.match(line) or _LOGGING.match(line)
    if not m:
        return "", "", line
    return m.group("level").lower(), m.group("logger") or "", m.group("message")


def progress_lines(lines: Iterable[str], clock: Callable[[], float] = time.monotonic) -> Iterable[str]:
    """The terminal's share of a command's output lines: task starts and ends (with durations),
    progress lines and warnings, shortened to their message."""
    started = clock()
    task_started: dict[str, float] = {}
    waiting = False
    for line in lines:
        line = line.rstrip("\n")
        now = clock()
        stamp = f"[{_clock(now - started)}]"
        if m := _START.search(line):
            task_started[m.group(1)] = now
            yield f"{stamp} {m.group(1)}: started"
            continue
        if m := _END.search(line):
            took = now - task_started.pop(m.group(1), now)
            yield f"{stamp} {m.group(1)}: finished in {_clock(took)}"
            continue
        level, logger, message = parse(line)
        if logger in _NOISE or message.startswith(_NOISE_MESSAGES):
            continue
        if message.startswith(_WAITING):
            if not waiting:
                yield f"{stamp}   {message[:240]}: {_WAITING_HINT}"
            waiting = True
            continue
        waiting = False
        if level in ("warning", "error", "critical") or (level and _PROGRESS.search(message)):
            yield f"{stamp}   {level.upper() + ': ' if level != 'info' else ''}{message[:240]}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def follow(command: list[str], log_path: Path, out: TextIO = sys.stdout, tail: int = 40) -> int:
    """Run ``command`` with stdout and stderr into ``log_path``, echo its progress to ``out``; its
    exit status (after the log's last ``tail`` lines on failure)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    last: collections.deque[str] = collections.deque(maxlen=tail)
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            bufsize=1) as proc:
        assert proc.stdout is not None

        def lines() -> Iterable[str]:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                last.append(line)
                yield line

        try:
            for shown in progress_lines(lines()):
                print(shown, file=out, flush=True)
        finally:  # stopped (Ctrl-C, a SIGTERM): the command stops too, never left running alone
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        status = proc.wait()
    if status:
        print(f"failed (exit status {status}); the last lines of {log_path}:", file=out)
        out.write("".join(last))
        out.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd_tasks.follow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True, type=Path, help="file that receives the command's whole output")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    signal.signal(signal.SIGTERM, _stop)
    return follow(command, args.log)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
