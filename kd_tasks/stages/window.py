"""The training window: extract partitions joined with the current teacher's soft labels, the newest
copy of each row, with the fixed held-out slice marked (``kd_tasks.holdout``).

A window can be far larger than memory (7 nights of 10 million listings), so it is read in two steps:
``scan_window`` reads only each shard's ids and held-out keys and decides which rows count (the newest
copy of each id; held out or not), and ``WindowScan.blocks`` then materialises a few shards at a time
as a ``Window`` of rows sorted by id. ``load_window`` is the whole window as one block, for windows
known to be small (tests, benchmarks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..holdout import is_holdout
from ..models import student_inputs, teacher_inputs
from ..models.inputs import take
from ..storage import lake
from ..storage.files import IntegrityError
from ..tasks import get_task

if TYPE_CHECKING:
    from ..config import UseCase


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
    extra: dict[str, list[Any]] = field(default_factory=dict)  # other extract columns asked for, by name

    @property
    def texts(self) -> Any:
        """The inputs of a text use case (one title or review per row)."""
        return self.inputs

    def subset(self, mask: np.ndarray) -> "Window":
        idx = np.flatnonzero(mask)
        return Window([self.ids[i] for i in idx], take(self.inputs, idx), [self.gold[i] for i in idx],
                      self.teacher_logits[idx], self.label_names, self.holdout[idx], self.days, self.task,
                      None if self.teacher_inputs is None else take(self.teacher_inputs, idx),
                      None if self.groups is None else [self.groups[i] for i in idx],
                      {c: [v[i] for i in idx] for c, v in self.extra.items()})

    def gold_index(self) -> np.ndarray:
        """Gold target per row (the task's encoding, e.g. the label's index or 0/1); ``NO_LABEL`` where the
        row has no gold label or one the teacher does not know."""
        return get_task(self.task).gold_index(self.gold, self.label_names)


@dataclass
class Piece:
    """One extract shard of the window and which of its rows the window keeps."""

    day: str
    shard: int
    name: str  # the shard's file name in the day's extract folder
    newest: np.ndarray  # bool per row: this is the window's newest copy of the row's id
    holdout: np.ndarray  # bool per row: in the fixed held-out slice
    labelled: np.ndarray  # bool per row: the row has a gold label

    def rows(self, which: str) -> np.ndarray:
        """Row mask of ``which``: "train" (never held out), "held" (held out, with a gold label) or "all"."""
        if which == "train":
            return self.newest & ~self.holdout
        if which == "held":
            return self.newest & self.holdout & self.labelled
        if which == "all":
            return self.newest
        raise ValueError(f"which={which!r}: choose train, held or all")


@dataclass
class WindowScan:
    """The window ending at ``ds`` as a list of shards, before any row's inputs or logits are read."""

    use_case: UseCase
    ds: str
    labelling: str
    home: Path | None
    days: list[str]  # the partitions that contribute, oldest first
    label_names: list[str]
    pieces: list[Piece] = field(default_factory=list)  # oldest day first, shards in order

    def count(self, which: str) -> int:
        return int(sum(p.rows(which).sum() for p in self.pieces))

    def _fix(self) -> str:
        return f"rerun generate_soft_labels for ds={self.ds} (it relabels damaged shards of the whole window)"

    def read_extract(self, piece: Piece, mask: np.ndarray, columns: Sequence[str]) -> pa.Table:
        """The rows ``mask`` of one extract shard, its ``columns`` only."""
        return self._extract(piece, columns).filter(pa.array(mask))

    def _extract(self, piece: Piece, columns: Sequence[str]) -> pa.Table:
        directory = lake.extract_dir(self.use_case.name, piece.day, self.home)
        return lake.read_partition(directory / piece.name, "extract",
                                   lake.extract_fix(self.use_case.name, piece.day, self.home), columns=columns)

    def read_piece(self, piece: Piece, mask: np.ndarray, columns: Sequence[str]) -> tuple[pa.Table, np.ndarray]:
        """The rows ``mask`` of one shard: its extract ``columns`` and its soft labels (n, outputs)."""
        extract = self._extract(piece, columns)
        soft_ids, logits, _ = lake.read_soft_labels(self.use_case.name, self.labelling, piece.day, piece.shard,
                                                    self._fix(), self.home)
        if len(soft_ids) != len(mask) or not soft_ids.equals(extract.column(self.use_case.id_column).combine_chunks()):
            raise ValueError(
                f"soft labels for ds={piece.day} shard {piece.shard} have {len(soft_ids)} rows but the extract shard "
                f"has {len(mask)} (or a different order); rerun generate_soft_labels for ds={piece.day}")
        return extract.filter(pa.array(mask)), logits[mask]

    def columns(self, with_teacher_inputs: bool = False, extra: Sequence[str] = ()) -> list[str]:
        uc = self.use_case
        return list(dict.fromkeys([uc.id_column, uc.label_column, *uc.input_columns,
                                   *([uc.group_column] if uc.group_column else []),
                                   *(uc.teacher_columns if with_teacher_inputs else ()), *extra]))

    def block(self, pieces: Sequence[Piece], which: str, with_teacher_inputs: bool = False,
              extra_columns: Sequence[str] = ()) -> Window:
        """The rows ``which`` of ``pieces`` in memory, sorted by id (``extra_columns``: other extract
        columns to carry, in ``Window.extra``)."""
        uc = self.use_case
        parts = [self.read_piece(p, p.rows(which), self.columns(with_teacher_inputs, extra_columns)) for p in pieces]
        width = parts[0][1].shape[1] if parts else max(len(self.label_names), 1)
        if not parts or not sum(len(t) for t, _ in parts):
            return Window([], [], [], np.zeros((0, width), np.float32), self.label_names, np.zeros(0, bool),
                          self.days, uc.task, [] if with_teacher_inputs else None, [] if uc.group_column else None,
                          {c: [] for c in extra_columns})
        table = pa.concat_tables([t for t, _ in parts], promote_options="permissive")
        order = pc.sort_indices(table.column(uc.id_column))  # byte order of UTF-8 = code point order
        table = table.take(order)
        logits = np.concatenate([lg for _, lg in parts])[order.to_numpy()]
        holdout = np.concatenate([p.holdout[p.rows(which)] for p in pieces])[order.to_numpy()]
        return Window(
            ids=table.column(uc.id_column).to_pylist(),
            inputs=student_inputs(uc, table),
            gold=table.column(uc.label_column).to_pylist(),
            teacher_logits=logits,
            label_names=self.label_names,
            holdout=holdout,
            days=self.days,
            task=uc.task,
            teacher_inputs=teacher_inputs(uc, table) if with_teacher_inputs else None,
            groups=table.column(uc.group_column).to_pylist() if uc.group_column else None,
            extra={c: table.column(c).to_pylist() for c in extra_columns},
        )

    def blocks(self, which: str, block_rows: int, with_teacher_inputs: bool = False,
               extra_columns: Sequence[str] = ()) -> Iterator[Window]:
        """The rows ``which`` a block of at most ``block_rows`` rows at a time (consecutive shards; a
        shard larger than that is a block of its own), each block sorted by id."""
        sizes = [int(p.rows(which).sum()) for p in self.pieces]
        for group in group_parts(sizes, block_rows):
            yield self.block([self.pieces[i] for i in group], which, with_teacher_inputs, extra_columns)


