"""A window larger than memory: read shard by shard, trained and evaluated a block at a time, with the
same students and metrics as the window held whole when it fits in one block."""
import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch

from kd_tasks.config import DistillConfig, UseCase
from kd_tasks.metrics import Agreement, agreement
from kd_tasks.stages.distill import TrainingRows, train_student
from kd_tasks.stages.window import load_window, scan_window
from kd_tasks.storage import lake
from kd_tasks.tasks import get_task

LABELS = ["bags", "dresses", "shoes", "watches"]
WORDS = {"bags": "leather tote bag", "dresses": "floral summer dress", "shoes": "running shoe sneaker",
         "watches": "steel chronograph watch"}
VERSION = "0123456789ab"
DAYS = ["2024-01-09", "2024-01-10"]
SHARD_ROWS = 250


@pytest.fixture
def sharded_window(kd_home):
    """Two days of 1,000 and 750 products in shards of 250 rows; products p0500..p0999 are on both days
    (the later copy has another title); soft labels say the category with some noise."""
    uc = UseCase(name="blocks", extract_sql="product_category/extract_products.sql", id_column="product_id",
                 input_columns=("title",), label_column="category", teacher_sql="product_category/gold_products.sql",
                 distill=DistillConfig(epochs=2, student_size="small", block_rows=1_000_000, lookback_days=2))
    rng = np.random.default_rng(0)
    spans = {DAYS[0]: range(0, 1000), DAYS[1]: range(500, 1250)}
    for day, span in spans.items():
        ids = [f"p{i:04d}" for i in span]
        cats = [LABELS[i % 4] for i in span]
        titles = [f"{WORDS[c]} {day} model {i}" for c, i in zip(cats, span)]
        gold = [c if i % 3 else None for c, i in zip(cats, span)]
        extract = pa.table({"product_id": ids, "title": titles, "category": gold})
        shards = [extract.slice(k, SHARD_ROWS) for k in range(0, len(ids), SHARD_ROWS)]
        lake.write_shards(lake.extract_dir(uc.name, day), shards, {"use_case": uc.name, "ds": day})
        logits = (np.eye(4, dtype=np.float32)[[LABELS.index(c) for c in cats]] * 4
                  + rng.normal(0, 1, (len(ids), 4)).astype(np.float32))
        for k, shard in enumerate(shards):
            part = logits[k * SHARD_ROWS:(k + 1) * SHARD_ROWS]
            lake.write_partition(lake.soft_label_table(shard.column("product_id"), day, part),
                                 lake.soft_label_path(uc.name, VERSION, day, shard=k), {"label_names": LABELS})
    return uc


def weights(student):
    return {k: v.clone() for k, v in student.net.state_dict().items()}


def test_the_window_keeps_the_newest_copy_of_each_row(sharded_window):
    window = load_window(sharded_window, DAYS[1], VERSION, 2)
    assert window.ids == sorted(f"p{i:04d}" for i in range(1250))
    by_id = dict(zip(window.ids, window.texts))
    assert DAYS[0] in by_id["p0100"] and DAYS[1] in by_id["p0600"], "a later day's copy of a row wins"
    scan = scan_window(sharded_window, DAYS[1], VERSION, 2)
    assert [(p.day, p.shard) for p in scan.pieces] == [(d, k) for d, n in ((DAYS[0], 4), (DAYS[1], 3)) for k in range(n)]
    assert scan.count("all") == 1250 and scan.count("train") + int(window.holdout.sum()) == 1250


