"""The ranking task and its students: per-query scoring and resampling, whole queries per batch, the
batch form of InfoNCE, the two-tower and pair students' outputs, and the declarations it validates."""
import math

import numpy as np
import pytest
import torch

from kd_tasks.config import DistillConfig, GateConfig, UseCase
from kd_tasks.losses import RankingScores, batch_infonce, infonce_kd_loss
from kd_tasks.metrics import paired_bootstrap
from kd_tasks.models.training import batches
from kd_tasks.names import ConfigError
from kd_tasks.tasks import NO_LABEL, get_task

RANKING = get_task("ranking")


def scorer(grades, scores, groups):
    s = RANKING.scorer(["grade"])
    s.add(grades, np.asarray(scores, dtype=np.float32).reshape(-1, 1), groups)
    return s


def test_grades_and_unjudged_pairs():
    assert RANKING.gold_index([3, None, "2.5", "x", -1, float("nan")], ["grade"]).tolist() == \
        [3.0, NO_LABEL, 2.5, NO_LABEL, NO_LABEL, NO_LABEL]
    assert RANKING.output_names("grade", [1, 2, 3]) == ["grade"]


def test_scorer_by_hand_and_unjudged_rows_left_out():
    # query a: grades (3, 1, 2) scored (0.1, 0.9, 0.5): NDCG 0.5869 (tests/unit/test_ranking_metrics.py);
    # query b: ranked perfectly: 1.0; an unjudged candidate of b (None) with the top score is not judged
    s = scorer([3, 1, 2, 1, 3, None], [0.1, 0.9, 0.5, 0.0, 1.0, 9.0], ["a", "a", "a", "b", "b", "b"])
    dcg = 1 / math.log2(3) + 3 / math.log2(4)
    ideal = 3 + 1 / math.log2(3)
    r = s.result()
    assert r["ndcg_at_10"] == pytest.approx((dcg / ideal + 1.0) / 2)
    assert r["mrr"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["queries"] == 2 and s.rows() == 6 and s.support() == {"judged_pairs": 5, "queries": 2}
    # resampling draws whole queries: a resample of query b twice and a never is b's NDCG
    weights = np.array([[0, 0, 0, 2, 2, 2], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], np.float32)
    assert s.weighted("ndcg_at_10", weights).tolist() == pytest.approx([1.0, r["ndcg_at_10"], dcg / ideal])
    with pytest.raises(ValueError, match="group_column"):
        RANKING.scorer(["grade"]).add([1], np.zeros((1, 1)), None)


def test_kendall_tau_against_the_teacher():
    groups = ["a"] * 4 + ["b"] * 2
    teacher = scorer([1, 2, 3, 3, 1, 2], [1, 2, 3, 4, 1, 2], groups)
    student = scorer([1, 2, 3, 3, 1, 2], [1, 3, 2, 4, 2, 1], groups)
    # a: one discordant pair of 6 -> 4/6; b: reversed -> -1
    assert student.versus(teacher) == {"kendall_tau_vs_teacher": pytest.approx((4 / 6 - 1) / 2),
                                       "queries_kendall_tau": 2}


def test_paired_bootstrap_over_queries_sees_a_real_gain_and_not_noise():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"q{i}" for i in range(200)], 5)
    grades = rng.choice([1.0, 2.0, 3.0], len(groups))
    good = scorer(grades, grades + rng.normal(0, 0.3, len(groups)), groups)
    bad = scorer(grades, rng.normal(0, 1, len(groups)), groups)
    c = paired_bootstrap(bad, good, "ndcg_at_10", list(groups), 300)
    assert c["unit"] == "groups" and c["units"] == 200 and c["low"] > 0.05
    noise = scorer(grades, grades + rng.normal(0, 0.3, len(groups)), groups)
    c = paired_bootstrap(good, noise, "ndcg_at_10", list(groups), 300)
    assert c["low"] < 0 and c["high"] > -0.01  # noise: the gate's tolerance of 0.01 is not crossed


def test_batches_hold_whole_queries():
    groups = torch.tensor([5, 5, 9, 7, 7, 7, 9, 5, 1, 1])
    rows = torch.arange(100, 110)
    out = batches(rows, 4, torch.Generator().manual_seed(0), groups=groups)
    assert sorted(torch.cat(out).tolist()) == rows.tolist()
    for b in out:
        codes = {int(groups[r - 100]) for r in b}
        for c in codes:  # every row of each query in the batch is in it
            assert {int(r) for r in b} >= {100 + i for i in range(10) if int(groups[i]) == c}
    # a batch closes once it holds batch_size rows: no batch of more than batch_size + the largest query - 1
    assert max(len(b) for b in out) <= 4 + 3 - 1


