"""Stage 3: distill a student from the window's soft labels (plus gold labels where they exist).

Also trains the no-distillation baseline: the same student on the same gold rows with the same
budget and alpha = 0 (the supervised part only), so every night shows what the teacher added.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..config import DistillConfig, UseCase
from ..losses import objective
from ..models import load_student, student_class, warm_startable
from ..models import student_inputs
from ..models.inputs import take
from ..models.training import fit_blocks
from ..storage import files, fs, registry
from ..storage.files import IntegrityError
from ..storage.teachers import local_teacher
from ..storage.runs import RunDir
from ..tasks import NO_LABEL, get_task
from .window import Window, WindowScan, group_parts, scan_window

log = logging.getLogger(__name__)


class TrainingRows:
    """The training rows of a window as parts (one per extract shard, or one for a window in memory),
    read a block of ``block_rows`` rows at a time. A part's ids, gold targets and soft labels are kept
    in ``cache`` (a folder) or in memory; its features are prepared once per featuriser, whichever
    students of the night ask for them, and kept beside them."""

    def __init__(self, label_names: Sequence[str], task: str, block_rows: int, cache: Path | None = None):
        self.label_names, self.task, self.block_rows, self.cache = list(label_names), task, block_rows, cache
        self.sizes: list[int] = []
        self._gold_rows = 0
        self._data: list[Any] = []  # per part: a dict of arrays, or the path of their .npz
        self._inputs: list[Callable[[], Any]] = []  # per part: reads its student inputs again
        self._features: dict[tuple, list[Any]] = {}  # features key -> per part: prepared features or a path
        self.empty: dict[tuple, int] = {}  # features key -> rows that featurise to nothing
        self.unknown_gold = 0  # rows with a gold label the teacher has no output for
        self._sample: Any = None

    @classmethod
    def from_window(cls, window: Window, block_rows: int = 1 << 62) -> "TrainingRows":
        rows = cls(window.label_names, window.task, block_rows)
        rows.unknown_gold = sum(1 for g, i in zip(window.gold, window.gold_index()) if g is not None and i == NO_LABEL)
        rows._add(window.ids, window.gold_index(), window.teacher_logits, lambda: window.inputs)
        return rows

    @classmethod
    def from_scan(cls, scan: WindowScan, block_rows: int, cache: Path) -> "TrainingRows":
        """The rows of ``scan`` that are not held out; reads one shard at a time."""
        uc = scan.use_case
        rows = cls(scan.label_names, uc.task, block_rows, cache)
        for piece in scan.pieces:
            mask = piece.rows("train")
            table, logits = scan.read_piece(piece, mask, [uc.id_column, uc.label_column])
            labels = table.column(uc.label_column)
            gold = get_task(uc.task).gold_index(labels.to_pylist(), scan.label_names)
            rows.unknown_gold += int((labels.is_valid().to_numpy(zero_copy_only=False) & (gold == NO_LABEL)).sum())

            def inputs(piece: Any = piece, mask: np.ndarray = mask) -> Any:
                return student_inputs(uc, scan.read_extract(piece, mask, list(uc.input_columns)))
            rows._add(table.column(uc.id_column).to_pylist(), gold, logits, inputs)
        return rows

    def _add(self, ids: Sequence[str], gold: np.ndarray, logits: np.ndarray, inputs: Callable[[], Any]) -> None:
        data = {"ids": np.array([str(i).encode() for i in ids], dtype=bytes), "gold": gold,
                "logits": np.ascontiguousarray(logits, dtype=np.float32)}
        k = len(self.sizes)
        if self.cache is not None:
            self._data.append(self._save(f"part-{k}", data))
        else:
            self._data.append(data)
        self.sizes.append(len(ids))
        self._gold_rows += int((gold != NO_LABEL).sum())
        self._inputs.append(inputs)

    def _save(self, name: str, arrays: dict[str, np.ndarray]) -> Path:
        path = self.cache / f"{name}.npz"
        np.savez(path, **arrays)
        return path

    @staticmethod
    def _load(item: Any) -> dict[str, np.ndarray]:
        if isinstance(item, Path):
            with np.load(item) as z:
                return {k: z[k] for k in z.files}
        return item

    def __len__(self) -> int:
        return sum(self.sizes)

    def gold_rows(self) -> int:
        return self._gold_rows

    def _groups(self, epoch: int, seed: int) -> list[list[int]]:
        order = None
        if len(self) > self.block_rows:  # the shards in a new order each epoch
            order = np.random.default_rng([seed, epoch]).permutation(len(self.sizes))
        return group_parts(self.sizes, self.block_rows, order)

    def sample_inputs(self) -> Any:
        """The inputs of the first block (in window order), sorted by id: what a family that fits its
        featuriser to the data (a scaler) sees. For a window of one block: all its rows."""
        if self._sample is None:
            group = group_parts(self.sizes, self.block_rows)[:1]
            parts = [(self._load(self._data[i])["ids"], self._inputs[i]()) for i in (group[0] if group else [])]
            if not parts:
                self._sample = []
            else:
                order = np.argsort(np.concatenate([ids for ids, _ in parts]), kind="stable")
                joined = (np.concatenate([x for _, x in parts]) if isinstance(parts[0][1], np.ndarray)
                          else [t for _, x in parts for t in x])
                self._sample = take(joined, order)
        return self._sample

    def features(self, student: Any) -> list[Any]:
        """Per part, the student family's prepared features (computed the first time a featuriser asks)."""
        key = student.features_key()
        if key not in self._features:
            per_part, empty = [], 0
            started = time.perf_counter()
            for k, read in enumerate(self._inputs):
                inputs = read()
                prepared = student.prepare(inputs)
                empty += student.empty_inputs(inputs)
                per_part.append(self._save(f"features-{len(self._features)}-{k}", {str(i): a for i, a in enumerate(prepared)})
                                if self.cache is not None else prepared)
                if len(self._inputs) > 1:
                    log.info("featurised part %d/%d (%d rows, %.0fs elapsed)", k + 1, len(self._inputs),
                             self.sizes[k], time.perf_counter() - started)
            self._features[key], self.empty[key] = per_part, empty
        return self._features[key]

    def blocks(self, student: Any, only_gold: bool, epoch: int, seed: int) -> Iterator[tuple[Any, ...]]:
        """Per block of ``epoch``: (prepared features, teacher logits, gold targets, the rows to train on
        in id order), the rows being positions in the block's arrays."""
        features = self.features(student)
        for group in self._groups(epoch, seed):
            data = [self._load(self._data[i]) for i in group]
            prepared = student.join_prepared([_prepared(features[i]) for i in group])
            ids = np.concatenate([d["ids"] for d in data])
            gold = np.concatenate([d["gold"] for d in data])
            logits = np.concatenate([d["logits"] for d in data])
            rows = np.argsort(ids, kind="stable")
            if only_gold:
                rows = rows[gold[rows] != NO_LABEL]
            yield prepared, torch.from_numpy(logits), torch.from_numpy(gold), torch.from_numpy(rows)


