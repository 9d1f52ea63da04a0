"""A run's directory, ``runs/<use_case>/<run_id>/``: the one place that knows its files.

Each nightly task writes its facts here and the next task reads them back; XCom carries only the
directory (and the gate's branch decision), so a task retried or cleared alone finds what its
predecessors wrote. A missing or damaged file names the task to clear.

    soft_label_plan.json plan_soft_labels: the (day, shard) pieces of the window and their labelling
    soft_labels.json   collect_soft_labels: days labelled, reused, healed; the labelling; where each shard ran
    distill.json       distill_student: window, config, trained model versions, the champion read
    student/ baseline/ distill_student: the KD student and the no-distillation baseline
    evaluation.json    evaluate_student: every model's metrics on the held-out slice
    gate.json          evaluate_student: every gate check, the decision and the action
    outcome.json       promote_student / record_candidate / hold_student
    report.json        write_report: all of the above in one file
    report.html        write_report: the same as a page with plots (stages.html_report)
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from .. import names
from ..home import kd_home
from . import files
from .fs import AnyPath, as_path

# fact -> (file name, the task that writes it)
FILES = {
    "soft_label_plan": ("soft_label_plan.json", "plan_soft_labels"),
    "soft_labels": ("soft_labels.json", "collect_soft_labels"),
    "distill": ("distill.json", "distill_student"),
    "evaluation": ("evaluation.json", "evaluate_student"),
    "gate": ("gate.json", "evaluate_student"),
    "outcome": ("outcome.json", "promote_student / record_candidate / hold_student"),
    "report": ("report.json", "write_report"),
}
MODELS = ("student", "baseline")


def runs_dir(use_case: str, home: AnyPath | None = None) -> AnyPath:
    return names.child((home or kd_home()) / "runs", names.use_case_name(use_case))


class RunDir:
    """Typed access to one run's directory."""

    def __init__(self, path: str | AnyPath):
        self.path = as_path(path)

    @classmethod
    def create(cls, use_case: str, run_id: str, home: AnyPath | None = None) -> "RunDir":
        """The directory of ``run_id`` (made safe as a folder name), created if needed."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).lstrip(".") or "_"
        path = names.child(runs_dir(use_case, home), safe)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def __str__(self) -> str:
        return str(self.path)

    def model_dir(self, name: str) -> AnyPath:
        if name not in MODELS:
            raise ValueError(f"a run directory holds the models {MODELS}, not {name!r}")
        return self.path / name

    def file(self, fact: str) -> AnyPath:
        return self.path / FILES[fact][0]

    def write(self, fact: str, value: Any) -> AnyPath:
        return files.write_json(self.file(fact), value)

    def read(self, fact: str) -> Any:
        """A fact of the run; missing or damaged: an ``IntegrityError`` that names the task to clear."""
        task = FILES[fact][1]
        return files.read_json(self.file(fact), "run file", f"clear the {task} task of this run so it writes it again")


def reports(use_case: str, home: AnyPath | None = None) -> Iterator[AnyPath]:
    """Every run's ``report.json`` of ``use_case``, oldest first."""
    base = runs_dir(use_case, home)
    yield from sorted(base.glob(f"*/{FILES['report'][0]}"), key=lambda p: p.stat().st_mtime)
