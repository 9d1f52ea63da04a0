"""Stage 3: distill a student from the window's soft labels (plus gold labels where they exist).

Also trains the no-distillation baseline: the same student on the same gold rows with the same
budget and alpha = 0 (the supervised part only), so every night shows what the teacher added.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import DistillConfig, UseCase
from ..losses import objective
from ..models import load_student, student_class, warm_startable
from ..models.training import fit
from ..storage import files, registry
from ..storage.files import IntegrityError
from ..storage.runs import RunDir
from ..tasks import NO_LABEL, get_task
from .window import Window, load_window

log = logging.getLogger(__name__)


def train_student(window: Window, config: DistillConfig, init: Any = None, log_prefix: str = "student",
                  family: str = "hashed_ngram_mlp", feature_names: Sequence[str] = (),
                  features: dict | None = None) -> Any:
    """Fit a student of ``family`` on ``window`` with the objective of ``config.loss_terms`` (default:
    the task's): every row gets the soft-target part, gold rows also the supervised part. ``init`` is a
    compatible student to start from. ``features`` caches the window's prepared features between the
    students of one night (they are computed once per featuriser)."""
    torch.manual_seed(config.seed)
    student = student_class(family).create(window.label_names, config.student_size, window.inputs, feature_names)
    if init is not None:
        student.net.load_state_dict(init.net.state_dict())
    terms = config.loss_terms if config.loss_terms is not None else get_task(window.task).default_loss
    loss_fn = objective(terms, config)
    gold_index = window.gold_index()
    gold = torch.from_numpy(gold_index)
    rows = np.arange(len(window.ids)) if config.alpha > 0 else np.flatnonzero(gold_index != NO_LABEL)
    if len(rows) == 0:
        raise ValueError(
            f"{log_prefix}: no training rows (alpha={config.alpha} needs "
            f"{'soft labels' if config.alpha > 0 else 'gold labels'}); load more data or widen lookback_days"
        )
    teacher = torch.from_numpy(window.teacher_logits)
    key = student.features_key()
    prepared = None if features is None else features.get(key)
    if prepared is None:
        prepared = student.prepare(window.inputs)
        if features is not None:
            features[key] = prepared
    opt = torch.optim.AdamW(student.net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(config.seed)
    fit(student.net, torch.from_numpy(rows),
        lambda idx: loss_fn(student.forward_rows(prepared, idx), teacher[idx], gold[idx]),
        opt, config.epochs, config.batch_size, gen, log_prefix)
    return student


def distill_student(use_case: UseCase, ds: str, teacher_version: str, run: RunDir,
                    home: Path | None = None, labelling: str | None = None) -> dict[str, Any]:
    """Train the KD student and the no-KD baseline on the window ending at ``ds`` with the soft labels
    of ``labelling`` (default: the teacher version, run in fp32); save both in the run directory and
    record what they were trained on in its ``distill`` fact (returned)."""
    cfg = use_case.distill
    labelling = labelling or teacher_version
    window = load_window(use_case, ds, labelling, cfg.lookback_days, home)
    train = window.subset(~window.holdout)
    gold_index = train.gold_index()
    n_gold = int((gold_index != NO_LABEL).sum())
    unknown_gold = sum(1 for g, i in zip(train.gold, gold_index) if g is not None and i == NO_LABEL)
    log.info("window %s..%s: %d rows, %d for training (%d with gold labels), %d held out",
             window.days[0], window.days[-1], len(window.ids), len(train.ids), n_gold, int(window.holdout.sum()))
    if unknown_gold:
        log.warning("%d training rows have gold labels the teacher does not know; they train on soft labels only",
                    unknown_gold)

    init, warm_from = None, None
    champion_version = registry.alias_version(use_case.name, home)  # what evaluation and the swap compare to
    # Warm-start from the champion as of this night's first run, so a rerun with the same inputs gives
    # the same student even after the first run promoted its own.
    night_champion = (registry.night_champion(use_case.name, ds, home, run_id=run.path.name)
                      if cfg.warm_start else None)
    if night_champion is not None:
        try:
            champ_dir = registry.verify_version(use_case.name, night_champion, home)
            if warm_startable(use_case, champ_dir, train.label_names, cfg.student_size):
                init, warm_from = load_student(champ_dir), night_champion
                log.info("warm start from %s, the champion when the first run for ds=%s started", warm_from, ds)
            else:
                log.info("champion %s has another family, label set, size or features; training from scratch",
                         night_champion)
        except IntegrityError as exc:
            log.warning("cannot warm-start: %s; training from scratch", exc)

    family = {"family": use_case.student_family, "feature_names": use_case.input_columns, "features": {}}
    student = train_student(train, cfg, init, "student_kd", **family)
    baseline = train_student(train, replace(cfg, alpha=0.0), None, "student_hard", **family)

    empty = student.empty_inputs(train.inputs)
    if empty:
        log.warning("%d of %d training rows (%.1f%%) featurise to nothing (no word the student's featuriser "
                    "keeps): the student sees them all as one input", empty, len(train.ids),
                    100.0 * empty / max(len(train.ids), 1))
    models = {}
    for name, model in (("student", student), ("baseline", baseline)):
        d = model.save(run.model_dir(name))
        models[name] = {"dir": str(d), "version": files.content_version(d)}
    fact = {"use_case": use_case.name, "ds": ds, "teacher_version": teacher_version, "labelling": labelling,
            "distill": asdict(cfg), "window": window.days, "warm_started_from": warm_from,
            "champion_version": champion_version, "models": models,
            "train_rows": len(train.ids), "gold_rows": n_gold, "empty_input_rows": empty,
            "empty_input_share": round(empty / max(len(train.ids), 1), 6)}
    run.write("distill", fact)
    return fact
