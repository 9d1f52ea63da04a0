"""What the families a use case declares mean in code: how rows become model inputs, which class
builds or loads a student, which loss and which metrics a task uses.

The stages look families and tasks up here by the names the use case declares; none of them asks
which use case it is running.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import files
from .config import UseCase


def _texts(table: Any, columns: Sequence[str]) -> list[str]:
    if len(columns) != 1:
        raise ValueError(f"a text model reads exactly one column, got {list(columns)}")
    return [str(t) if t is not None else "" for t in table.column(columns[0]).to_pylist()]


def _matrix(table: Any, columns: Sequence[str]) -> np.ndarray:
    from .tabular import as_matrix

    return as_matrix(table, columns)


# family -> how a pyarrow table's columns become that family's inputs
INPUT_READERS: dict[str, Callable[[Any, Sequence[str]], Any]] = {
    "hashed_ngram_mlp": _texts, "hf_sequence_classifier": _texts, "tabular_mlp": _matrix,
}


def student_inputs(use_case: UseCase, table: Any) -> Any:
    """Serving-time inputs: what the student sees, in training and in production."""
    return INPUT_READERS[use_case.student_family](table, use_case.input_columns)


def teacher_inputs(use_case: UseCase, table: Any) -> Any:
    """Serving-time plus privileged inputs: what the teacher sees when it writes soft labels."""
    return INPUT_READERS[use_case.teacher_family](table, use_case.teacher_columns)


def take(inputs: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a list of texts or of a feature matrix."""
    return inputs[idx] if isinstance(inputs, np.ndarray) else [inputs[i] for i in idx]


def student_class(family: str) -> Any:
    from .student import Student
    from .tabular import TabularStudent

    classes = {"hashed_ngram_mlp": Student, "tabular_mlp": TabularStudent}
    if family not in classes:
        raise ValueError(f"student family {family!r} is unknown; known: {sorted(classes)}")
    return classes[family]


def new_student(use_case: UseCase, label_names: Sequence[str], size: str, inputs: Any) -> Any:
    """A fresh student of the use case's family (a tabular one fits its input scaling on ``inputs``)."""
    return student_class(use_case.student_family).create(label_names, size, inputs, use_case.input_columns)


def load_student(directory: str | Path) -> Any:
    """Load a saved student of any family (its ``student.json`` names the family)."""
    directory = Path(directory)
    cfg_path = directory / "student.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory} is not a student directory (needs student.json and its weights)")
    cfg = files.read_json(cfg_path, "student config", "retrain or restore this student")
    family = cfg.get("family", "hashed_ngram_mlp") if isinstance(cfg, dict) else None
    return student_class(family).load(directory)


def label_names_for(use_case: UseCase, labels: Sequence[Any]) -> list[str]:
    """The output names of a teacher: the gold label set (multiclass) or the one positive label (binary)."""
    if use_case.task == "binary":
        return [use_case.label_column]
    return sorted({str(v) for v in labels if v is not None})


def train_teacher(use_case: UseCase, table: Any, target: Path, base_model: str | None, config: Any,
                  provenance: dict[str, Any]) -> dict[str, Any]:
    """Train the use case's teacher family on ``table`` (gold-labelled, held-out rows removed) into
    ``target``, atomically. Returns the teacher manifest."""
    from dataclasses import asdict

    from .teacher import bootstrap_teacher, publish_teacher

    labels = table.column(use_case.label_column).to_pylist()
    if use_case.teacher_family == "hf_sequence_classifier":
        return bootstrap_teacher(teacher_inputs(use_case, table), [str(v) for v in labels], target,
                                 base_model=base_model, config=config, provenance=provenance)
    from .tabular import train_tabular_teacher

    x, y = teacher_inputs(use_case, table), np.array([int(v) for v in labels], dtype=np.int64)

    def write(tmp: Path) -> dict[str, Any]:
        fields = train_tabular_teacher(x, y, use_case.teacher_columns, label_names_for(use_case, labels), tmp, config)
        return {**fields, "train_config": asdict(config), "provenance": provenance}

    return publish_teacher(target, write)
