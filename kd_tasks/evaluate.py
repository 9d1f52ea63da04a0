"""Stage 4: evaluate teacher, student, no-KD baseline and champion on the fixed held-out slice.

Quality is measured on gold-labelled held-out rows of the window; agreement and KL against the
teacher on the same rows; size as parameters and bytes on disk; CPU latency by one harness for
every model (tokenisation / featurisation included, batch 1 and batch 64).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import files, registry
from .config import UseCase
from .data import load_window
from .families import load_student, take
from .files import IntegrityError

log = logging.getLogger(__name__)


def classification_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class recall over the label names present in ``gold``."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    labels = sorted(set(gold))
    recall = recall_score(gold, pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "per_class_recall": {label: float(r) for label, r in zip(labels, recall)},
    }


def binary_metrics(gold: Sequence[int], logits: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """ROC-AUC, PR-AUC (average precision), log-loss and expected calibration error of one logit per row.

    ECE: rows are put in ``bins`` equal-width probability bins; the mean |mean(p) - mean(y)| over bins,
    weighted by each bin's share of rows. AUC and PR-AUC are None when ``gold`` has a single class.
    """
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    y = np.asarray(gold, dtype=np.int64)
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64).reshape(-1)))
    both = len(np.unique(y)) == 2
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    ece = sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    return {
        "auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "logloss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])) if len(y) else None,
        "ece": float(ece) if len(y) else None,
        "positives": int(y.sum()), "positive_rate": float(y.mean()) if len(y) else None,
    }


def quality_metrics(task: str, label_names: Sequence[str], gold: Sequence[Any], logits: np.ndarray) -> dict[str, Any]:
    """The task's metrics of ``logits`` against ``gold`` (label names, or 0/1 for binary tasks)."""
    if task == "binary":
        return binary_metrics([int(g) for g in gold], logits)
    if not len(gold):
        return {"accuracy": None, "macro_f1": None, "per_class_recall": {}}
    return classification_metrics([str(g) for g in gold], _predict_names(label_names, logits))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def agreement(teacher_logits: np.ndarray, student_logits: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and mean KL(teacher || student) at T = 1.

    One logit per row (binary) is read as the two-class logits [0, z]: agreement is then the share of
    rows where both sides are on the same side of p = 0.5, and KL the Bernoulli KL.
    """
    if teacher_logits.shape[1] == 1:
        teacher_logits = np.concatenate([np.zeros_like(teacher_logits), teacher_logits], axis=1)
        student_logits = np.concatenate([np.zeros_like(student_logits), student_logits], axis=1)
    lt, ls = log_softmax(teacher_logits), log_softmax(student_logits)
    kl = (np.exp(lt) * (lt - ls)).sum(axis=1)
    return {"top1_agreement": float((lt.argmax(1) == ls.argmax(1)).mean()), "mean_kl": float(kl.mean())}


def latency(predict: Callable[[Any], Any], inputs: Any, batch_size: int,
            repeats: int, warmup: int = 3) -> dict[str, float]:
    """p50 / p95 wall-clock milliseconds of ``predict`` on batches of ``batch_size`` rows (texts or feature
    rows; preprocessing inside ``predict`` is part of the time)."""
    rng = np.random.default_rng(0)
    batches = [take(inputs, rng.integers(0, len(inputs), batch_size)) for _ in range(warmup + repeats)]
    for b in batches[:warmup]:
        predict(b)
    times = []
    for b in batches[warmup:]:
        t0 = time.perf_counter()
        predict(b)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def latency_profile(predict: Callable[[Any], Any], texts: Any,
                    repeats_b1: int = 50, repeats_b64: int = 10) -> dict[str, float]:
    b1 = latency(predict, texts, 1, repeats_b1)
    b64 = latency(predict, texts, 64, repeats_b64)
    return {"p50_ms_b1": b1["p50_ms"], "p95_ms_b1": b1["p95_ms"],
            "p50_ms_b64": b64["p50_ms"], "p95_ms_b64": b64["p95_ms"],
            "rows_per_s_b64": 64_000.0 / b64["p50_ms"]}


def _predict_names(label_names: Sequence[str], logits: np.ndarray) -> list[str]:
    return [label_names[i] for i in logits.argmax(axis=1)]


def evaluate_student(use_case: UseCase, ds: str, teacher_version: str, run_dir: str | Path,
                     champion_version: str | None = None, home: Path | None = None,
                     measure_latency: bool = True) -> dict[str, Any]:
    """Write ``run_dir/evaluation.json`` and return it.

    ``champion_version`` is the production version read when the run started; passing it keeps
    evaluation and the later compare-and-swap promotion about the same champion.
    """
    from .teacher import load_teacher

    run_dir = Path(run_dir)
    window = load_window(use_case, ds, teacher_version, use_case.distill.lookback_days, home,
                         with_teacher_inputs=measure_latency)
    held = window.subset(window.holdout & np.array([g is not None for g in window.gold], dtype=bool))
    log.info("evaluating on %d gold-labelled held-out rows (window %s..%s)", len(held.ids),
             window.days[0] if window.days else ds, ds)

    models: dict[str, dict[str, Any]] = {"teacher": {"version": teacher_version}}
    students = {"student": load_student(run_dir / "student"), "baseline": load_student(run_dir / "baseline")}
    champ_path = None
    if champion_version is not None:
        models["champion"] = {"version": champion_version}
        try:  # a damaged champion must not block every later night: it is reported, not compared
            champ_path = registry.verify_version(use_case.name, champion_version, home)
            students["champion"] = load_student(champ_path)
        except IntegrityError as exc:
            log.error("champion %s cannot be evaluated: %s", champion_version, exc)
            models["champion"]["error"] = str(exc)
    for name in students:
        models.setdefault(name, {})

    logits = {"teacher": held.teacher_logits, **{n: s.logits(held.inputs) for n, s in students.items()}}
    for name, z in logits.items():
        label_names = window.label_names if name == "teacher" else students[name].label_names
        models[name].update(quality_metrics(use_case.task, label_names, held.gold, z))
        if name != "teacher" and students[name].label_names == window.label_names and len(z):
            models[name].update(agreement(held.teacher_logits, z))

    teacher = load_teacher(use_case.resolved_teacher_dir())
    models["teacher"].update({"params": teacher.num_parameters(), "bytes": teacher.bytes_on_disk()})
    for name, s in students.items():
        d = run_dir / name if name != "champion" else champ_path
        models[name].update({"params": s.num_parameters(), "bytes": s.bytes_on_disk(d)})
    if measure_latency and len(window.ids):
        n = min(512, len(window.ids))
        sample, teacher_sample = take(window.inputs, np.arange(n)), take(window.teacher_inputs, np.arange(n))
        models["teacher"].update(latency_profile(lambda b: teacher.logits(b, batch_size=64), teacher_sample))
        models["student"].update(latency_profile(students["student"].logits, sample))
        log.info("latency p50 b1: teacher %.2f ms, student %.3f ms", models["teacher"]["p50_ms_b1"],
                 models["student"]["p50_ms_b1"])
    report = {"use_case": use_case.name, "ds": ds, "task": use_case.task, "metric": use_case.gate.metric,
              "eval_rows": len(held.ids), "window": window.days, "teacher_version": teacher_version,
              "champion_version": champion_version, "models": models}
    files.write_json(run_dir / "evaluation.json", report)
    metric = use_case.gate.metric
    for name, m in models.items():
        log.info("%-9s %s %s params %s", name, metric, _fmt(m.get(metric)), m.get("params"))
    return report


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"
