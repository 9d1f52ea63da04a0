"""Ranking metrics against hand-worked examples (gain 2^(grade-1) - 1, discount 1/log2(rank+1))."""
import math

import numpy as np
import pytest

from kd_tasks.metrics import (graded_gain, kendall_tau, ndcg_at_k, query_groups, ranking_metrics, recall_at_k,
                              reciprocal_rank)


def test_gains_of_the_one_to_three_scale():
    assert graded_gain(np.array([1, 2, 3, 2.67])).tolist() == pytest.approx([0, 1, 3, 2 ** 1.67 - 1])


def test_ndcg_by_hand():
    # by score: grade 1 (gain 0), grade 2 (gain 1), grade 3 (gain 3)
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 3 / math.log2(4)
    ideal = 3 / math.log2(2) + 1 / math.log2(3) + 0
    assert ndcg_at_k(np.array([3, 1, 2]), np.array([0.1, 0.9, 0.5])) == pytest.approx(dcg / ideal)  # 0.5869
    assert ndcg_at_k(np.array([3, 1, 2]), np.array([0.9, 0.1, 0.5])) == pytest.approx(1.0)
    # only the top k count: the best product ranked second is worth nothing at k = 1
    grades, scores = np.array([3, 3, 1]), np.array([0.0, 1.0, 2.0])
    assert ndcg_at_k(grades, scores, k=1) == 0.0
    assert ndcg_at_k(grades, scores, k=2) == pytest.approx((3 / math.log2(3)) / (3 + 3 / math.log2(3)))
    assert ndcg_at_k(np.array([1, 1]), np.array([0.3, 0.2])) is None  # nothing relevant: undefined
    # ties keep row order: the first row counts as ranked first
    assert ndcg_at_k(np.array([1, 3]), np.array([0.5, 0.5])) == pytest.approx((3 / math.log2(3)) / 3)


def test_reciprocal_rank_of_the_first_highly_relevant_product():
    assert reciprocal_rank(np.array([3, 1, 2]), np.array([0.1, 0.9, 0.5])) == pytest.approx(1 / 3)
    assert reciprocal_rank(np.array([2.67, 1, 3]), np.array([0.5, 0.9, 0.1])) == pytest.approx(1 / 2)
    assert reciprocal_rank(np.array([2.5, 2.33]), np.array([1.0, 0.0])) is None


def test_kendall_tau_by_hand():
    # 6 pairs, one discordant (the middle two swapped): (5 - 1) / 6
    assert kendall_tau(np.array([1., 2, 3, 4]), np.array([1., 3, 2, 4])) == pytest.approx(4 / 6)
    assert kendall_tau(np.array([1., 2]), np.array([2., 1])) == pytest.approx(-1.0)
    assert kendall_tau(np.array([1.]), np.array([1.])) is None
    assert kendall_tau(np.array([1., 1]), np.array([1., 2])) is None


def test_recall_at_k():
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "e"}, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "e"}, k=4) == pytest.approx(2 / 3)
    assert recall_at_k(["a"], set(), k=4) is None


def test_ranking_metrics_average_over_queries_with_interleaved_rows():
    queries = ["q1", "q2", "q1", "q2", "q1", "q3"]
    grades = [3, 1, 1, 3, 2, 1]
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.5, 0.0])
    teacher = np.array([0.9, 0.1, 0.1, 0.9, 0.5, 0.3])
    assert [g.tolist() for g in query_groups(queries)] == [[0, 2, 4], [1, 3], [5]]
    m = ranking_metrics(queries, grades, scores, teacher)
    q1 = (1 / math.log2(3) + 3 / math.log2(4)) / (3 + 1 / math.log2(3))  # q1 ranks grades 1, 2, 3
    assert m["per_query_ndcg"] == pytest.approx([q1, 1.0, None])  # q3 has no relevant product
    assert m["ndcg_at_10"] == pytest.approx((q1 + 1.0) / 2) and m["queries_ndcg_at_10"] == 2
    assert m["mrr"] == pytest.approx((1 / 3 + 1) / 2) and m["queries_mrr"] == 2
    # q1: teacher 0.9, 0.1, 0.5 against student 0.1, 0.9, 0.5 (reversed): -1; q2 agrees: 1; q3: one row
    assert m["kendall_tau_vs_teacher"] == pytest.approx(0.0) and m["queries_kendall_tau"] == 2
    assert ranking_metrics(queries, grades, np.array(grades, float) / 3)["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one query, grade and score per row"):
        ranking_metrics(queries, grades, scores[:3])
