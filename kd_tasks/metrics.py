"""Quality and agreement metrics on logits: plain numpy and scikit-learn, no model code."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class recall over the label names present in ``gold``."""
    codes: dict[str, int] = {}
    gold_codes = np.array([codes.setdefault(g, len(codes)) for g in gold], dtype=np.int32)
    pred_codes = np.array([codes.setdefault(p, len(codes)) for p in pred], dtype=np.int32)
    return coded_classification_metrics(gold_codes, pred_codes, list(codes))


def coded_classification_metrics(gold: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """``classification_metrics`` of label codes (``names[code]`` is the label), in the labels' name order."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    labels = sorted(set(np.unique(gold).tolist()), key=lambda c: names[c])
    recall = recall_score(gold, pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "per_class_recall": {names[c]: float(r) for c, r in zip(labels, recall)},
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


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def agreement(teacher_logits: np.ndarray, student_logits: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and mean KL(teacher || student) at T = 1.

    One logit per row (binary) is read as the two-class logits [0, z]: agreement is then the share of
    rows where both sides are on the same side of p = 0.5, and KL the Bernoulli KL.
    """
    acc = Agreement()
    acc.add(teacher_logits, student_logits)
    return acc.result()


class Agreement:
    """``agreement`` over rows seen a block at a time."""

    def __init__(self) -> None:
        self.rows, self.same, self.kl = 0, 0, 0.0

    def add(self, teacher_logits: np.ndarray, student_logits: np.ndarray) -> None:
        if teacher_logits.shape[1] == 1:
            teacher_logits = np.concatenate([np.zeros_like(teacher_logits), teacher_logits], axis=1)
            student_logits = np.concatenate([np.zeros_like(student_logits), student_logits], axis=1)
        lt, ls = log_softmax(teacher_logits), log_softmax(student_logits)
        self.kl += float((np.exp(lt) * (lt - ls)).sum(axis=1).sum(dtype=np.float64))
        self.same += int((lt.argmax(1) == ls.argmax(1)).sum())
        self.rows += len(lt)

    def result(self) -> dict[str, float]:
        n = max(self.rows, 1)
        return {"top1_agreement": self.same / n if self.rows else float("nan"),
                "mean_kl": self.kl / n if self.rows else float("nan")}
