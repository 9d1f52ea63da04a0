"""What a task means: how gold labels become targets, what a model's outputs are called, which
metrics judge it and which loss terms distill it by default. One object per task; the stages ask the
use case's task, never which task it is. (numpy and the metrics are imported when used: DAG files
read this table when they are parsed.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .names import ConfigError

if TYPE_CHECKING:
    import numpy as np

NO_LABEL = -1  # gold index of a row that has no human label (or one the model has no output for)


class Task:
    name: str
    metrics: tuple[str, ...]  # quality metrics a gate can judge this task by
    default_loss: Mapping[str, float]  # loss terms (see kd_tasks.losses) and their weights
    agreement: bool = True  # top-1 agreement and KL with the teacher mean something for its outputs

    def output_names(self, label_column: str, labels: Sequence[Any]) -> list[str]:
        """A teacher's outputs, from the gold labels it is trained on."""
        raise NotImplementedError

    def gold_index(self, gold: Sequence[Any], label_names: Sequence[str]) -> np.ndarray:
        """The training target of each gold label; ``NO_LABEL`` where there is none (or an unknown one)."""
        raise NotImplementedError

    def scorer(self, label_names: Sequence[str]) -> "Scorer":
        """An accumulator of the task's metrics over blocks of rows (``add``, then ``result``)."""
        raise NotImplementedError

    def quality(self, label_names: Sequence[str], gold: Sequence[Any], logits: np.ndarray,
                groups: Sequence[Any] | None = None) -> dict[str, Any]:
        """The task's metrics of ``logits`` against ``gold``; ``groups`` (the use case's grouping key per
        row) is for tasks whose metrics are per group."""
        scorer = self.scorer(label_names)
        scorer.add(gold, logits, groups)
        return scorer.result()


class Scorer:
    """A task's metrics over rows seen a block at a time: it keeps what the metrics need per row (a
    predicted class, a score), never the logits."""

    def add(self, gold: Sequence[Any], logits: np.ndarray, groups: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, Any]:
        raise NotImplementedError

    def rows(self) -> int:
        """Rows seen so far."""
        raise NotImplementedError

    def weighted(self, metric: str, weights: np.ndarray) -> np.ndarray:
        """``metric`` of the rows seen, once per row of ``weights`` (B, rows): each row's count in a
        bootstrap resample (``kd_tasks.metrics.paired_bootstrap``)."""
        raise NotImplementedError

    def versus(self, teacher: "Scorer") -> dict[str, Any]:
        """Metrics of these rows' outputs against the teacher's scorer of the same rows (a ranking's
        per-query rank agreement); none by default (``metrics.Agreement`` compares class outputs)."""
        return {}


class MulticlassScorer(Scorer):
    """Gold labels and argmax predictions as codes of the label names seen (the teacher's first, then
    any gold label it does not know), so a class the model never predicts still counts."""

    def __init__(self, label_names: Sequence[str]):
        import numpy as np

        self.codes: dict[str, int] = {str(n): i for i, n in enumerate(label_names)}
        self.pred_code = np.array([self.codes[str(n)] for n in label_names], dtype=np.int32)
        self.gold: list[np.ndarray] = []
        self.pred: list[np.ndarray] = []

    def add(self, gold, logits, groups=None):
        import numpy as np

        self.gold.append(np.fromiter((self.codes.setdefault(str(g), len(self.codes)) for g in gold), np.int32,
                                     len(gold)))
        self.pred.append(self.pred_code[logits.argmax(axis=1)] if len(gold) else np.zeros(0, np.int32))

    def result(self):
        from . import metrics

        gold, pred = self._arrays()
        if not len(gold):
            return {"accuracy": None, "macro_f1": None, "per_class_recall": {}}
        return metrics.coded_classification_metrics(gold, pred, list(self.codes))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row's gold and predicted code, the blocks joined once."""
        import numpy as np

        if len(self.gold) != 1:
            self.gold = [np.concatenate(self.gold) if self.gold else np.zeros(0, np.int32)]
            self.pred = [np.concatenate(self.pred) if self.pred else np.zeros(0, np.int32)]
        return self.gold[0], self.pred[0]

    def rows(self):
        return len(self._arrays()[0])

    def weighted(self, metric, weights):
        from . import metrics

        gold, pred = self._arrays()
        if metric == "macro_f1":
            return metrics.weighted_macro_f1(gold, pred, weights, len(self.codes))
        if metric == "accuracy":
            return metrics.weighted_accuracy(gold, pred, weights)
        raise ValueError(f"no weighted form of {metric!r} for a multiclass task")

    def support(self) -> dict[str, int]:
        """Held-out rows per gold label."""
        import numpy as np

        gold, _ = self._arrays()
        names = list(self.codes)
        return {names[c]: int(k) for c, k in enumerate(np.bincount(gold, minlength=len(names))) if k}


