"""Model families: one file per family beside this table, which names for each family its input
reader, its student and teacher classes, its sizes and the tasks it supports.

A use case names its student and teacher family; the stages look them up here and never ask which
family they hold. The table itself imports no torch (DAG files read it when they are parsed): a
family's module is imported when one of its models is built or loaded.

Adding a family: a file in this folder with its model classes (a student subclasses
``base.SavedStudent``; a teacher has ``load``, ``train``, ``logits``, ``num_parameters`` and
``bytes_on_disk``) and one row in ``FAMILIES``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..names import ConfigError


# how many input columns a reader of models.inputs takes (matrix: any number >= 1)
READER_COLUMNS = {"text": 1, "pairs": 2}


@dataclass(frozen=True)
class Family:
    name: str
    inputs: str  # a reader in models.inputs.READERS: "text" (one column), "pairs" (query, text) or "matrix"
    tasks: tuple[str, ...]  # the tasks (kd_tasks.tasks) whose outputs it can produce
    student: str = ""  # "module:Class" of its student, if it has one
    teacher: str = ""  # "module:Class" of its teacher, if it has one
    sizes: Mapping[str, Any] = field(default_factory=dict)  # student size name -> the family's shape parameters
    teacher_files: tuple[str, ...] = ()  # files that can hold a teacher's weights (one must exist)
    # cheap models (models.baselines.BASELINES) a new teacher of this family must beat on validation,
    # trained on its inputs; the use case's student family trained on gold alone is always one more
    baselines: tuple[str, ...] = ()
    members: tuple[str, ...] = ()  # an ensemble teacher's member families (models.ensemble)
    vectors: bool = False  # a two-tower student: query and candidate vectors (the infonce_kd loss term)
    exportable: bool = False  # its students export for serving (stages.export; the export DAG)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("hashed_ngram_mlp", inputs="text", tasks=("multiclass",),
           student="kd_tasks.models.hashed_ngram:HashedNgramStudent",
           # hash buckets, embedding dim, hidden units
           sizes={"small": (1 << 14, 32, 64), "base": (1 << 15, 48, 128), "large": (1 << 16, 64, 256)},
           exportable=True),
    Family("tabular_mlp", inputs="matrix", tasks=("binary",),
           student="kd_tasks.models.tabular:TabularStudent", teacher="kd_tasks.models.tabular:TabularTeacher",
           sizes={"small": (16,), "base": (32, 16), "large": (64, 32)},  # student hidden layers
           teacher_files=("teacher.safetensors",), baselines=("boosted_trees",)),
    Family("hf_sequence_classifier", inputs="text", tasks=("multiclass",),
           teacher="kd_tasks.models.hf_text:HFTeacher", teacher_files=("model.safetensors", "pytorch_model.bin"),
           baselines=("tfidf_lr",)),
    # a student cut from the fine-tuned MiniLM teacher: its embeddings and 2, 3 or 4 of its 6 layers
    Family("teacher_layers_transformer", inputs="text", tasks=("multiclass",),
           student="kd_tasks.models.small_transformer:TeacherLayersStudent",
           sizes={"small": 2, "base": 3, "large": 4}),
    Family("tfidf_lr", inputs="text", tasks=("multiclass",), teacher="kd_tasks.models.tfidf:TfidfTeacher",
           teacher_files=("tfidf_lr.pkl",)),
    # the fine-tuned MiniLM and TF-IDF + LR, calibrated and weighed on the validation rows
    Family("minilm_tfidf_ensemble", inputs="text", tasks=("multiclass",),
           teacher="kd_tasks.models.ensemble:EnsembleTeacher", teacher_files=("ensemble.json",),
           baselines=("tfidf_lr",), members=("hf_sequence_classifier", "tfidf_lr")),
    # ranking: a MiniLM cross-encoder reads query and product together (one pass per pair) ...
    Family("hf_cross_encoder", inputs="pairs", tasks=("ranking",),
           teacher="kd_tasks.models.cross_encoder:CrossEncoderTeacher",
           teacher_files=("model.safetensors", "pytorch_model.bin"), baselines=("bm25",)),
    # ... distilled into two hashed n-gram towers (product vectors computed offline: a query costs one
    # small encoder pass and dot products) ...
    Family("two_tower", inputs="pairs", tasks=("ranking",), student="kd_tasks.models.two_tower:TwoTowerStudent",
           # hash buckets, embedding dim, hidden units, vector dim
           sizes={"small": (1 << 14, 32, 64, 32), "base": (1 << 15, 64, 128, 64), "large": (1 << 16, 96, 256, 96)},
           vectors=True, exportable=True),
    # ... or into a pair scorer for re-ranking: n-grams of query and title and what they share
    Family("pair_ngram", inputs="pairs", tasks=("ranking",), student="kd_tasks.models.pair_ngram:PairStudent",
           sizes={"small": (1 << 14, 32, 64), "base": (1 << 15, 48, 128), "large": (1 << 16, 64, 256)}),
)}


def family(name: str, role: str | None = None) -> Family:
    """The family ``name``; with ``role`` ("student" or "teacher"), one that has a model of that role."""
    known = sorted(n for n, f in FAMILIES.items() if role is None or getattr(f, role))
    if name not in known:
        what = f"{role} family" if role else "model family"
        raise ConfigError(f"{what} {name!r} is unknown; choose one of {known}")
    return FAMILIES[name]


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def student_class(name: str) -> Any:
    return _load(family(name, "student").student)


def teacher_class(name: str) -> Any:
    return _load(family(name, "teacher").teacher)


def read_inputs(family_name: str, table: Any, columns: Sequence[str]) -> Any:
    """A pyarrow table's ``columns`` as the inputs of the family's models."""
    from .inputs import READERS

    return READERS[family(family_name).inputs](table, columns)


def student_inputs(use_case: Any, table: Any) -> Any:
    """Serving-time inputs: what the student sees, in training and in production."""
    return read_inputs(use_case.student_family, table, use_case.input_columns)


def teacher_inputs(use_case: Any, table: Any) -> Any:
    """Serving-time plus privileged inputs: what the teacher sees when it writes soft labels."""
    return read_inputs(use_case.teacher_family, table, use_case.teacher_columns)


def new_student(use_case: Any, label_names: Sequence[str], size: str, inputs: Any) -> Any:
    """A fresh student of the use case's family (a tabular one fits its input scaling on ``inputs``)."""
    return student_class(use_case.student_family).create(label_names, size, inputs, use_case.input_columns)


