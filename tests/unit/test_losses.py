"""The KD loss against golden values worked out by hand (softmax, KL, CE written out below)."""
import math

import pytest
import torch

from kd_tasks.losses import NO_LABEL, kd_loss


def loss(z_s, z_t, gold, T, alpha):
    return kd_loss(torch.tensor(z_s, dtype=torch.float64), torch.tensor(z_t, dtype=torch.float64),
                   torch.tensor(gold), T, alpha).item()


def test_t_squared_scaling_of_the_soft_term():
    # p_t = softmax([1, 0] / 2) = [0.622459, 0.377541]; p_s = softmax([0, 0] / 2) = [0.5, 0.5]
    # KL = 0.622459 ln(0.622459/0.5) + 0.377541 ln(0.377541/0.5) = 0.0302999
    # alpha = 1: loss = T^2 * KL = 4 * 0.0302999 = 0.1211994
    assert loss([[0.0, 0.0]], [[1.0, 0.0]], [NO_LABEL], T=2.0, alpha=1.0) == pytest.approx(0.1211994, abs=1e-6)


def test_alpha_zero_is_plain_cross_entropy_on_gold():
    # softmax([0, 0]) = [0.5, 0.5]; CE(gold=0) = -ln 0.5 = ln 2, whatever the teacher says
    assert loss([[0.0, 0.0]], [[9.0, -9.0]], [0], T=3.0, alpha=0.0) == pytest.approx(math.log(2), abs=1e-9)


def test_alpha_one_ignores_gold_labels():
    with_gold = loss([[0.5, -0.5]], [[1.0, 0.0]], [1], T=2.0, alpha=1.0)
    without = loss([[0.5, -0.5]], [[1.0, 0.0]], [NO_LABEL], T=2.0, alpha=1.0)
    assert with_gold == pytest.approx(without, abs=1e-12)


def test_ce_only_on_rows_with_gold_kl_on_all_rows():
    # row 0: z_s=[0,0], z_t=[1,0], gold 0   -> KL = 0.1109441, CE = ln 2
    # row 1: z_s=[2,0], z_t=[0,1], no gold  -> KL = 1.0068421, no CE
    # T=1, alpha=0.5: 0.5 * mean(KL) + 0.5 * mean(CE over gold rows)
    #               = 0.5 * (0.1109441 + 1.0068421) / 2 + 0.5 * 0.6931472 = 0.6260201
    got = loss([[0.0, 0.0], [2.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [0, NO_LABEL], T=1.0, alpha=0.5)
    assert got == pytest.approx(0.6260201, abs=1e-6)


def test_three_classes_mixed():
    # T=4: p_t = softmax([3,1,0]/4) = [0.481024, 0.291756, 0.227220]
    #      p_s = softmax([0,2,1]/4) = [0.254275, 0.419229, 0.326496]  -> KL = 0.1185248
    # CE(gold=2) at T=1 = -ln softmax([0,2,1])[2] = 1.4076060
    # 0.7 * 16 * 0.1185248 + 0.3 * 1.4076060 = 1.7497593
    assert loss([[0.0, 2.0, 1.0]], [[3.0, 1.0, 0.0]], [2], T=4.0, alpha=0.7) == pytest.approx(1.7497593, abs=1e-6)


def test_batch_without_gold_has_no_ce_term_and_stays_finite():
    got = loss([[0.0, 0.0]], [[0.0, 0.0]], [NO_LABEL], T=2.0, alpha=0.0)
    assert got == 0.0


def test_binary_kd_loss_matches_hand_computed_value():
    """z_s = [0, 2], z_t = [1, -1], gold = [1, none], T = 2, alpha = 0.5.

    Row 1: p_t = sigmoid(0.5) = 0.622459, p_s = sigmoid(0) = 0.5, KL = 0.030300.
    Row 2: p_t = sigmoid(-0.5) = 0.377541, p_s = sigmoid(1) = 0.731059, KL = 0.272874.
    Mean KL 0.151587; BCE on row 1 only = ln 2 = 0.693147.
    Loss = 0.5 * 4 * 0.151587 + 0.5 * 0.693147 = 0.649747.
    """
    from kd_tasks.losses import binary_kd_loss

    loss = binary_kd_loss(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [-1.0]]),
                          torch.tensor([1, NO_LABEL]), temperature=2.0, alpha=0.5)
    assert loss.item() == pytest.approx(0.649747, abs=1e-5)


def test_binary_kd_loss_is_the_two_class_softmax_loss():
    from kd_tasks.losses import binary_kd_loss

    torch.manual_seed(0)
    z_s, z_t = torch.randn(16, 1), 3 * torch.randn(16, 1)
    gold = torch.randint(0, 2, (16,))
    gold[::3] = NO_LABEL
    two = lambda z: torch.cat([torch.zeros_like(z), z], dim=1)
    for t, a in ((1.0, 0.5), (4.0, 0.9), (2.0, 0.0)):
        assert binary_kd_loss(z_s, z_t, gold, t, a).item() == pytest.approx(
            kd_loss(two(z_s), two(z_t), gold, t, a).item(), abs=1e-5)


