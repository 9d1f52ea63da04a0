"""The training window: extract partitions joined with the current teacher's soft labels, the newest
copy of each row, with the fixed held-out slice marked (``kd_tasks.holdout``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import UseCase
from ..holdout import is_holdout
from ..models import student_inputs, teacher_inputs
from ..models.inputs import take
from ..storage import lake
from ..storage.files import IntegrityError
from ..tasks import get_task


@dataclass
class Window:
    ids: list[str]
    inputs: Any  # student (serving-time) inputs: list of texts, or a float matrix of feature columns
    gold: list[Any]  # gold label per row (a label name, or 0/1 for binary tasks); None where unknown
    teacher_logits: np.ndarray  # (n, n_outputs) raw logits
    label_names: list[str]
    holdout: np.ndarray  # bool mask
    days: list[str]  # the partitions that contributed
    task: str = "multiclass"
    teacher_inputs: Any = None  # serving + privileged inputs (the teacher's); None when not loaded
    groups: list[Any] | None = None  # the use case's grouping key per row; None when it declares none

    @property
    def texts(self) -> Any:
        """The inputs of a text use case (one title or review per row)."""
        return self.inputs

    def subset(self, mask: np.ndarray) -> "Window":
        idx = np.flatnonzero(mask)
        return Window([self.ids[i] for i in idx], take(self.inputs, idx), [self.gold[i] for i in idx],
                      self.teacher_logits[idx], self.label_names, self.holdout[idx], self.days, self.task,
                      None if self.teacher_inputs is None else take(self.teacher_inputs, idx),
                      None if self.groups is None else [self.groups[i] for i in idx])

    def gold_index(self) -> np.ndarray:
        """Gold target per row (the task's encoding, e.g. the label's index or 0/1); ``NO_LABEL`` where the
        row has no gold label or one the teacher does not know."""
        return get_task(self.task).gold_index(self.gold, self.label_names)


def load_window(use_case: UseCase, ds: str, labelling: str, lookback_days: int,
                home: Path | None = None, with_teacher_inputs: bool = False) -> Window:
    """Rows of the extract partitions ds-lookback+1..ds with the soft labels of ``labelling`` (every
    shard of every day), newest copy of each id."""
    soft_fix = f"rerun generate_soft_labels for ds={ds} (it relabels damaged shards of the whole window)"
    columns = list(dict.fromkeys([use_case.id_column, use_case.label_column, *use_case.input_columns,
                                  *([use_case.group_column] if use_case.group_column else []),
                                  *(use_case.teacher_columns if with_teacher_inputs else ())]))
    label_names = None
    parts = []
    days = []
    # ds's own partition first: its label set is the window's
    for day in [ds, *reversed(lake.window_days(ds, lookback_days)[:-1])]:
        directory = lake.extract_dir(use_case.name, day, home)
        if not directory.exists():
            if day == ds:
                lake.read_soft_labels(use_case.name, labelling, ds, 0, soft_fix, home)  # the documented error
            continue
        fix = lake.extract_fix(use_case.name, day, home)
        day_parts = []
        for name in lake.shards(directory, "extract", fix):
            shard = lake.shard_index(name)
            extract = lake.read_partition(directory / name, "extract", fix, columns=columns)
            soft_ids, logits, provenance = lake.read_soft_labels(use_case.name, labelling, day, shard, soft_fix, home)
            if label_names is None:
                label_names = provenance.get("label_names")
                if not label_names:
                    raise IntegrityError(f"soft labels of {labelling} for ds={ds} record no label names; "
                                         f"rerun generate_soft_labels for ds={ds}")
            ids = extract.column(use_case.id_column).to_pylist()
            if soft_ids != ids:
                raise ValueError(
                    f"soft labels for ds={day} shard {shard} have {len(soft_ids)} rows but the extract shard has "
                    f"{len(ids)} (or a different order); rerun generate_soft_labels for ds={day}"
                )
            if provenance.get("label_names") != label_names:
                raise ValueError(f"soft labels for ds={day} use a different label set than ds={ds}; relabel the window")
            day_parts.append((extract, ids, logits))
        parts[:0] = day_parts  # oldest day first
        days.insert(0, day)
    # Later days overwrite earlier copies of the same id; rows come out sorted by id.
    newest: dict[str, tuple[int, int]] = {}
    for p, (_, ids, _) in enumerate(parts):
        for i, rid in enumerate(ids):
            newest[rid] = (p, i)
    order = sorted(newest)
    width = parts[0][2].shape[1] if parts else max(len(label_names), 1)
    if not order:
        return Window([], [], [], np.zeros((0, width), np.float32), label_names, np.zeros(0, bool), days,
                      use_case.task, [] if with_teacher_inputs else None, [] if use_case.group_column else None)
    tables = pa.concat_tables([t for t, _, _ in parts], promote_options="permissive")
    offsets = np.cumsum([0] + [len(ids) for _, ids, _ in parts])
    rows = np.array([offsets[newest[r][0]] + newest[r][1] for r in order], dtype=np.int64)
    table = tables.take(pa.array(rows))
    logits = np.concatenate([lg for _, _, lg in parts])[rows]
    keys = table.column(use_case.holdout_column).to_pylist()
    return Window(
        ids=order,
        inputs=student_inputs(use_case, table),
        gold=table.column(use_case.label_column).to_pylist(),
        teacher_logits=logits,
        label_names=label_names,
        holdout=np.array([is_holdout(k, use_case.holdout_percent) for k in keys], dtype=bool),
        days=days,
        task=use_case.task,
        teacher_inputs=teacher_inputs(use_case, table) if with_teacher_inputs else None,
        groups=table.column(use_case.group_column).to_pylist() if use_case.group_column else None,
    )
