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
        "confusions": top_confusions(gold, pred, names),
    }


def top_confusions(gold: np.ndarray, pred: np.ndarray, names: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` most frequent (gold, predicted) pairs with gold != predicted: rows and share of the
    gold class's rows, most rows first (ties by name)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    wrong = gold != pred
    if not wrong.any():
        return []
    pairs, counts = np.unique(np.stack([gold[wrong], pred[wrong]], axis=1), axis=0, return_counts=True)
    support = dict(zip(*np.unique(gold, return_counts=True)))
    order = sorted(range(len(pairs)), key=lambda i: (-counts[i], names[pairs[i][0]], names[pairs[i][1]]))[:top]
    return [{"gold": names[pairs[i][0]], "predicted": names[pairs[i][1]], "rows": int(counts[i]),
             "share_of_gold": float(counts[i] / support[pairs[i][0]])} for i in order]


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
        # the reliability diagram: per non-empty bin, the mean predicted probability and the observed rate
        "reliability": [{"bin": b, "mean_p": float(p[which == b].mean()), "observed": float(y[which == b].mean()),
                         "rows": int((which == b).sum())} for b in range(bins) if (which == b).any()],
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


# --- paired bootstrap -------------------------------------------------------------------------------
# A resample draws the evaluation's units (rows, or groups where the use case declares a grouping key)
# with replacement; both models are scored on the same draw, so the interval is of their difference on
# the same rows. Weights are the draw's counts per row, B resamples at a time (a (B, rows) matrix).


def weighted_macro_f1(gold: np.ndarray, pred: np.ndarray, weights: np.ndarray, n_codes: int) -> np.ndarray:
    """Macro-F1 over the classes present in each resample (as ``coded_classification_metrics``): one
    value per row of ``weights`` (B, n)."""
    eye = np.eye(n_codes, dtype=np.float32)
    gold_1h, pred_1h = eye[gold], eye[pred]
    w = weights.astype(np.float32, copy=False)
    tp = w @ (gold_1h * (gold == pred)[:, None])
    support = w @ gold_1h
    denominator = support + w @ pred_1h
    present = support > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def weighted_accuracy(gold: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = weights.astype(np.float32, copy=False)
    return (w @ (gold == pred).astype(np.float32)) / np.maximum(w.sum(axis=1), 1)


def weighted_ranking(gold: np.ndarray, scores: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
    """ROC-AUC (ties count one half) or average precision (sklearn's step definition) of ``scores``
    for binary ``gold``, per resample; NaN where a resample has a single class."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], gold[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores, highest first
    w = weights[:, order].astype(np.float64)
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "auc":
            neg_below = total_neg[:, None] - np.cumsum(neg, axis=1)
            out = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
        elif metric == "pr_auc":
            tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            out = (pos / total_pos[:, None] * precision).sum(axis=1)
        else:
            raise ValueError(f"no weighted form of {metric!r}")
    out[(total_pos == 0) | (total_neg == 0)] = np.nan
    return out


def resample_weights(units: np.ndarray | None, n_rows: int, resamples: int, seed: int) -> Any:
    """Yield (B, n_rows) count matrices, ``resamples`` rows in all: each row draws the units (row
    indices, or ``units``: each row's group code) with replacement and gives every row its unit's count."""
    rng = np.random.default_rng(seed)
    n_units = n_rows if units is None else int(units.max()) + 1 if len(units) else 0
    chunk = max(1, min(100, 4_000_000 // max(n_rows, 1)))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=b).astype(np.float32)
        yield counts if units is None else counts[:, units]
        done += b


def paired_bootstrap(a: Any, b: Any, metric: str, groups: Sequence[Any] | None = None, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The difference ``b - a`` of ``metric`` between two scorers (``kd_tasks.tasks.Scorer``) that saw
    the same rows in the same order: its value on the rows, and a percentile bootstrap interval
    (``confidence``) over ``resamples`` paired resamples of the rows, or of the groups when ``groups``
    (one key per row) is given."""
    n = a.rows()
    if b.rows() != n:
        raise ValueError(f"paired bootstrap over different rows: {n} and {b.rows()}")
    delta = _diff(b.result().get(metric), a.result().get(metric))
    out: dict[str, Any] = {"metric": metric, "delta": delta, "low": None, "high": None, "confidence": confidence,
                           "resamples": resamples, "unit": "groups" if groups is not None else "rows",
                           "units": n if groups is None else len(set(groups))}
    if delta is None or n < 2:
        return out
    units = None
    if groups is not None:
        _, units = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    diffs = np.concatenate([b.weighted(metric, w) - a.weighted(metric, w)
                            for w in resample_weights(units, n, resamples, seed)])
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs):
        tail = (1 - confidence) / 2 * 100
        out["low"], out["high"] = (float(x) for x in np.percentile(diffs, [tail, 100 - tail]))
    return out


def _diff(x: Any, y: Any) -> float | None:
    return None if x is None or y is None else float(x) - float(y)


# Ranking: rows are (query, product) pairs; a query's rows are its candidates. Grades are the human
# relevance (Home Depot: the mean rating on 1..3); a candidate is highly relevant at grade >= HIGHLY_RELEVANT.
HIGHLY_RELEVANT = 2.67


def graded_gain(grades: np.ndarray, lowest: float = 1.0) -> np.ndarray:
    """The NDCG gain of a grade: 2^(grade - lowest) - 1 (1 -> 0, 2 -> 1, 3 -> 3 on a 1..3 scale), so an
    irrelevant product adds nothing and a perfect one three times a partial one."""
    return np.exp2(np.asarray(grades, dtype=np.float64) - lowest) - 1.0


def query_groups(queries: Sequence[Any]) -> list[np.ndarray]:
    """The row indices of each query, in order of the query's first row."""
    _, first, codes = np.unique(np.asarray([str(q) for q in queries]), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    members = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(first)))
    per_code = np.split(members, bounds[:-1])
    return [per_code[c] for c in order]


def _ranked(scores: np.ndarray) -> np.ndarray:
    """Candidates by score, best first; ties keep row order (deterministic)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def ndcg_at_k(grades: np.ndarray, scores: np.ndarray, k: int = 10, lowest: float = 1.0) -> float | None:
    """NDCG@k of one query's candidates: DCG of the top k by ``scores`` (gain ``graded_gain``, discount
    1/log2(rank + 1)) over the DCG of the top k by grade; None when no candidate has a gain."""
    gains = graded_gain(grades, lowest)
    discount = 1.0 / np.log2(np.arange(2, min(k, len(gains)) + 2))
    ideal = (np.sort(gains)[::-1][:k] * discount).sum()
    if ideal <= 0:
        return None
    return float((gains[_ranked(scores)][:k] * discount).sum() / ideal)


def reciprocal_rank(grades: np.ndarray, scores: np.ndarray, relevant_at: float = HIGHLY_RELEVANT) -> float | None:
    """1 / rank of the first highly relevant candidate by ``scores``; None when the query has none."""
    hits = np.flatnonzero(np.asarray(grades, dtype=np.float64)[_ranked(scores)] >= relevant_at - 1e-9)
    return None if not len(hits) else 1.0 / (hits[0] + 1)


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall's tau-b of two scorings of one query's candidates (teacher and student); None for fewer
    than 2 candidates or a constant scoring."""
    from scipy.stats import kendalltau

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(kendalltau(a, b).statistic)


def recall_at_k(retrieved: Sequence[Any], relevant: set[Any], k: int = 100) -> float | None:
    """Share of ``relevant`` items among the first ``k`` of ``retrieved``; None without relevant items."""
    if not relevant:
        return None
    return len(relevant.intersection(list(retrieved)[:k])) / len(relevant)


# query buckets of the report's NDCG breakdown: by how many judged candidates a query has
CANDIDATE_BUCKETS = (("1-3 candidates", 1, 3), ("4-6 candidates", 4, 6), ("7-10 candidates", 7, 10),
                     ("11+ candidates", 11, 1 << 30))


def ranking_metrics(queries: Sequence[Any], grades: Sequence[float], scores: np.ndarray,
                    teacher_scores: np.ndarray | None = None, k: int = 10, lowest: float = 1.0,
                    relevant_at: float = HIGHLY_RELEVANT) -> dict[str, Any]:
    """Per-query and mean ranking quality of ``scores`` on judged pairs: NDCG@k (graded gains), MRR of
    the first highly relevant product, Spearman's rho of score and grade over all pairs, and with
    ``teacher_scores`` each query's Kendall tau against the teacher. Means are over the queries where a
    metric is defined (``queries_*`` says how many)."""
    from scipy.stats import spearmanr

    grades_ = np.asarray(grades, dtype=np.float64)
    scores_ = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(grades_) != len(scores_) or len(queries) != len(scores_):
        raise ValueError(f"ranking metrics need one query, grade and score per row: got {len(queries)}, "
                         f"{len(grades_)}, {len(scores_)}")
    per: dict[str, list[float | None]] = {"ndcg": [], "rr": [], "tau": []}
    sizes = []
    for rows in query_groups(queries):
        sizes.append(len(rows))
        per["ndcg"].append(ndcg_at_k(grades_[rows], scores_[rows], k, lowest))
        per["rr"].append(reciprocal_rank(grades_[rows], scores_[rows], relevant_at))
        if teacher_scores is not None:
            per["tau"].append(kendall_tau(np.asarray(teacher_scores, dtype=np.float64).reshape(-1)[rows],
                                          scores_[rows]))

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    rho = spearmanr(scores_, grades_).statistic if len(scores_) > 1 and np.ptp(scores_) > 0 else None
    out = {f"ndcg_at_{k}": mean(per["ndcg"]), "mrr": mean(per["rr"]),
           "spearman": None if rho is None or not np.isfinite(rho) else float(rho),
           "queries": len(per["ndcg"]), f"queries_ndcg_at_{k}": sum(v is not None for v in per["ndcg"]),
           "queries_mrr": sum(v is not None for v in per["rr"]), "per_query_ndcg": per["ndcg"],
           "ndcg_by_candidates": {name: mean([v for v, n in zip(per["ndcg"], sizes) if lo <= n <= hi])
                                  for name, lo, hi in CANDIDATE_BUCKETS
                                  if any(lo <= n <= hi for n in sizes)}}
    if teacher_scores is not None:
        out["kendall_tau_vs_teacher"] = mean(per["tau"])
        out["queries_kendall_tau"] = sum(v is not None for v in per["tau"])
    return out
