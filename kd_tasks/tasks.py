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


TASKS: dict[str, Task] = {t.name: t for t in (Multiclass(), Binary())}
QUALITY_METRICS = {m: t.name for t in TASKS.values() for m in t.metrics}  # metric -> the task it judges


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task {name!r} is unknown; choose one of {list(TASKS)}")
    return TASKS[name]
