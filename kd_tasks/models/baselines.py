"""Cheap baselines a new teacher must beat on validation (``kd_tasks.stages.teacher_gate``), trained
on the same gold rows and the same inputs as the teacher: TF-IDF (word 1-2-grams + character 3-5-grams,
sublinear tf) + logistic regression for text, its C chosen on the validation rows; gradient-boosted
trees for feature columns (serving-time and privileged alike). A family names its baselines in
``models.FAMILIES``.

Each ``fit`` returns (predict, info): ``predict(inputs)`` gives logits-like scores in the teacher's
output order ((n, classes) log-probabilities, or (n, 1) log-odds for a binary task), so the task's
metrics and the paired bootstrap read them as they read the teacher's.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)
Predict = Callable[[Any], np.ndarray]


def _scores(proba: np.ndarray, classes: Sequence[int], n_outputs: int, binary: bool) -> np.ndarray:
    """Class probabilities of a fitted model (its ``classes_`` are output indices) as logits."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    if binary:
        positive = list(classes).index(1) if 1 in classes else None
        q = p[:, positive] if positive is not None else np.full(len(p), 1e-7)
        return np.log(q / (1 - q)).reshape(-1, 1).astype(np.float32)
    out = np.full((len(p), n_outputs), np.log(1e-7), np.float32)
    out[:, list(classes)] = np.log(p)
    return out


class TfidfLR:
    """A fitted TF-IDF + logistic regression (picklable: the ``tfidf_lr`` teacher family saves it)."""

    def __init__(self, features: Any, model: Any, n_outputs: int, binary: bool):
        self.features, self.model, self.n_outputs, self.binary = features, model, n_outputs, binary

    def scores(self, texts: Any) -> np.ndarray:
        return _scores(self.model.predict_proba(self.features.transform(list(texts))), self.model.classes_,
                       self.n_outputs, self.binary)


def fit_tfidf_lr(inputs: Sequence[str], gold: np.ndarray, n_outputs: int, binary: bool, validation: Any = None,
                 grid: Sequence[float] = (3.0, 10.0, 30.0)) -> tuple[TfidfLR, dict[str, Any]]:
    """TF-IDF + logistic regression on the texts; C is chosen on ``validation`` (``training.Validation``;
    without it, C = 10)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_union

    started = time.perf_counter()
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2))
    x = features.fit_transform(list(inputs))
    xv = None if validation is None else features.transform(list(validation.inputs))
    best: tuple[float, float, Any] = (float("-inf"), 10.0, None)
    tried = {}
    for c in grid if validation is not None else (10.0,):
        # converged (tol 1e-4): at scikit-learn's 1e-3 lbfgs stopped after 24 iterations on the fashion
        # titles and lost 0.09 test macro-F1. Each C starts afresh: started from another C's solution,
        # lbfgs finds the (sample-averaged) gradient already below tol and stops at once.
        model = LogisticRegression(C=c, max_iter=1000, tol=1e-4).fit(x, gold)
        if xv is None:
            best = (float("nan"), c, model)
            break
        score = validation.score(_scores(model.predict_proba(xv), model.classes_, n_outputs, binary))
        tried[str(c)] = round(score, 6)
        log.info("tfidf_lr C=%s: validation %s %.4f (%d iterations)", c, validation.metric, score, int(model.n_iter_[0]))
        if score > best[0]:
            best = (score, c, model)
    fitted = TfidfLR(features, best[2], n_outputs, binary)
    return fitted, {"C": best[1], "validation_by_C": tried,
                    "params": int(best[2].coef_.size + best[2].intercept_.size),
                    "train_s": round(time.perf_counter() - started, 1)}


def tfidf_lr(inputs: Sequence[str], gold: np.ndarray, n_outputs: int, binary: bool, validation: Any,
             grid: Sequence[float] = (3.0, 10.0, 30.0)) -> tuple[Predict, dict[str, Any]]:
    """The TF-IDF + LR baseline (``fit_tfidf_lr``) as (predict, info)."""
    fitted, info = fit_tfidf_lr(inputs, gold, n_outputs, binary, validation, grid)
    return fitted.scores, info


def boosted_trees(inputs: np.ndarray, gold: np.ndarray, n_outputs: int, binary: bool,
                  validation: Any) -> tuple[Predict, dict[str, Any]]:
    """Histogram gradient-boosted trees on the feature columns (scikit-learn's, early stopping on a
    share of the training rows)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    started = time.perf_counter()
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, early_stopping=True, random_state=0)
    model.fit(np.asarray(inputs, dtype=np.float32), gold)

    def predict(x: Any) -> np.ndarray:
        return _scores(model.predict_proba(np.asarray(x, dtype=np.float32)), model.classes_, n_outputs, binary)

    return predict, {"iterations": int(model.n_iter_), "train_s": round(time.perf_counter() - started, 1)}


BASELINES: dict[str, Callable[..., tuple[Predict, dict[str, Any]]]] = {
    "tfidf_lr": tfidf_lr, "boosted_trees": boosted_trees}