def load_student(directory: str | Path) -> Any:
    """Load a saved student of any family (its ``student.json`` names the family)."""
    from .base import DEFAULT_FAMILY, read_config

    from ..storage.files import local_copy

    directory = local_copy(directory, "model", "clear the task that wrote it, or roll back to a sound version")
    cfg = read_config(directory)
    return student_class(cfg.get("family", DEFAULT_FAMILY)).load(directory)


def warm_startable(use_case: Any, directory: str | Path, label_names: Sequence[str], size: str) -> bool:
    """Whether the student saved in ``directory`` can seed a fresh student of the use case (same family,
    outputs, size and inputs), judged on its saved config."""
    from ..storage.files import local_copy
    from .base import read_config

    directory = local_copy(directory, "model", "roll back to a sound version")
    cls = student_class(use_case.student_family)
    return cls.warm_startable(read_config(directory), cls.config_for(label_names, size, use_case.input_columns))


def load_teacher(path: str | Path) -> Any:
    """Load and verify a teacher directory of any family; every failure says how to get a usable teacher."""
    from ..storage.teachers import FIX_TEACHER, TeacherError, local_teacher, verified_manifest

    path = local_teacher(path)
    manifest = verified_manifest(path, {name: f.teacher_files for name, f in FAMILIES.items() if f.teacher})
    try:
        return teacher_class(manifest["family"]).load(path, manifest["version"], manifest)
    except TeacherError:
        raise
    except Exception as exc:  # torch / transformers / safetensors raise many types for broken files
        raise TeacherError(f"teacher at {path} could not be loaded ({type(exc).__name__}: {exc}); "
                           f"{FIX_TEACHER}") from exc


def train_teacher(use_case: Any, table: Any, target: Path, base_model: str | None, config: Any,
                  provenance: dict[str, Any], validation: Any = None) -> dict[str, Any]:
    """Train the use case's teacher family on ``table`` (gold-labelled, held-out rows removed) into the
    new folder ``target`` (a scratch folder: the bootstrap publishes it once the teacher gate has judged
    it), validated after every epoch on ``validation`` (a table of other gold rows, or None). Every
    label of either table is an output. Returns the teacher manifest."""
    from ..storage.teachers import build_teacher
    from ..tasks import NO_LABEL, get_task
    from .training import Validation

    task = get_task(use_case.task)
    labels = table.column(use_case.label_column).to_pylist()
    val_labels = [] if validation is None else validation.column(use_case.label_column).to_pylist()
    label_names = task.output_names(use_case.label_column, labels + val_labels)
    gold = task.gold_index(labels, label_names)
    if (gold == NO_LABEL).any():
        bad = sorted({str(v) for v, g in zip(labels, gold) if g == NO_LABEL})
        raise ValueError(f"gold labels {bad[:5]} are not valid for a {task.name} task; fix the labels in the warehouse")
    inputs = teacher_inputs(use_case, table)
    check = None if validation is None else Validation(
        teacher_inputs(use_case, validation), val_labels, label_names, use_case.task, use_case.gate.metric,
        validation.column(use_case.group_column).to_pylist() if use_case.group_column else None)
    train = teacher_class(use_case.teacher_family).train
    declared = family(use_case.teacher_family)
    ensemble = {"members": declared.members, "family_name": declared.name} if declared.members else {}

    def write(tmp: Path) -> dict[str, Any]:
        fields = train(inputs, gold, label_names, use_case.teacher_columns, tmp, base_model, config, check,
                       **ensemble)
        return {**fields, "provenance": provenance}

    Path(target).mkdir(parents=True, exist_ok=False)
    return build_teacher(Path(target), write)