class BinaryScorer(Scorer):
    def __init__(self):
        self.gold: list[int] = []
        self.scores: list[np.ndarray] = []

    def add(self, gold, logits, groups=None):
        import numpy as np

        self.gold.extend(int(g) for g in gold)
        self.scores.append(np.asarray(logits, dtype=np.float64).reshape(-1))

    def result(self):
        from . import metrics

        return metrics.binary_metrics(self.gold, self._scores())

    def _scores(self) -> np.ndarray:
        import numpy as np

        if len(self.scores) != 1:
            self.scores = [np.concatenate(self.scores) if self.scores else np.zeros(0)]
        return self.scores[0]

    def rows(self):
        return len(self.gold)

    def weighted(self, metric, weights):
        import numpy as np

        from . import metrics

        return metrics.weighted_ranking(np.asarray(self.gold, np.int64), self._scores(), weights, metric)

    def support(self) -> dict[str, int]:
        positives = sum(self.gold)
        return {"0": len(self.gold) - positives, "1": positives}


class Multiclass(Task):
    """Softmax over the label names; gold labels are label names."""

    name = "multiclass"
    metrics = ("macro_f1", "accuracy")
    default_loss = {"kd": 1.0}

    def output_names(self, label_column, labels):
        return sorted({str(v) for v in labels if v is not None})

    def gold_index(self, gold, label_names):
        import numpy as np

        pos = {n: i for i, n in enumerate(label_names)}
        return np.array([pos.get(str(g), NO_LABEL) if g is not None else NO_LABEL for g in gold], dtype=np.int64)

    def scorer(self, label_names):
        return MulticlassScorer(label_names)


class Binary(Task):
    """One logit: of the positive label (the label column); gold labels are 0 or 1."""

    name = "binary"
    metrics = ("auc", "pr_auc")
    default_loss = {"binary_kd": 1.0}

    def output_names(self, label_column, labels):
        return [label_column]

    def gold_index(self, gold, label_names):
        import numpy as np

        return np.array([int(g) if g is not None and int(g) in (0, 1) else NO_LABEL for g in gold], dtype=np.int64)

    def scorer(self, label_names):
        return BinaryScorer()


