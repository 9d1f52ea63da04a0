"""The teacher gate's TF-IDF + LR baseline is fitted to convergence: a baseline stopped early flatters
every teacher compared with it (on the fashion titles, lbfgs at scikit-learn's default tolerance
stopped after 24 iterations and lost 0.09 test macro-F1)."""
import numpy as np

from kd_tasks.models.baselines import fit_tfidf_lr
from kd_tasks.models.training import Validation


def test_the_tfidf_baseline_reaches_the_converged_solution(fashion_records):
    from sklearn.linear_model import LogisticRegression

    rows = [(r["productDisplayName"], r["subCategory"]) for r in fashion_records[:3000] if r["productDisplayName"]]
    names = sorted({y for _, y in rows})
    texts, gold = [t for t, _ in rows], np.array([names.index(y) for _, y in rows])
    train, val = slice(0, 2400), slice(2400, None)
    check = Validation(texts[val], [names[g] for g in gold[val]], names, "multiclass", "macro_f1")
    fitted, info = fit_tfidf_lr(texts[train], gold[train], len(names), False, check, grid=(10.0,))
    x = fitted.features.transform(texts[train])
    reference = LogisticRegression(C=10.0, max_iter=5000, tol=1e-8).fit(x, gold[train])  # fully converged
    got = np.exp(fitted.scores(texts[val]))
    want = np.exp(fitted.__class__(fitted.features, reference, len(names), False).scores(texts[val]))
    assert np.abs(got - want).max() < 0.02, np.abs(got - want).max()
    assert fitted.model.n_iter_[0] < 1000 and info["C"] == 10.0
