"""Student training: deterministic for a seed, warm start only from a compatible champion."""
import numpy as np
import pytest

from kd_tasks.config import DistillConfig
from kd_tasks.stages.window import Window
from kd_tasks.stages.distill import train_student
from kd_tasks.models.base import read_config
from kd_tasks.models.hashed_ngram import HashedNgramStudent as Student


def window(n=200, seed=0):
    rng = np.random.default_rng(seed)
    words = {"Shirts": "shirt", "Shoes": "shoes", "Watches": "watch"}
    labels = sorted(words)
    y = rng.integers(0, 3, n)
    texts = [f"Brand{rng.integers(0, 9)} Men {words[labels[k]]}" for k in y]
    logits = rng.normal(0, 0.5, (n, 3)).astype(np.float32)
    logits[np.arange(n), y] += 3.0
    gold = [labels[k] if i % 3 == 0 else None for i, k in enumerate(y)]
    return Window([str(i) for i in range(n)], texts, gold, logits, labels, np.zeros(n, bool), ["2024-01-01"])


def weights(student):
    return {k: v.clone() for k, v in student.net.state_dict().items()}


def test_same_seed_same_student_other_seed_other_student():
    cfg = DistillConfig(epochs=2, student_size="small", seed=7)
    a, b = weights(train_student(window(), cfg)), weights(train_student(window(), cfg))
    assert all((a[k] == b[k]).all() for k in a)
    c = weights(train_student(window(), DistillConfig(epochs=2, student_size="small", seed=8)))
    assert any((a[k] != c[k]).any() for k in a)


def test_student_learns_the_teacher():
    w = window()
    student = train_student(w, DistillConfig(epochs=5, student_size="small"))
    agree = (student.logits(w.texts).argmax(1) == w.teacher_logits.argmax(1)).mean()
    assert agree > 0.9


def test_save_load_roundtrip(tmp_path):
    w = window()
    student = train_student(w, DistillConfig(epochs=1, student_size="small"))
    loaded = Student.load(student.save(tmp_path / "s"))
    np.testing.assert_array_equal(loaded.logits(w.texts), student.logits(w.texts))

    # The warm-start check reads the saved config; no model is built to compare with.
    saved = read_config(tmp_path / "s")
    assert Student.warm_startable(saved, Student.config_for(w.label_names, "small"))
    assert not Student.warm_startable(saved, Student.config_for(["a", "b"], "small"))
    assert not Student.warm_startable(saved, Student.config_for(w.label_names, "base"))
    assert not Student.warm_startable({**saved, "featurizer": 1}, Student.config_for(w.label_names, "small"))
    assert not Student.warm_startable({**saved, "family": "tabular_mlp"}, Student.config_for(w.label_names, "small"))
    old = {k: v for k, v in saved.items() if k != "featurizer"}  # saved before featuriser versions: version 1
    assert Student.warm_startable(old, Student.config_for(w.label_names, "small", featurizer=1))


def test_no_gold_and_alpha_zero_is_an_error():
    w = window()
    w.gold = [None] * len(w.gold)
    with pytest.raises(ValueError, match="needs gold labels"):
        train_student(w, DistillConfig(alpha=0.0, epochs=1, student_size="small"))