class RankingScorer(Scorer):
    """Graded relevance of (query, candidate) pairs: per query, the candidates ranked by the one
    output (the relevance score). Rows without a grade (unjudged pairs) are not judged."""

    def __init__(self, k: int = 10):
        self.k = k
        self.grades: list[float] = []
        self.scores: list[np.ndarray] = []
        self.groups: list[str] = []
        self._per_query: dict[str, Any] | None = None

    def add(self, gold, logits, groups=None):
        import numpy as np

        if groups is None:
            raise ValueError("a ranking task is scored per query: the use case must declare its group_column")
        self.grades.extend(np.nan if g is None else float(g) for g in gold)
        self.scores.append(np.asarray(logits, dtype=np.float64).reshape(len(gold), -1)[:, 0])
        self.groups.extend(str(g) for g in groups)
        self._per_query = None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        import numpy as np

        if len(self.scores) != 1:
            self.scores = [np.concatenate(self.scores) if self.scores else np.zeros(0)]
        grades = np.asarray(self.grades, dtype=np.float64)
        judged = np.isfinite(grades)
        return grades[judged], self.scores[0][judged], [g for g, j in zip(self.groups, judged) if j]

    def result(self):
        from . import metrics

        grades, scores, groups = self._arrays()
        if not len(grades):
            return {f"ndcg_at_{self.k}": None, "mrr": None, "spearman": None, "queries": 0}
        out = metrics.ranking_metrics(groups, grades, scores, k=self.k)
        out.pop("per_query_ndcg")
        return out

    def rows(self):
        return len(self.grades)

    def _query_values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Per judged query: ``metric`` (NaN where undefined) and the index of its first row among
        all rows seen (a resample's weight of the query is that row's)."""
        import numpy as np

        from . import metrics

        if self._per_query is None:
            grades = np.asarray(self.grades, dtype=np.float64)
            self._arrays()  # joins the blocks' scores
            scores = self.scores[0]
            judged = np.flatnonzero(np.isfinite(grades))
            groups = [self.groups[i] for i in judged]
            first, ndcg, rr = [], [], []
            for rows in metrics.query_groups(groups):
                at = judged[rows]
                first.append(at[0])
                n = metrics.ndcg_at_k(grades[at], scores[at], self.k)
                r = metrics.reciprocal_rank(grades[at], scores[at])
                ndcg.append(np.nan if n is None else n)
                rr.append(np.nan if r is None else r)
            self._per_query = {"first": np.asarray(first, np.int64), f"ndcg_at_{self.k}": np.asarray(ndcg),
                               "mrr": np.asarray(rr)}
        if metric not in self._per_query:
            raise ValueError(f"no weighted form of {metric!r} for a ranking task")
        return self._per_query[metric], self._per_query["first"]

    def weighted(self, metric, weights):
        """The mean of the per-query ``metric`` over the queries where it is defined, each query counted
        as often as the resample drew it (the weight of its first row: resamples draw whole queries)."""
        import numpy as np

        values, first = self._query_values(metric)
        defined = np.isfinite(values)
        w = weights[:, first[defined]].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ values[defined]) / w.sum(axis=1)

    def versus(self, teacher):
        """Per-query Kendall tau of these scores against the teacher's, on the same judged rows."""
        import numpy as np

        from . import metrics

        grades, scores, groups = self._arrays()
        _, t_scores, t_groups = teacher._arrays()
        if t_groups != groups:
            raise ValueError("rank agreement needs the teacher's scores of the same rows")
        taus = [metrics.kendall_tau(t_scores[rows], scores[rows]) for rows in metrics.query_groups(groups)]
        kept = [t for t in taus if t is not None]
        return {"kendall_tau_vs_teacher": float(np.mean(kept)) if kept else None, "queries_kendall_tau": len(kept)}

    def support(self) -> dict[str, int]:
        grades, _, groups = self._arrays()
        return {"judged_pairs": len(grades), "queries": len(set(groups))}


class Ranking(Task):
    """One output per (query, candidate) row: its relevance score. Gold labels are graded relevance
    (a number, e.g. the mean of human ratings on 1..3; None for an unjudged pair); quality is
    NDCG@10 per query with graded gains, mean over the queries."""

    name = "ranking"
    metrics = ("ndcg_at_10", "mrr")
    default_loss = {"pointwise_kd": 1.0, "listwise_kd": 1.0, "graded_gold": 1.0}
    agreement = False

    def output_names(self, label_column, labels):
        return [label_column]

    def gold_index(self, gold, label_names):
        """The grade of each row as a float; ``NO_LABEL`` (-1) for an unjudged pair or a grade that is not
        a number >= 0."""
        import math

        import numpy as np

        def grade(g: Any) -> float:
            try:
                v = float(g)
            except (TypeError, ValueError):
                return float(NO_LABEL)
            return v if math.isfinite(v) and v >= 0 else float(NO_LABEL)

        return np.array([grade(g) for g in gold], dtype=np.float64)

    def scorer(self, label_names):
        return RankingScorer()


TASKS: dict[str, Task] = {t.name: t for t in (Multiclass(), Binary(), Ranking())}
QUALITY_METRICS = {m: t.name for t in TASKS.values() for m in t.metrics}  # metric -> the task it judges


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task {name!r} is unknown; choose one of {list(TASKS)}")
    return TASKS[name]
