"""Student training: deterministic for a seed, warm start only from a compatible champion."""
import numpy as np
import pytest
import torch

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


def test_sparse_embedding_updates_are_those_of_torch_sparse_adam():
    """``sparse_embedding``: the rows a batch touches get torch's SparseAdam update (lazy Adam), the MLP
    AdamW; untouched rows stay as they were."""
    import copy

    from kd_tasks.models.hashed_ngram import HashedNgramStudent
    from kd_tasks.models.training import Optimizers

    w = window(200)
    student = HashedNgramStudent(w.label_names, "small")
    reference = copy.deepcopy(student.net)
    reference.embedding.sparse = True
    opt = student.optimizer(0.01, sparse=True)
    rest = [p for n, p in reference.named_parameters() if not n.startswith("embedding.")]
    ref_opt = Optimizers(torch.optim.SparseAdam([reference.embedding.weight], lr=0.01),
                         torch.optim.AdamW(rest, lr=0.01, weight_decay=1e-4))
    prepared = student.prepare(w.texts)
    gold = torch.from_numpy(w.teacher_logits.argmax(1))
    before = student.net.embedding.weight.detach().clone()
    student.net.train()
    reference.train()
    for start in range(0, 200, 50):
        idx = torch.arange(start, start + 50)
        for net_loss, optimizer in ((lambda: student.forward_rows(prepared, idx), opt),
                                    (lambda: reference(*_batch(prepared, idx)), ref_opt)):
            loss = torch.nn.functional.cross_entropy(net_loss(), gold[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for (name, a), b in zip(student.net.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    touched = torch.from_numpy(np.unique(prepared[0]))
    untouched = torch.ones(len(before), dtype=torch.bool)
    untouched[touched] = False
    assert torch.equal(student.net.embedding.weight[untouched], before[untouched])
    assert not torch.equal(student.net.embedding.weight[touched], before[touched])


def _batch(prepared, idx):
    ids, offsets = prepared
    rows = [ids[offsets[i]:offsets[i + 1]] for i in idx.tolist()]
    starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
    return torch.from_numpy(np.concatenate(rows).astype(np.int64)), torch.from_numpy(starts.astype(np.int64))


def test_sparse_embedding_trains_a_student_that_learns():
    w = window(400)
    student = train_student(w, DistillConfig(epochs=5, student_size="small", sparse_embedding=True))
    agree = (student.logits(w.texts).argmax(1) == w.teacher_logits.argmax(1)).mean()
    assert agree > 0.9
    dense = train_student(w, DistillConfig(epochs=5, student_size="small"))
    assert not torch.equal(student.net.embedding.weight, dense.net.embedding.weight)
