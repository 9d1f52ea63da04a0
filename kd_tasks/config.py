"""Typed configuration: one frozen dataclass per concern, and the ``UseCase`` a declaration fills in
(the declarations live in ``kd_tasks.use_cases``).

Every config is built with ``from_dict`` which rejects unknown keys (listing the known ones) and
validates values in ``__post_init__`` with a message that says what to change. The config used by a
run is saved next to every artifact it produces (``asdict``). A field declared with ``param(...)``
metadata is also a Param of the nightly DAGs (``param_fields``): one new hyperparameter is one edit.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from .home import kd_home
from .storage.fs import AnyPath, as_path
from .losses import LOSS_TERMS
from .models import READER_COLUMNS, family
from .models.runtime import DEVICE_PATTERN, LABEL_DTYPES
from .names import ConfigError
from .tasks import QUALITY_METRICS, get_task

T = TypeVar("T")


def param(description: str, **schema: Any) -> dict[str, Any]:
    """Field metadata that makes a config field a DAG Param: its description and JSON-schema bounds
    (``minimum``, ``maximum``, ``exclusiveMinimum``, ``enum``). The Param's type and default come from
    the field and the use case's declaration."""
    return {"param": {"description": description, **schema}}


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


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = field(default=8.0, metadata=param(  # one labelling serves any T (bench-sweep)
        "Distillation temperature T (softens teacher and student).", exclusiveMinimum=0, maximum=20))
    alpha: float = field(default=0.5, metadata=param(  # (bench-sweep)
        "Weight of the T²-scaled KL term; 1 - alpha weights CE on gold rows.", minimum=0, maximum=1))
    epochs: int = field(default=8, metadata=param("Student training epochs.", minimum=1, maximum=100))
    learning_rate: float = field(default=0.01, metadata=param(
        "AdamW learning rate of the student.", exclusiveMinimum=0, maximum=1))
    batch_size: int = 128  # rows per optimisation step
    seed: int = field(default=0, metadata=param("Seed: same seed + same data = same student.", minimum=0))
    student_size: str = field(default="base", metadata=param(  # the enum: the student family's sizes
        "Student capacity (the student family's sizes, e.g. hash buckets / embedding dim / hidden units)."))
    lookback_days: int = field(default=7, metadata=param(
        "Training window: soft-label partitions ds-lookback+1 .. ds.", minimum=1, maximum=90))
    warm_start: bool = True  # start from the champion's weights when it is compatible
    # Sparse gradients for a student's embedding table (SparseAdam on the rows a batch touches, AdamW
    # on the rest) where its family has one; False: AdamW on every weight.
    sparse_embedding: bool = False
    # AdamW's step as one fused kernel per tensor (torch's fused=True, on the CPU and CUDA): the same
    # update as the per-tensor loop up to rounding, and an epoch of the n-gram student ~3x faster, as
    # that step reads and writes the whole embedding table. False: torch's per-tensor loop.
    fused_optimizer: bool = True
    block_rows: int = field(default=200_000, metadata=param(
        "Rows of the window held in memory at once: training shuffles the window's shards a block of this "
        "many rows at a time, evaluation scores a block at a time. A window of at most this many training "
        "rows is shuffled as one.", minimum=1000))
    # The objective: loss term name (kd_tasks.losses.LOSS_TERMS) -> weight; None = the task's default
    loss_terms: Mapping[str, float] | None = None

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
        if self.lookback_days < 1:
            raise ConfigError(f"lookback_days must be >= 1, got {self.lookback_days}")
        if self.block_rows < 1000:
            raise ConfigError(f"block_rows must be >= 1000, got {self.block_rows}")
        if self.loss_terms is not None:
            terms = dict(self.loss_terms)
            unknown = sorted(set(terms) - set(LOSS_TERMS))
            if not terms or unknown:
                raise ConfigError(f"loss_terms {terms} name unknown or no terms; known: {sorted(LOSS_TERMS)}")
            bad = {k: w for k, w in terms.items()
                   if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0}
            if bad:
                raise ConfigError(f"loss term weights must be finite numbers > 0, got {bad}")
            object.__setattr__(self, "loss_terms", {k: float(w) for k, w in terms.items()})


