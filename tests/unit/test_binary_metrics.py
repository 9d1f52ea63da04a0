"""Binary metrics against values worked out by hand."""
import math

import numpy as np
import pytest

from kd_tasks.metrics import agreement, binary_metrics


def logit(p):
    return math.log(p / (1 - p))


def test_binary_metrics_hand_computed():
    # p = 0.9, 0.8, 0.3, 0.2 with y = 1, 0, 1, 0. Positive/negative pairs ranked right: (0.9 > 0.8),
    # (0.9 > 0.2), (0.3 > 0.2); wrong: (0.3 < 0.8) -> AUC 3/4.
    # Average precision: ranks 0.9 (TP, precision 1), 0.8 (FP), 0.3 (TP, precision 2/3) -> (1 + 2/3) / 2.
    # Log-loss: -(ln 0.9 + ln 0.2 + ln 0.3 + ln 0.8) / 4. ECE with 10 bins: each row alone in its bin:
    # |0.9-1| + |0.8-0| + |0.3-1| + |0.2-0| = 0.1 + 0.8 + 0.7 + 0.2 = 1.8, over 4 rows = 0.45.
    p = [0.9, 0.8, 0.3, 0.2]
    m = binary_metrics([1, 0, 1, 0], np.array([[logit(x)] for x in p]))
    assert m["auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["logloss"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.3) + math.log(0.8)) / 4)
    assert m["ece"] == pytest.approx(0.45)
    assert m["positives"] == 2 and m["positive_rate"] == 0.5


def test_single_class_has_no_auc_but_still_a_logloss():
    m = binary_metrics([0, 0, 0], np.array([[-2.0], [-3.0], [-1.0]]))
    assert m["auc"] is None and m["pr_auc"] is None and m["logloss"] > 0


def test_binary_agreement_is_the_share_on_the_same_side_of_one_half():
    t = np.array([[2.0], [-1.0], [0.5], [-3.0]])
    s = np.array([[1.0], [1.0], [0.2], [-0.1]])
    a = agreement(t, s)
    assert a["top1_agreement"] == pytest.approx(0.75)
    assert agreement(t, t)["mean_kl"] == pytest.approx(0.0, abs=1e-9)
