"""Typed configuration: one frozen dataclass per concern.

Every config is built with ``from_dict`` which rejects unknown keys (listing the known ones) and
validates values in ``__post_init__`` with a message that says what to change. The config used by a
run is saved next to every artifact it produces (``asdict``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .names import InputError

T = TypeVar("T")

STUDENT_SIZES = {
    # name: (hash buckets, embedding dim, hidden units)
    "small": (1 << 14, 32, 64),
    "base": (1 << 15, 48, 128),
    "large": (1 << 16, 64, 256),
}


TASKS = ("multiclass", "binary")  # multiclass: softmax over label names; binary: one logit of the positive label
QUALITY_METRICS = {"macro_f1": "multiclass", "accuracy": "multiclass", "auc": "binary", "pr_auc": "binary"}
STUDENT_FAMILIES = ("hashed_ngram_mlp", "tabular_mlp")  # text in, or a matrix of feature columns in
TEACHER_FAMILIES = ("hf_sequence_classifier", "tabular_mlp")


class ConfigError(InputError):
    """A configuration value is unknown or out of range."""


def from_dict(cls: type[T], values: Mapping[str, Any] | None) -> T:
    """Build ``cls`` from a mapping, rejecting keys the dataclass does not define."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} got unknown key(s) {unknown}; known keys are {sorted(known)}"
        )
    return cls(**values)


def kd_home() -> Path:
    """Root of everything the pipeline writes: ``$KD_HOME`` (a path or ``file://`` URI), default ``./var``."""
    raw = os.environ.get("KD_HOME", "var")
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    elif "://" in raw:
        raise ConfigError(
            f"KD_HOME={raw!r}: only local paths and file:// URIs are supported; "
            "mount the object store or set KD_HOME to a local directory"
        )
    return Path(raw).resolve()


def default_warehouse_uri() -> str:
    """``$KD_WAREHOUSE`` if set, else the embedded SQLite file under KD_HOME."""
    return os.environ.get("KD_WAREHOUSE") or f"sqlite:///{kd_home() / 'warehouse.db'}"


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 8.0  # T: softens both distributions; one labelling serves any T (bench-sweep)
    alpha: float = 0.5  # weight of the T^2-scaled KL term; (1 - alpha) weights CE on gold rows (bench-sweep)
    epochs: int = 8  # passes over the training window
    learning_rate: float = 0.01  # AdamW learning rate
    batch_size: int = 128  # rows per optimisation step
    seed: int = 0  # seeds torch and the shuffling; same seed + same data -> same student
    student_size: str = "base"  # one of STUDENT_SIZES: hash buckets / embedding dim / hidden units
    lookback_days: int = 7  # training window: soft-label partitions ds-lookback+1 .. ds
    warm_start: bool = True  # start from the champion's weights when it is compatible

    def __post_init__(self):
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}; try 2..8")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.student_size not in STUDENT_SIZES:
            raise ConfigError(
                f"student_size={self.student_size!r} is unknown; choose one of {sorted(STUDENT_SIZES)}"
            )
        if self.lookback_days < 1:
            raise ConfigError(f"lookback_days must be >= 1, got {self.lookback_days}")


@dataclass(frozen=True)
class GateConfig:
    min_teacher_retention: float = 0.90  # student macro-F1 >= this fraction of the teacher's
    max_champion_regression: float = 0.01  # epsilon: student macro-F1 >= champion's - epsilon
    max_student_bytes: int = 50_000_000  # size budget of the student on disk
    max_student_p50_ms_b1: float = 5.0  # latency budget: CPU p50 at batch 1, milliseconds
    min_eval_rows: int = 30  # fewer held-out gold rows than this cannot justify a promotion
    metric: str = "macro_f1"  # quality metric of retention and regression: one of QUALITY_METRICS

    def __post_init__(self):
        if self.metric not in QUALITY_METRICS:
            raise ConfigError(f"gate metric {self.metric!r} is unknown; choose one of {sorted(QUALITY_METRICS)}")
        if not 0.0 < self.min_teacher_retention <= 1.5:
            raise ConfigError(f"min_teacher_retention must be in (0, 1.5], got {self.min_teacher_retention}")
        if self.max_champion_regression < 0:
            raise ConfigError(f"max_champion_regression must be >= 0, got {self.max_champion_regression}")
        if self.min_eval_rows < 1:
            raise ConfigError(f"min_eval_rows must be >= 1, got {self.min_eval_rows}")