@dataclass(frozen=True)
class SliceCheck:
    """A slice of the held-out rows judged on its own: a class (``label``: its recall) or the rows whose
    extract ``column`` lies in [``min_value``, ``max_value``] (the gate metric on them). The candidate
    passes when its slice figure >= ``min_retention`` x the teacher's; a slice with fewer than
    ``min_rows`` held-out rows is reported, not judged."""

    name: str
    label: str = ""
    column: str = ""
    min_value: float | None = None
    max_value: float | None = None
    min_retention: float = 0.9
    min_rows: int = 20

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name or ""):
            raise ConfigError(f"slice name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        if bool(self.label) == bool(self.column):
            raise ConfigError(f"slice {self.name!r} needs a label (a class slice) or a column (a row slice), "
                              "not both")
        if self.column and self.min_value is None and self.max_value is None:
            raise ConfigError(f"slice {self.name!r} on column {self.column!r} needs min_value and/or max_value")
        if not 0 < self.min_retention <= 1.5 or self.min_rows < 1:
            raise ConfigError(f"slice {self.name!r}: min_retention must be in (0, 1.5] and min_rows >= 1")

    def rows(self, values: Any) -> Any:
        """Mask of the rows in the slice, from the column's values."""
        import numpy as np

        v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
        mask = np.isfinite(v)
        if self.min_value is not None:
            mask &= v >= self.min_value
        if self.max_value is not None:
            mask &= v <= self.max_value
        return mask


@dataclass(frozen=True)
class GateConfig:
    min_teacher_retention: float = 0.90  # candidate metric >= this fraction of the teacher's
    # tolerance: the candidate fails only when the bootstrap interval of (candidate - champion) lies
    # wholly below -tolerance; the no-KD baseline replaces the KD student as the night's candidate when
    # the interval of (baseline - student) lies wholly above +tolerance
    max_champion_regression: float = 0.01
    max_student_bytes: int = 50_000_000  # size budget of the student on disk
    max_student_p50_ms_b1: float = 5.0  # latency budget: robust CPU p50 at batch 1, milliseconds
    # Enough held-out gold rows (groups, for a use case with a grouping key) to judge at all: at least
    # min_eval_rows, and for macro-averaged metrics min_rows_per_class x the teacher's classes; for a
    # binary task at least min_rows_per_class rows of each class.
    min_eval_rows: int = 30
    min_rows_per_class: int = 10
    metric: str = "macro_f1"  # quality metric of retention and regression: one of QUALITY_METRICS
    bootstrap_resamples: int = 1000  # paired resamples of the held-out rows (or groups) per comparison
    confidence: float = 0.95  # of the bootstrap intervals
    # teacher health: a class with at least this many held-out rows on which the teacher has zero recall
    teacher_health_min_rows: int = 5
    accept_weak_teacher: bool = field(default=False, metadata=param(
        "Promote even when the teacher is marked weak by its teacher gate or fails the teacher-health check "
        "(the night's report and the promotion log say so)."))
    slices: tuple[SliceCheck, ...] = ()  # per-slice checks (a class's recall, new vs returning users)

    def __post_init__(self):
        if self.metric not in QUALITY_METRICS:
            raise ConfigError(f"gate metric {self.metric!r} is unknown; choose one of {sorted(QUALITY_METRICS)}")
        if not 0.0 < self.min_teacher_retention <= 1.5:
            raise ConfigError(f"min_teacher_retention must be in (0, 1.5], got {self.min_teacher_retention}")
        if self.max_champion_regression < 0:
            raise ConfigError(f"max_champion_regression must be >= 0, got {self.max_champion_regression}")
        if self.min_eval_rows < 1 or self.min_rows_per_class < 0 or self.teacher_health_min_rows < 1:
            raise ConfigError(f"min_eval_rows and teacher_health_min_rows must be >= 1 and min_rows_per_class >= 0, "
                              f"got {self.min_eval_rows}, {self.teacher_health_min_rows}, {self.min_rows_per_class}")
        if self.bootstrap_resamples < 100 or not 0.5 <= self.confidence < 1:
            raise ConfigError(f"bootstrap_resamples must be >= 100 and confidence in [0.5, 1), got "
                              f"{self.bootstrap_resamples}, {self.confidence}")
        slices = tuple(s if isinstance(s, SliceCheck) else from_dict(SliceCheck, s) for s in self.slices)
        if len({s.name for s in slices}) != len(slices):
            raise ConfigError(f"slice names must be unique, got {[s.name for s in slices]}")
        object.__setattr__(self, "slices", slices)


@dataclass(frozen=True)
class LabelConfig:
    """How the teacher runs when it writes soft labels (``kd_tasks.models.runtime``)."""

    label_device: str = field(default="auto", metadata=param(
        "Where the teacher labels: auto (CUDA when the worker has a GPU, else the CPU), cpu, cuda or cuda:N.",
        pattern=DEVICE_PATTERN))
    label_dtype: str = field(default="fp32", metadata=param(
        "Teacher dtype when labelling: fp32, bf16, fp16 (CUDA only) or int8 (text teachers on the CPU: "
        "quantised once per teacher by ONNX Runtime, about 2x faster). Part of the labelling's identity: "
        "labels of two dtypes are never mixed in one training window.", enum=LABEL_DTYPES))
    label_batch_size: int = field(default=0, metadata=param(
        "Rows per teacher forward pass; 0 = by device (64 on CPU, 512 on CUDA, halved on out-of-memory).",
        minimum=0))
    label_threads: int = field(default=0, metadata=param(
        "CPU threads of the teacher (torch, or ONNX Runtime for int8); 0 = every core the worker process "
        "may use.", minimum=0))

    def __post_init__(self):
        if not isinstance(self.label_device, str) or not re.fullmatch(DEVICE_PATTERN, self.label_device):
            raise ConfigError(f"label_device {self.label_device!r} is not valid; use auto, cpu, cuda or cuda:N")
        if self.label_dtype not in LABEL_DTYPES:
            raise ConfigError(f"label_dtype {self.label_dtype!r} is unknown; use one of {LABEL_DTYPES}")
        if self.label_batch_size < 0 or self.label_threads < 0:
            raise ConfigError(f"label_batch_size and label_threads must be >= 0 (0 = automatic), got {self}")


@dataclass(frozen=True)
class TeacherTrainConfig:
    """The teacher recipe: AdamW with linear warm-up and decay, validated after every epoch on the use
    case's metric (early stopping, the best epoch's weights kept), class-weighted loss where the metric
    is macro-averaged. The validation rows are also where the teacher gate compares the new teacher
    with its baselines (``kd_tasks.stages.teacher_gate``)."""

    epochs: int = field(default=5, metadata=param(
        "Most training epochs (validation may stop earlier).", minimum=1, maximum=50))
    learning_rate: float = field(default=1e-4, metadata=param(
        "AdamW learning rate (of the encoder for a text teacher; its new head uses head_learning_rate).",
        exclusiveMinimum=0, maximum=1))
    head_learning_rate: float = 1e-3  # the freshly initialised classification head learns faster
    batch_size: int = 32  # rows per step
    max_length: int = 32  # tokens per title; longer titles are truncated
    max_rows: int = field(default=0, metadata=param(
        "Cap on gold rows the teacher trains on; 0 = every gold row (CPU time grows with it).", minimum=0))
    seed: int = 0
    validation_share: float = field(default=0.1, metadata=param(
        "Share of the gold rows kept for validation (early stopping and the teacher gate), chosen by a hash of "
        "the row id (or group).", minimum=0.02, maximum=0.5))
    patience: int = field(default=2, metadata=param(
        "Epochs without a validation gain before training stops (the best epoch's weights are kept).",
        minimum=1, maximum=50))
    warmup_share: float = 0.1  # share of the steps with a linearly rising learning rate, then linear decay
    balanced_classes: bool = True  # class-weighted loss where the gate metric is macro-averaged
    device: str = field(default="auto", metadata=param(
        "Where the teacher trains: auto (CUDA when the worker has a GPU, else the CPU), cpu, cuda or cuda:N.",
        pattern=DEVICE_PATTERN))

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 4 or self.max_rows < 0:
            raise ConfigError(
                f"teacher training needs epochs>=1, batch_size>=1, max_length>=4, max_rows>=0; got {self}"
            )
        if not 0.0 < self.validation_share < 1.0 or self.patience < 1 or not 0.0 <= self.warmup_share < 1.0:
            raise ConfigError(f"teacher training needs 0 < validation_share < 1, patience >= 1 and "
                              f"0 <= warmup_share < 1; got {self}")
        if not isinstance(self.device, str) or not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ConfigError(f"teacher device {self.device!r} is not valid; use auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class UseCase:
    """A use case is a declaration: SQL, columns, task, teacher and student families, configs, gate."""

    name: str  # used in every path: lake/<name>/..., registry/<name>/...
    extract_sql: str  # file under sql/ that returns one row per example in the window
    id_column: str  # stable row id
    input_columns: tuple[str, ...]  # serving-time inputs of the student (text: one column)
    label_column: str  # gold label; NULL where no human label exists
    teacher_sql: str  # file under sql/ returning the gold-labelled rows a teacher is trained on
    extract_task_id: str = "extract_rows"  # the nightly DAG's extract task (named where a message says what to rerun)
    task: str = "multiclass"  # one of kd_tasks.tasks.TASKS: gold encoding, outputs, metrics, default loss
    privileged_columns: tuple[str, ...] = ()  # teacher-only inputs, known after the fact (never served)
    student_family: str = "hashed_ngram_mlp"  # a family with a student in kd_tasks.models.FAMILIES
    teacher_family: str = "hf_sequence_classifier"  # a family with a teacher in kd_tasks.models.FAMILIES
    group_column: str = ""  # grouping key (a query, ...): held out, trained on and measured as a whole
    item_id_column: str = ""  # a ranking row's candidate id: a two-tower export stores one vector per item
    extract_params: Mapping[str, Any] = field(default_factory=dict)  # extra values bound into both SQL files
    teacher_dir: str = ""  # local teacher directory; default: KD_HOME/teachers/<name>
    teacher_lookback_days: int = 0  # teacher data: rows of ds-lookback+1 .. ds; 0 = all history up to ds
    holdout_percent: int = 20  # rows whose id (or group) hashes below this percentage are never trained on
    extract_lookback_days: int = field(default=1, metadata=param(
        "Extract window: rows of ds-extract_lookback_days+1 .. ds (raise it on a first run to pull history "
        "into one partition).", minimum=1, maximum=366))
    shard_rows: int = field(default=100_000, metadata=param(
        "Rows per shard of an extract partition: the unit of soft labelling, of its retries and of its "
        "spread over workers.", minimum=1))
    distill: DistillConfig = field(default_factory=DistillConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    teacher_train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    labelling: LabelConfig = field(default_factory=LabelConfig)

    def __post_init__(self):
        object.__setattr__(self, "input_columns", tuple(self.input_columns))
        object.__setattr__(self, "privileged_columns", tuple(self.privileged_columns))
        if not 0 < self.holdout_percent < 100:
            raise ConfigError(f"holdout_percent must be in (0, 100), got {self.holdout_percent}")
        if self.extract_lookback_days < 1:
            raise ConfigError(f"extract_lookback_days must be >= 1, got {self.extract_lookback_days}")
        if self.shard_rows < 1:
            raise ConfigError(f"shard_rows must be >= 1, got {self.shard_rows}")
        if self.teacher_lookback_days < 0:
            raise ConfigError(f"teacher_lookback_days must be >= 0 (0 = all history), got {self.teacher_lookback_days}")
        task = get_task(self.task)
        for role in ("student", "teacher"):
            fam = family(getattr(self, f"{role}_family"), role)
            if self.task not in fam.tasks:
                raise ConfigError(f"use case {self.name!r} is a {self.task} task but its {role} family {fam.name!r} "
                                  f"supports {list(fam.tasks)}; choose a {role} family for {self.task} tasks")
        if not self.input_columns:
            raise ConfigError(f"use case {self.name!r} declares no input_columns")
        reader = family(self.student_family).inputs
        if reader in READER_COLUMNS and len(self.input_columns) != READER_COLUMNS[reader]:
            raise ConfigError(f"a {self.student_family} student reads {READER_COLUMNS[reader]} input column(s) ({reader}), got "
                              f"input_columns={list(self.input_columns)}")
        sizes = family(self.student_family).sizes
        if self.distill.student_size not in sizes:
            raise ConfigError(f"student_size={self.distill.student_size!r} is unknown for the {self.student_family} "
                              f"student; choose one of {sorted(sizes)}")
        terms = self.distill.loss_terms if self.distill.loss_terms is not None else task.default_loss
        wrong = sorted(t for t in terms if self.task not in LOSS_TERMS[t].tasks)
        if wrong:
            raise ConfigError(f"loss term(s) {wrong} do not apply to {self.task} tasks; use one of "
                              f"{sorted(n for n, t in LOSS_TERMS.items() if self.task in t.tasks)}")
        vectors = sorted(t for t in terms if LOSS_TERMS[t].needs_vectors)
        if vectors and not family(self.student_family).vectors:
            raise ConfigError(f"loss term(s) {vectors} read query and product vectors, which the {self.student_family} "
                              "student does not have; use a two-tower student family or drop the term(s)")
        if task.name == "ranking" and not self.group_column:
            raise ConfigError(f"use case {self.name!r} is a ranking task: declare its group_column (the query), the "
                              "unit of its held-out split, its batches and its metrics")
        object.__setattr__(self, "distill", dataclasses.replace(self.distill, loss_terms=dict(terms)))
        readable = set(self.teacher_columns) | {self.group_column} - {""}
        for sl in self.gate.slices:
            if sl.column and sl.column not in readable:
                raise ConfigError(f"slice {sl.name!r} reads column {sl.column!r}, which use case {self.name!r} does "
                                  f"not extract; choose one of {sorted(readable)}")
        if QUALITY_METRICS[self.gate.metric] != self.task:
            raise ConfigError(f"gate metric {self.gate.metric!r} is for {QUALITY_METRICS[self.gate.metric]} tasks but "
                              f"use case {self.name!r} is {self.task}; pick one of "
                              f"{sorted(m for m, t in QUALITY_METRICS.items() if t == self.task)}")

    @property
    def holdout_column(self) -> str:
        """The column whose value decides the held-out slice: the grouping key, else the row id."""
        return self.group_column or self.id_column

    @property
    def text_column(self) -> str:
        """The single input column of a text use case."""
        return self.input_columns[0]

    @property
    def teacher_columns(self) -> tuple[str, ...]:
        """What the teacher reads: the serving-time inputs plus the privileged ones."""
        return self.input_columns + tuple(c for c in self.privileged_columns if c not in self.input_columns)

    def resolved_teacher_dir(self) -> AnyPath:
        return as_path(self.teacher_dir) if self.teacher_dir else kd_home() / "teachers" / self.name

    def with_overrides(self, distill: Mapping[str, Any] | None = None, gate: Mapping[str, Any] | None = None,
                       labelling: Mapping[str, Any] | None = None, **top: Any) -> "UseCase":
        """A copy with some distillation / gate / labelling / top-level values replaced (all validated)."""
        current = dataclasses.asdict(self.distill)
        if "task" in top and "loss_terms" not in (distill or {}):
            current["loss_terms"] = None  # the resolved default was the old task's: take the new task's
        new_distill = from_dict(DistillConfig, {**current, **(distill or {})})
        new_gate = from_dict(GateConfig, {**dataclasses.asdict(self.gate), **(gate or {})})
        new_labelling = from_dict(LabelConfig, {**dataclasses.asdict(self.labelling), **(labelling or {})})
        known = {f.name for f in dataclasses.fields(self)} - {"distill", "gate", "teacher_train", "labelling"}
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
        return dataclasses.replace(self, distill=new_distill, gate=new_gate, labelling=new_labelling, **top)


def param_fields(cls: type) -> dict[str, dict[str, Any]]:
    """The fields of a config class declared as DAG Params: name -> the ``param(...)`` metadata."""
    return {f.name: dict(f.metadata["param"]) for f in dataclasses.fields(cls) if "param" in f.metadata}


_JSON_TYPES = {"float": "number", "int": "integer", "str": "string", "bool": "boolean"}


def override_schemas(cls: type) -> dict[str, dict[str, Any]]:
    """JSON schema of each ``param(...)`` field of ``cls`` as an optional override: null (the default)
    keeps the use case's declaration."""
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    return {name: {**meta, "type": ["null", _JSON_TYPES[str(types[name])]], "default": None,
                   "description": f"{meta['description']} Empty = the use case's declaration."}
            for name, meta in param_fields(cls).items()}


def param_schemas(use_case: UseCase) -> dict[str, dict[str, Any]]:
    """JSON schema (``type``, bounds, ``description``) and ``default`` of every Param a nightly run of
    ``use_case`` takes from its config: the ``param(...)`` fields of ``UseCase`` and ``DistillConfig``
    with the declaration's values as defaults, and its ``extract_params`` by name."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in use_case.extract_params.items():
        out[name] = {"default": value, "type": "integer" if isinstance(value, int) else "number", "minimum": 1,
                     "description": f"Bound into sql/{use_case.extract_sql} as :{name} (see the README)."}
    for owner, cls in ((use_case, UseCase), (use_case.distill, DistillConfig), (use_case.labelling, LabelConfig),
                       (use_case.gate, GateConfig)):
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, meta in param_fields(cls).items():
            out[name] = {"default": getattr(owner, name), "type": _JSON_TYPES[str(types[name])], **meta}
    out["student_size"]["enum"] = sorted(family(use_case.student_family).sizes)
    return out