def test_batch_infonce_uses_other_queries_candidates_as_negatives():
    # rows: query 0 with products 0, 1; query 1 with product 2; unit vectors, teacher scores per row
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    teacher = torch.tensor([[2.0], [0.0], [1.0]])
    out = RankingScores(torch.zeros(3), torch.tensor([7, 7, 3]), q, p)
    # query 7: student logits (1, 0, 0) over the 3 products, targets softmax(2, 0) on its own two;
    # query 3: student logits (0, 1, 1), target 1 on product 2
    z7, z3 = torch.log_softmax(torch.tensor([1.0, 0.0, 0.0]), 0), torch.log_softmax(torch.tensor([0.0, 1.0, 1.0]), 0)
    pt = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    expected = (-(pt[0] * z7[0] + pt[1] * z7[1]) - z3[2]) / 2
    assert float(batch_infonce(out, teacher, 1.0)) == pytest.approx(float(expected), abs=1e-6)
    # the same by the matrix form with unscored pairs as negatives (rows: query 3, then query 7)
    assert float(infonce_kd_loss(q[[2, 0]], p, torch.tensor([[float("nan"), float("nan"), 1.0], [2.0, 0.0, float("nan")]]),
                                 1.0, 1.0, unscored_negatives=True)) == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(ValueError, match="two-tower"):
        batch_infonce(RankingScores(torch.zeros(3), torch.tensor([7, 7, 3])), teacher, 1.0)


ROWS = [("drill bit", "DeWalt 10-piece drill bit set"), ("drill bit", "white interior paint"),
        ("copper pipe", "1/2 in. copper pipe 10 ft."), ("", "")]


@pytest.mark.parametrize("family", ["two_tower", "pair_ngram"])
def test_ranking_students_score_rows_as_in_training(family, tmp_path):
    from kd_tasks.models import load_student, student_class

    torch.manual_seed(0)
    student = student_class(family).create(["grade"], "small")
    prepared = student.prepare(ROWS)
    out = student.forward_rows(prepared, torch.arange(len(ROWS)))
    groups = student.row_groups(prepared)
    assert groups[0] == groups[1] != groups[2]  # one code per query
    assert torch.equal(out.group, torch.from_numpy(groups))
    student.net.eval()
    with torch.no_grad():
        scores = student.forward_rows(prepared, torch.arange(len(ROWS))).scores.numpy()
    assert student.logits(ROWS).reshape(-1) == pytest.approx(scores, abs=1e-5)
    # a part's prepared rows joined with another's score as they did alone
    joined = student.join_prepared([student.prepare(ROWS[:2]), student.prepare(ROWS[2:])])
    with torch.no_grad():
        assert student.forward_rows(joined, torch.arange(len(ROWS))).scores.numpy() == pytest.approx(scores, abs=1e-5)
    student.save(tmp_path / "s")
    assert load_student(tmp_path / "s").logits(ROWS).reshape(-1) == pytest.approx(scores, abs=1e-5)
    if family == "two_tower":  # served from precomputed product vectors: the same scores
        q = student.encode_queries([r[0] for r in ROWS])
        p = student.encode_products([r[1] for r in ROWS])
        assert np.diag(student.score_vectors(q, p)) == pytest.approx(scores, abs=1e-5)
        assert out.query_vectors.shape == out.product_vectors.shape == (4, 32)


def _search(**changes):
    base = dict(name="s", task="ranking", extract_sql="x.sql", teacher_sql="x.sql", id_column="pair_id",
                input_columns=("query", "title"), label_column="grade", group_column="query",
                student_family="two_tower", teacher_family="hf_cross_encoder",
                distill=DistillConfig(loss_terms={"infonce_kd": 1.0, "graded_gold": 1.0}),
                gate=GateConfig(metric="ndcg_at_10"))
    return UseCase(**{**base, **changes})


def test_declarations_that_cannot_work_are_refused():
    assert _search().distill.loss_terms == {"infonce_kd": 1.0, "graded_gold": 1.0}
    with pytest.raises(ConfigError, match="vectors"):
        _search(student_family="pair_ngram")
    with pytest.raises(ConfigError, match="group_column"):
        _search(group_column="")
    with pytest.raises(ConfigError, match="2 input column"):
        _search(input_columns=("query",))
    with pytest.raises(ConfigError, match="do not apply"):
        _search(distill=DistillConfig(loss_terms={"kd": 1.0}))


def test_one_output_soft_labels_keep_float32():
    from kd_tasks.storage.lake import soft_label_table

    scores = np.array([[2.0001], [2.0004], [2.0009]], np.float32)  # one float16 step at 2 is 0.002
    table = soft_label_table(["a", "b", "c"], "2024-01-01", scores)
    stored = np.array(table.column("logits").combine_chunks().flatten().to_numpy(zero_copy_only=False))
    assert len(set(stored.tolist())) == 3 and stored.dtype == np.float32
    classes = soft_label_table(["a"], "2024-01-01", np.array([[1.0, 2.0]], np.float32))
    assert str(classes.schema.field("logits").type.value_type) == "halffloat"
