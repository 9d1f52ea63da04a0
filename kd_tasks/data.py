"""The training window: extract partitions joined with the current teacher's soft labels.

Also the fixed held-out slice: a row belongs to it when a stable hash of its id falls below
``holdout_percent``. Held-out rows never enter teacher or student training, on any night.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import lake
from .config import UseCase
from .soft_labels import check_finite, label_names_of


def is_holdout(row_id: str, percent: int) -> bool:
    return int(hashlib.sha1(str(row_id).encode()).hexdigest()[:8], 16) % 100 < percent


@dataclass
class Window:
    ids: list[str]
    texts: list[str]
    gold: list[str | None]
    teacher_logits: np.ndarray  # (n, n_labels) raw logits
    label_names: list[str]
    holdout: np.ndarray  # bool mask
    days: list[str]  # the partitions that contributed

    def subset(self, mask: np.ndarray) -> "Window":
        idx = np.flatnonzero(mask)
        return Window([self.ids[i] for i in idx], [self.texts[i] for i in idx], [self.gold[i] for i in idx],
                      self.teacher_logits[idx], self.label_names, self.holdout[idx], self.days)

    def gold_index(self) -> np.ndarray:
        """Gold label index per row; -1 where the row has no gold label or one the teacher does not know."""
        pos = {n: i for i, n in enumerate(self.label_names)}
        return np.array([pos.get(g, -1) if g is not None else -1 for g in self.gold], dtype=np.int64)


def load_window(use_case: UseCase, ds: str, teacher_version: str, lookback_days: int,
                home: Path | None = None) -> Window:
    """Rows of the extract partitions ds-lookback+1..ds with their soft labels, newest copy of each id."""
    label_names = label_names_of(use_case, teacher_version, ds, home)
    rows: dict[str, tuple[str, str | None, np.ndarray]] = {}
    days = []
    for day in lake.window_days(ds, lookback_days):
        src = lake.extract_path(use_case.name, day, home)
        if not src.exists():
            continue
        extract = pq.read_table(src, columns=[use_case.id_column, use_case.text_column, use_case.label_column])
        soft_path = lake.soft_label_path(use_case.name, teacher_version, day, home)
        soft = lake.read_partition(soft_path, "soft-label",
                                   f"run generate_soft_labels for ds={ds} (it labels the whole window)")
        ids = extract.column(use_case.id_column).to_pylist()
        soft_ids = soft.column("row_id").to_pylist()
        if soft_ids != ids:
            raise ValueError(
                f"soft labels for ds={day} have {len(soft_ids)} rows but the extract has {len(ids)} "
                f"(or a different order); rerun generate_soft_labels for ds={day}"
            )
        if lake.read_provenance(soft_path).get("label_names") != label_names:
            raise ValueError(f"soft labels for ds={day} use a different label set than ds={ds}; relabel the window")
        logits = np.asarray(soft.column("logits").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                            dtype=np.float32).reshape(len(ids), len(label_names))
        check_finite(logits, f"soft labels {day} (teacher {teacher_version})",
                     f"delete that partition and rerun generate_soft_labels for ds={day}")
        texts = extract.column(use_case.text_column).to_pylist()
        gold = extract.column(use_case.label_column).to_pylist()
        for i, rid in enumerate(ids):
            rows[rid] = (texts[i], gold[i], logits[i])  # later days overwrite earlier copies
        days.append(day)
    ids = sorted(rows)
    return Window(
        ids=ids,
        texts=[rows[i][0] for i in ids],
        gold=[rows[i][1] for i in ids],
        teacher_logits=np.stack([rows[i][2] for i in ids]) if ids else np.zeros((0, len(label_names)), np.float32),
        label_names=label_names,
        holdout=np.array([is_holdout(i, use_case.holdout_percent) for i in ids], dtype=bool),
        days=days,
    )