@dataclass(frozen=True)
class TeacherTrainConfig:
    epochs: int = 5  # fine-tuning passes over the gold rows
    learning_rate: float = 1e-4  # AdamW learning rate of the encoder
    head_learning_rate: float = 1e-3  # the freshly initialised classification head learns faster
    batch_size: int = 32  # rows per step
    max_length: int = 32  # tokens per title; longer titles are truncated
    max_rows: int = 4000  # cap on gold rows used (keeps a CPU bootstrap within minutes)
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 4 or self.max_rows < 1:
            raise ConfigError(
                f"teacher training needs epochs>=1, batch_size>=1, max_length>=4, max_rows>=1; got {self}"
            )


@dataclass(frozen=True)
class UseCase:
    """A use case is a declaration: SQL, columns, task, teacher and student families, configs, gate."""

    name: str  # used in every path: lake/<name>/..., registry/<name>/...
    extract_sql: str  # file under sql/ that returns one row per example in the window
    id_column: str  # stable row id
    input_columns: tuple[str, ...]  # serving-time inputs of the student (text: one column)
    label_column: str  # gold label; NULL where no human label exists
    teacher_sql: str  # file under sql/ returning the gold-labelled rows a teacher is trained on
    task: str = "multiclass"  # one of TASKS: picks the loss and the metrics
    privileged_columns: tuple[str, ...] = ()  # teacher-only inputs, known after the fact (never served)
    student_family: str = "hashed_ngram_mlp"  # one of STUDENT_FAMILIES
    teacher_family: str = "hf_sequence_classifier"  # one of TEACHER_FAMILIES
    extract_params: Mapping[str, Any] = field(default_factory=dict)  # extra values bound into both SQL files
    teacher_dir: str = ""  # local teacher directory; default: KD_HOME/teachers/<name>
    teacher_lookback_days: int = 0  # teacher data: rows of ds-lookback+1 .. ds; 0 = all history up to ds
    holdout_percent: int = 20  # rows whose id hashes below this percentage are never trained on
    extract_lookback_days: int = 1  # extract window: ds-extract_lookback_days+1 .. ds
    distill: DistillConfig = field(default_factory=DistillConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    teacher_train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)

    def __post_init__(self):
        object.__setattr__(self, "input_columns", tuple(self.input_columns))
        object.__setattr__(self, "privileged_columns", tuple(self.privileged_columns))
        if not 0 < self.holdout_percent < 100:
            raise ConfigError(f"holdout_percent must be in (0, 100), got {self.holdout_percent}")
        if self.extract_lookback_days < 1:
            raise ConfigError(f"extract_lookback_days must be >= 1, got {self.extract_lookback_days}")
        if self.teacher_lookback_days < 0:
            raise ConfigError(f"teacher_lookback_days must be >= 0 (0 = all history), got {self.teacher_lookback_days}")
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r} is unknown; choose one of {list(TASKS)}")
        if self.student_family not in STUDENT_FAMILIES:
            raise ConfigError(f"student_family {self.student_family!r} is unknown; choose one of {list(STUDENT_FAMILIES)}")
        if self.teacher_family not in TEACHER_FAMILIES:
            raise ConfigError(f"teacher_family {self.teacher_family!r} is unknown; choose one of {list(TEACHER_FAMILIES)}")
        if not self.input_columns:
            raise ConfigError(f"use case {self.name!r} declares no input_columns")
        if self.student_family == "hashed_ngram_mlp" and len(self.input_columns) != 1:
            raise ConfigError(f"a text student reads one column, got input_columns={list(self.input_columns)}")
        if QUALITY_METRICS[self.gate.metric] != self.task:
            raise ConfigError(f"gate metric {self.gate.metric!r} is for {QUALITY_METRICS[self.gate.metric]} tasks but "
                              f"use case {self.name!r} is {self.task}; pick one of "
                              f"{sorted(m for m, t in QUALITY_METRICS.items() if t == self.task)}")

    @property
    def text_column(self) -> str:
        """The single input column of a text use case."""
        return self.input_columns[0]

    @property
    def teacher_columns(self) -> tuple[str, ...]:
        """What the teacher reads: the serving-time inputs plus the privileged ones."""
        return self.input_columns + tuple(c for c in self.privileged_columns if c not in self.input_columns)

    def resolved_teacher_dir(self) -> Path:
        return Path(self.teacher_dir) if self.teacher_dir else kd_home() / "teachers" / self.name

    def with_overrides(self, distill: Mapping[str, Any] | None = None,
                       gate: Mapping[str, Any] | None = None, **top: Any) -> "UseCase":
        """A copy with some distillation / gate / top-level values replaced (all validated)."""
        new_distill = from_dict(DistillConfig, {**dataclasses.asdict(self.distill), **(distill or {})})
        new_gate = from_dict(GateConfig, {**dataclasses.asdict(self.gate), **(gate or {})})
        known = {f.name for f in dataclasses.fields(self)} - {"distill", "gate", "teacher_train"}
        unknown = sorted(set(top) - known)
        if unknown:
            raise ConfigError(f"UseCase got unknown key(s) {unknown}; known keys are {sorted(known)}")
        if "extract_params" in top:
            extra = sorted(set(top["extract_params"]) - set(self.extract_params))
            if extra:
                raise ConfigError(f"{self.name} has no extract params {extra}; known: {sorted(self.extract_params)}")
            for key, value in top["extract_params"].items():
                declared = self.extract_params[key]
                if isinstance(value, bool) or not isinstance(value, type(declared)) or value < 1:
                    raise ConfigError(f"extract param {key}={value!r} must be a {type(declared).__name__} >= 1 "
                                      f"(declared default {declared!r})")
            top["extract_params"] = {**self.extract_params, **top["extract_params"]}
        return dataclasses.replace(self, distill=new_distill, gate=new_gate, **top)