def _prepared(item: Any) -> Any:
    if isinstance(item, Path):
        with np.load(item) as z:
            arrays = [z[str(k)] for k in range(len(z.files))]
        return tuple(arrays)
    return item


def train_student(window: Window | TrainingRows, config: DistillConfig, init: Any = None,
                  log_prefix: str = "student", family: str = "hashed_ngram_mlp",
                  feature_names: Sequence[str] = (), teacher_dir: Any = None) -> Any:
    """Fit a student of ``family`` on the training rows ``window`` with the objective of
    ``config.loss_terms`` (default: the task's): every row gets the soft-target part, gold rows also
    the supervised part. ``init`` is a compatible student to start from; ``teacher_dir`` the teacher a
    family cut from the teacher (``from_teacher``) starts from. Students trained on the same
    ``TrainingRows`` share its prepared features."""
    rows = window if isinstance(window, TrainingRows) else TrainingRows.from_window(window)
    torch.manual_seed(config.seed)
    cls = student_class(family)
    extra = {"teacher_dir": teacher_dir} if getattr(cls, "from_teacher", False) else {}
    student = cls.create(rows.label_names, config.student_size, rows.sample_inputs(), feature_names, **extra)
    if init is not None:
        student.net.load_state_dict(init.net.state_dict())
    terms = config.loss_terms if config.loss_terms is not None else get_task(rows.task).default_loss
    loss_fn = objective(terms, config)
    only_gold = config.alpha == 0
    if (rows.gold_rows() if only_gold else len(rows)) == 0:
        raise ValueError(
            f"{log_prefix}: no training rows (alpha={config.alpha} needs "
            f"{'soft labels' if config.alpha > 0 else 'gold labels'}); load more data or widen lookback_days"
        )

    def blocks(epoch: int) -> Iterator[tuple]:
        for prepared, teacher, gold, train_rows in rows.blocks(student, only_gold, epoch, config.seed):
            lengths = student.row_lengths(prepared)  # a sequence model's batches group rows of similar length
            groups = student.row_groups(prepared)  # a ranking student's batches hold whole queries
            yield (train_rows, (lambda idx, p=prepared, t=teacher, g=gold:
                                loss_fn(student.forward_rows(p, idx), t[idx], g[idx])),
                   None if lengths is None else torch.as_tensor(lengths)[train_rows],
                   None if groups is None else torch.as_tensor(groups)[train_rows])

    opt = student.optimizer(config.learning_rate, config.sparse_embedding, config.fused_optimizer)
    gen = torch.Generator().manual_seed(config.seed)
    fit_blocks(student.net, blocks, opt, config.epochs, config.batch_size, gen, log_prefix)
    return student


