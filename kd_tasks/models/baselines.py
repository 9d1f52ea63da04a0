"""Cheap baselines a new teacher must beat on validation (``kd_tasks.stages.teacher_gate``), trained
on the same gold rows and the same inputs as the teacher: TF-IDF (word 1-2-grams + character 3-5-grams,
sublinear tf) + logistic regression for text, its C chosen on the validation rows; gradient-boosted
trees for feature columns (serving-time and privileged alike); BM25 for (query, text) ranking. A
family names its baselines in ``models.FAMILIES``.

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


class BM25:
    """Okapi BM25 (the ``bm25s`` library: k1 = 1.5, b = 0.75, scikit-learn's word pattern, English stop
    words, no stemming) of (query, text) rows: the lexical ranker a search engine starts from. The
    index holds the distinct texts of ``corpus`` (e.g. the catalogue), which set the term statistics,
    plus any text scored that is not among them (the index is then rebuilt with it)."""

    def __init__(self, corpus: Sequence[str] = ()):
        self.corpus: list[str] = []
        self.position: dict[str, int] = {}
        self.retriever: Any = None
        self._add(corpus)

    def _add(self, texts: Any) -> None:
        new = [t for t in dict.fromkeys(texts) if t not in self.position]
        if not new and self.retriever is not None:
            return
        import bm25s

        for t in new:
            self.position[t] = len(self.corpus)
            self.corpus.append(t)
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(self.corpus or [""], stopwords="en", return_ids=False,
                                            show_progress=False), show_progress=False)

    def _query_scores(self, query: str) -> np.ndarray | None:
        """The query's score of every indexed text; None when no query word is in the index."""
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        known = [t for t in tokens if t in self.retriever.vocab_dict]
        return self.retriever.get_scores(known) if known else None

    def scores(self, rows: Sequence[tuple[str, str]]) -> np.ndarray:
        """BM25 of each (query, text) row, shape (n, 1)."""
        self._add(t for _, t in rows)
        out = np.zeros((len(rows), 1), np.float32)
        by_query: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(rows):
            by_query.setdefault(q, []).append(i)
        for q, members in by_query.items():
            doc_scores = self._query_scores(q)
            if doc_scores is not None:
                out[members, 0] = doc_scores[[self.position[rows[i][1]] for i in members]]
        return out

    def top_k(self, query: str, k: int) -> list[str]:
        """The ``k`` indexed texts with the highest BM25 for ``query``, best first."""
        doc_scores = self._query_scores(query)
        if doc_scores is None:
            return []
        top = np.argpartition(-doc_scores, min(k, len(doc_scores) - 1))[:k]
        return [self.corpus[i] for i in top[np.argsort(-doc_scores[top], kind="stable")]]


def bm25(inputs: Sequence[tuple[str, str]], gold: np.ndarray, n_outputs: int, binary: bool,
         validation: Any) -> tuple[Predict, dict[str, Any]]:
    """BM25 over the training rows' texts and those scored (nothing to fit: the teacher must beat what a
    search engine ranks with no model at all)."""
    model = BM25([t for _, t in inputs])
    return model.scores, {"k1": 1.5, "b": 0.75, "corpus_texts": len(model.corpus)}


BASELINES: dict[str, Callable[..., tuple[Predict, dict[str, Any]]]] = {
    "tfidf_lr": tfidf_lr, "boosted_trees": boosted_trees, "bm25": bm25}