PRODUCT_CATEGORY = UseCase(
    name="product_category",
    extract_sql="product_category/extract_products.sql",
    id_column="product_id",
    input_columns=("title",),
    label_column="category",
    teacher_sql="product_category/gold_products.sql",
)

# Serving-time features of sql/purchase_intent/extract_candidates.sql: events strictly before the cutoff.
INTENT_SERVING = (
    "ui_pv_7d", "ui_cart_7d", "ui_fav_7d", "ui_buy_7d", "ui_buy_28d", "ui_events_1d", "ui_events_28d",
    "ui_recency_days", "u_events_1d", "u_events_7d", "u_buy_7d", "u_buy_28d", "u_items_28d", "u_active_days_28d",
    "u_recency_days", "i_events_1d", "i_events_7d", "i_buy_7d", "i_buy_28d", "i_users_28d", "c_events_7d",
    "c_buy_28d", "uc_events_7d", "uc_buy_28d",
)
# Privileged features: the label window's other behaviour, known only after the fact (teacher only).
INTENT_PRIVILEGED = ("ui_pv_after", "ui_cart_after", "ui_fav_after", "u_browse_after", "u_buy_other_after",
                     "u_items_after", "i_buy_other_after", "i_users_after")

PURCHASE_INTENT = UseCase(
    name="purchase_intent",
    task="binary",
    extract_sql="purchase_intent/extract_candidates.sql",
    teacher_sql="purchase_intent/extract_candidates.sql",
    id_column="candidate_id",
    input_columns=INTENT_SERVING,
    privileged_columns=INTENT_PRIVILEGED,
    label_column="bought",
    student_family="tabular_mlp",
    teacher_family="tabular_mlp",
    # label_horizon_days: the label window (days from the cutoff); candidate_days: recent-interest window.
    extract_params={"label_horizon_days": 1, "candidate_days": 3},
    teacher_lookback_days=7,
    distill=DistillConfig(temperature=2.0, alpha=0.5, epochs=6, learning_rate=3e-3, batch_size=512,
                          student_size="base", lookback_days=7),
    gate=GateConfig(metric="auc", min_teacher_retention=0.75, max_champion_regression=0.01),
    teacher_train=TeacherTrainConfig(epochs=10, learning_rate=1e-3, batch_size=256, max_rows=400_000),
)

USE_CASES = {u.name: u for u in (PRODUCT_CATEGORY, PURCHASE_INTENT)}


def get_use_case(name: str) -> UseCase:
    if name not in USE_CASES:
        raise ConfigError(f"unknown use case {name!r}; known: {sorted(USE_CASES)}")
    return USE_CASES[name]