def group_parts(sizes: Sequence[int], block_rows: int, order: Sequence[int] | None = None) -> list[list[int]]:
    """Indices of consecutive parts (in ``order``, default as given) gathered into blocks of at most
    ``block_rows`` rows (a part larger than that is a block of its own); empty parts are left out. Parts
    of at most ``block_rows`` rows in all are one block."""
    groups: list[list[int]] = []
    size = 0
    for i in (range(len(sizes)) if order is None else order):
        if not sizes[i]:
            continue
        if not groups or size + sizes[i] > block_rows:
            groups.append([])
            size = 0
        groups[-1].append(int(i))
        size += sizes[i]
    return groups


def _newer_copy(hashes: np.ndarray, newer_days: Sequence[np.ndarray]) -> np.ndarray:
    """Rows whose id hash a later day of the window has too (each day's hashes sorted). Ids are compared
    by a 64-bit hash (within this process): with 70 million ids the chance that any two distinct ids
    collide is about 1e-4, and a collision drops one row of one night from training."""
    found = np.zeros(len(hashes), bool)
    for day in newer_days:
        pos = np.minimum(np.searchsorted(day, hashes), max(len(day) - 1, 0))
        found |= (day[pos] == hashes) if len(day) else False
    return found


def scan_window(use_case: UseCase, ds: str, labelling: str, lookback_days: int,
                home: Path | None = None) -> WindowScan:
    """The shards of the extract partitions ds-lookback+1..ds with the soft labels of ``labelling``:
    which rows are the newest copy of their id, which are held out and which have gold labels. Reads
    the ids, held-out keys and gold labels only; memory is about 10 bytes per row of the window."""
    uc = use_case
    soft_fix = f"rerun generate_soft_labels for ds={ds} (it relabels damaged shards of the whole window)"
    columns = list(dict.fromkeys([uc.id_column, uc.label_column, uc.holdout_column]))
    label_names = None
    pieces: list[Piece] = []
    days: list[str] = []
    newer: list[np.ndarray] = []  # sorted id hashes of the days already scanned (later ones)
    # ds's own partition first: its label set is the window's, and later copies of an id win
    for day in [ds, *reversed(lake.window_days(ds, lookback_days)[:-1])]:
        directory = lake.extract_dir(uc.name, day, home)
        if not directory.exists():
            if day == ds:
                lake.read_soft_labels(uc.name, labelling, ds, 0, soft_fix, home)  # the documented error
            continue
        fix = lake.extract_fix(uc.name, day, home)
        day_pieces, day_hashes = [], []
        for name in lake.shards(directory, "extract", fix):
            shard = lake.shard_index(name)
            extract = lake.read_partition(directory / name, "extract", fix, columns=columns)
            provenance = lake.read_provenance(lake.soft_label_path(uc.name, labelling, day, home, shard),
                                              "soft-label", soft_fix)
            if label_names is None:
                label_names = provenance.get("label_names")
                if not label_names:
                    raise IntegrityError(f"soft labels of {labelling} for ds={ds} record no label names; "
                                         f"rerun generate_soft_labels for ds={ds}")
            if provenance.get("label_names") != label_names:
                raise ValueError(f"soft labels for ds={day} use a different label set than ds={ds}; relabel the window")
            hashes = lake.id_hashes(extract.column(uc.id_column))
            keys = extract.column(uc.holdout_column).to_pylist()
            day_pieces.append(Piece(
                day, shard, name, newest=~_newer_copy(hashes, newer),
                holdout=np.fromiter((is_holdout(k, uc.holdout_percent) for k in keys), bool, len(keys)),
                labelled=extract.column(uc.label_column).is_valid().to_numpy(zero_copy_only=False)))
            day_hashes.append(hashes)
        newer.append(np.sort(np.concatenate(day_hashes)) if day_hashes else np.zeros(0, np.int64))
        pieces[:0] = day_pieces  # oldest day first
        days.insert(0, day)
    return WindowScan(uc, ds, labelling, home, days, label_names or [], pieces)


def load_window(use_case: UseCase, ds: str, labelling: str, lookback_days: int,
                home: Path | None = None, with_teacher_inputs: bool = False) -> Window:
    """Rows of the extract partitions ds-lookback+1..ds with the soft labels of ``labelling`` (every
    shard of every day), newest copy of each id, sorted by id, all in memory: for windows known to
    be small. The stages read large windows a block at a time (``scan_window``)."""
    scan = scan_window(use_case, ds, labelling, lookback_days, home)
    return scan.block(scan.pieces, "all", with_teacher_inputs)