def test_shard_by_shard_training_gives_the_student_of_the_window_held_whole(sharded_window, tmp_path):
    """Up to block_rows training rows, the rows read shard by shard (ids, soft labels and features kept
    on disk) train the very student the window in memory trains."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cfg = sharded_window.distill
    window = load_window(sharded_window, DAYS[1], VERSION, 2)
    in_memory = train_student(window.subset(~window.holdout), cfg)
    scan = scan_window(sharded_window, DAYS[1], VERSION, 2)
    rows = TrainingRows.from_scan(scan, cfg.block_rows, cache)
    assert sorted(p.name for p in cache.iterdir()) == [f"part-{k}.npz" for k in range(7)]
    from_shards = train_student(rows, cfg)
    for name, w in weights(in_memory).items():
        assert torch.equal(w, weights(from_shards)[name]), name
    baseline = train_student(rows, dataclasses.replace(cfg, alpha=0.0))  # the same features, prepared once
    assert len([p for p in cache.iterdir() if p.name.startswith("features-")]) == 7
    assert not torch.equal(weights(baseline)["mlp.3.weight"], weights(from_shards)["mlp.3.weight"])


def test_a_window_larger_than_a_block_is_trained_a_block_at_a_time(sharded_window, tmp_path):
    """With block_rows below the window, no block holds more than block_rows rows (a shard of its own
    excepted), every training row is seen once per epoch, and the shards come in a new order each epoch."""
    cache = tmp_path / "cache"
    cache.mkdir()
    scan = scan_window(sharded_window, DAYS[1], VERSION, 2)
    rows = TrainingRows.from_scan(scan, 400, cache)
    student = train_student(rows, sharded_window.distill)
    shard_orders = []
    for epoch in range(3):
        seen = []
        for prepared, teacher, gold, train_rows in rows.blocks(student, False, epoch, seed=0):
            assert len(train_rows) <= 400 or len(train_rows) == max(rows.sizes)
            assert len(teacher) == len(gold) == len(train_rows) == len(prepared[1]) - 1
            seen.append(len(train_rows))
        assert sum(seen) == len(rows) == scan.count("train")
        assert len(seen) > 1
        shard_orders.append(tuple(i for g in rows._groups(epoch, 0) for i in g))
    assert len(set(shard_orders)) > 1, "the shards are read in the same order every epoch"
    window = load_window(sharded_window, DAYS[1], VERSION, 2)
    held = window.subset(window.holdout)
    agree = (student.logits(held.texts).argmax(1) == held.teacher_logits.argmax(1)).mean()
    assert agree > 0.9, f"the student trained a block at a time agrees with the teacher on {agree:.0%} only"


def test_evaluation_a_block_at_a_time_gives_the_metrics_of_the_whole_slice(sharded_window):
    window = load_window(sharded_window, DAYS[1], VERSION, 2)
    held = window.subset(window.holdout & np.array([g is not None for g in window.gold]))
    scan = scan_window(sharded_window, DAYS[1], VERSION, 2)
    noisy = np.random.default_rng(1).normal(0, 3, held.teacher_logits.shape).astype(np.float32)
    whole = get_task("multiclass").quality(LABELS, held.gold, held.teacher_logits + noisy)
    scorer, agree, seen = get_task("multiclass").scorer(LABELS), Agreement(), 0
    blocks = list(scan.blocks("held", 60))
    assert len(blocks) > 1 and sum(len(b.ids) for b in blocks) == len(held.ids)
    by_id = dict(zip(held.ids, noisy))
    for block in blocks:
        z = block.teacher_logits + np.stack([by_id[i] for i in block.ids])
        scorer.add(block.gold, z)
        agree.add(block.teacher_logits, z)
        seen += len(block.ids)
    assert scorer.result() == whole
    assert whole["macro_f1"] < 1.0
    once = agreement(held.teacher_logits, held.teacher_logits + noisy)
    assert agree.result()["top1_agreement"] == once["top1_agreement"]
    assert agree.result()["mean_kl"] == pytest.approx(once["mean_kl"], rel=1e-6)


def test_a_gold_label_the_teacher_does_not_know_counts_as_a_class_of_its_own():
    scorer = get_task("multiclass").scorer(["a", "b"])
    scorer.add(["a", "b", "c"], np.array([[1, 0], [0, 1], [1, 0]], np.float32))
    scorer.add(["d"], np.array([[0, 1]], np.float32))
    result = scorer.result()
    assert result["per_class_recall"] == {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 0) / 4)