def test_binary_kd_loss_is_zero_when_the_student_matches_the_teacher_and_alpha_is_one():
    from kd_tasks.losses import binary_kd_loss

    z = torch.tensor([[-7.0], [0.3], [5.0]])
    assert binary_kd_loss(z, z, torch.tensor([0, 1, 1]), 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-7)


# Ranking terms, against values worked out by hand (T = 1 unless stated).
def test_pointwise_and_graded_gold_terms_by_hand():
    from kd_tasks.losses import graded_gold_loss, pointwise_kd_loss

    assert float(pointwise_kd_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))) == pytest.approx(2.5)
    s = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = graded_gold_loss(s, torch.tensor([1.0, float("nan"), 2.0]))  # (0^2 + 1^2) / 2; the unjudged pair out
    assert float(loss.detach()) == pytest.approx(0.5)
    loss.backward()
    assert s.grad.tolist() == pytest.approx([0.0, 0.0, 1.0])
    none = graded_gold_loss(s, torch.full((3,), float("nan")))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_listwise_term_by_hand():
    from kd_tasks.losses import listwise_kd_loss

    group = torch.tensor([0, 0, 1, 1, 2])
    s = torch.tensor([1.0, 0.0, 0.0, 0.0, 5.0])
    t = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0])
    # query 0: p_t = (0.26894, 0.73106), log p_s - log p_t = (+1, -1): KL = 0.73106 - 0.26894 = 0.46212
    # query 1: p_t = (0.88080, 0.11920), p_s = (0.5, 0.5): KL = 0.88080 ln 1.76159 + 0.11920 ln 0.23841 = 0.32782
    # query 2 has one candidate: no signal, left out
    assert float(listwise_kd_loss(s, t, group, 1.0)) == pytest.approx((0.46212 + 0.32782) / 2, abs=1e-5)
    # T = 2: T^2 x the KL of the halved scores; query 0 at T=2: p_t = (0.37754, 0.62246), log p_s - log p_t = (+0.5, -0.5)
    q0 = 0.62246 * 0.5 - 0.37754 * 0.5
    p1 = torch.softmax(torch.tensor([1.0, 0.0]), 0)  # query 1's teacher at T = 2
    q1 = float((p1 * (p1.log() - math.log(0.5))).sum())
    assert float(listwise_kd_loss(s, t, group, 2.0)) == pytest.approx(4 * (q0 + q1) / 2, abs=1e-5)
    # the same order as the teacher's, at the same gaps: nothing to learn
    assert float(listwise_kd_loss(t, t, group, 1.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(listwise_kd_loss(s[4:], t[4:], torch.tensor([0]), 1.0)) == 0.0


def test_infonce_term_by_hand_with_in_batch_negatives():
    from kd_tasks.losses import infonce_kd_loss

    q = torch.eye(2, requires_grad=True)
    p = torch.eye(2)
    teacher = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    # each row: student softmax((1, 0)) against teacher softmax((2, 0)) = (0.88080, 0.11920):
    # -(0.88080 ln 0.73106 + 0.11920 ln 0.26894) = 0.43246
    loss = infonce_kd_loss(q, p, teacher, 1.0, 1.0)
    assert float(loss.detach()) == pytest.approx(0.43246, abs=1e-5)
    loss.backward()
    assert torch.isfinite(q.grad).all()
    # a pair the teacher did not score is left out of both softmaxes: row 0 has only its own product (0)
    unscored = torch.tensor([[2.0, float("nan")], [0.0, 2.0]])
    q2 = torch.eye(2, requires_grad=True)
    loss = infonce_kd_loss(q2, p, unscored, 1.0, 1.0)
    assert float(loss.detach()) == pytest.approx(0.43246 / 2, abs=1e-5)
    loss.backward()
    assert torch.isfinite(q2.grad).all()
    # a lower student temperature sharpens the student: at 0.5 the logits are (2, 0), the teacher's: CE = entropy
    p_t = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    entropy = float(-(p_t * p_t.log()).sum())
    assert float(infonce_kd_loss(torch.eye(2), p, teacher, 0.5, 1.0)) == pytest.approx(entropy, abs=1e-6)
    # with unscored_negatives the unscored product stays in row 0's student softmax with target 0:
    # row 0 = -ln softmax((1, 0))[0] = 0.31326, row 1 as before
    q3 = torch.eye(2)
    both = infonce_kd_loss(q3, p, unscored, 1.0, 1.0, unscored_negatives=True)
    assert float(both) == pytest.approx((0.31326 + 0.43246) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="at least one product"):
        infonce_kd_loss(torch.eye(2), p, torch.tensor([[float("nan"), float("nan")], [0.0, 1.0]]), 1.0, 1.0)