def distill_student(use_case: UseCase, ds: str, teacher_version: str, run: RunDir,
                    home: Path | None = None, labelling: str | None = None) -> dict[str, Any]:
    """Train the KD student and the no-KD baseline on the window ending at ``ds`` with the soft labels
    of ``labelling`` (default: the teacher version, run in fp32); save both in the run directory and
    record what they were trained on in its ``distill`` fact (returned)."""
    cfg = use_case.distill
    labelling = labelling or teacher_version
    scan = scan_window(use_case, ds, labelling, cfg.lookback_days, home)
    cache = _scratch(run)
    shutil.rmtree(cache, ignore_errors=True)  # a retried task's leftovers
    cache.mkdir(parents=True)
    try:
        return _distill(use_case, ds, teacher_version, run, home, labelling, scan,
                        TrainingRows.from_scan(scan, cfg.block_rows, cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _scratch(run: RunDir) -> Path:
    """Where this task keeps its training rows: the run directory on a local home, this worker's cache
    when the run directory is on an object store (they never leave the task)."""
    if not fs.is_remote(run.path):
        return run.path / "training_rows"
    return fs.cache_dir() / "training_rows" / run.path.parent.name / run.path.name


def save_model(model: Any, target: fs.AnyPath) -> fs.AnyPath:
    """Save a trained model into the run directory; on an object store it is built locally and published
    with a manifest (``files.publish_dir``), so a reader never sees half of it."""
    if not fs.is_remote(target):
        return model.save(target)

    def build(tmp: Path) -> None:
        model.save(tmp)
        files.write_manifest(tmp)

    files.publish_dir(target, build)
    return target


def _distill(use_case: UseCase, ds: str, teacher_version: str, run: RunDir, home: Path | None, labelling: str,
             scan: WindowScan, train: TrainingRows) -> dict[str, Any]:
    cfg = use_case.distill
    n_gold = train.gold_rows()
    log.info("window %s..%s: %d rows, %d for training (%d with gold labels) in %d shards, %d held out",
             scan.days[0], scan.days[-1], scan.count("all"), len(train), n_gold, len(scan.pieces),
             scan.count("all") - len(train))
    if train.unknown_gold:
        log.warning("%d training rows have gold labels the teacher does not know; they train on soft labels only",
                    train.unknown_gold)

    init, warm_from = None, None
    champion_version = registry.alias_version(use_case.name, home)  # what evaluation and the swap compare to
    # Warm-start from the champion as of this night's first run, so a rerun with the same inputs gives
    # the same student even after the first run promoted its own.
    night_champion = (registry.night_champion(use_case.name, ds, home, run_id=run.path.name)
                      if cfg.warm_start else None)
    if night_champion is not None:
        try:
            champ_dir = registry.verify_version(use_case.name, night_champion, home)
            if warm_startable(use_case, champ_dir, scan.label_names, cfg.student_size):
                init, warm_from = load_student(champ_dir), night_champion
                log.info("warm start from %s, the champion when the first run for ds=%s started", warm_from, ds)
            else:
                log.info("champion %s has another family, label set, size or features; training from scratch",
                         night_champion)
        except IntegrityError as exc:
            log.warning("cannot warm-start: %s; training from scratch", exc)

    family = {"family": use_case.student_family, "feature_names": use_case.input_columns}
    if getattr(student_class(use_case.student_family), "from_teacher", False):
        family["teacher_dir"] = local_teacher(use_case.resolved_teacher_dir())
    started = time.perf_counter()
    student = train_student(train, cfg, init, "student_kd", **family)
    seconds = {"student": round(time.perf_counter() - started, 2)}
    started = time.perf_counter()
    baseline = train_student(train, replace(cfg, alpha=0.0), None, "student_hard", **family)
    seconds["baseline"] = round(time.perf_counter() - started, 2)

    empty = train.empty[student.features_key()]
    if empty:
        log.warning("%d of %d training rows (%.1f%%) featurise to nothing (no word the student's featuriser "
                    "keeps): the student sees them all as one input", empty, len(train),
                    100.0 * empty / max(len(train), 1))
    models = {}
    for name, model in (("student", student), ("baseline", baseline)):
        d = save_model(model, run.model_dir(name))
        models[name] = {"dir": str(d), "version": files.content_version(d)}
    fact = {"use_case": use_case.name, "ds": ds, "teacher_version": teacher_version, "labelling": labelling,
            "distill": asdict(cfg), "window": scan.days, "warm_started_from": warm_from,
            "champion_version": champion_version, "models": models,
            "train_rows": len(train), "gold_rows": n_gold, "train_seconds": seconds, "empty_input_rows": empty,
            "empty_input_share": round(empty / max(len(train), 1), 6)}
    run.write("distill", fact)
    return fact
