"""The distillation loss of Hinton, Vinyals & Dean (2015), with gold labels where they exist."""
from __future__ import annotations

import torch
import torch.nn.functional as F

NO_LABEL = -1  # gold index of a row that has no human label


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gold: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(gold, z_s)``.

    - KL is summed over classes and averaged over all rows of the batch (labelled or not).
    - CE is averaged over the rows whose ``gold`` is not ``NO_LABEL`` only; a batch without any gold
      row contributes 0 to that term.
    - T^2 keeps the gradient scale of the soft term independent of T (Hinton et al., section 2).
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1).mean()
    has_gold = gold != NO_LABEL
    if has_gold.any():
        ce = F.cross_entropy(student_logits[has_gold], gold[has_gold])
    else:
        ce = student_logits.new_zeros(())
    return alpha * t * t * kl + (1.0 - alpha) * ce


def binary_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gold: torch.Tensor,
                   temperature: float, alpha: float) -> torch.Tensor:
    """Binary distillation on one logit per row, with a temperature on the logits.

    With ``p_t = sigmoid(z_t / T)`` and ``p_s = sigmoid(z_s / T)``::

        alpha * T^2 * KL(Bernoulli(p_t) || Bernoulli(p_s)) + (1 - alpha) * BCE(gold, sigmoid(z_s))

    - KL = p_t log(p_t / p_s) + (1 - p_t) log((1 - p_t) / (1 - p_s)), averaged over all rows.
    - BCE is averaged over rows whose ``gold`` (0 or 1) is not ``NO_LABEL``; 0 when there are none.
    - It equals ``kd_loss`` on the two-class logits ``[0, z]``: a sigmoid is a softmax over two classes.
    """
    t = temperature
    z_s = student_logits.reshape(-1) / t
    z_t = teacher_logits.reshape(-1).to(z_s.dtype) / t
    p_t = torch.sigmoid(z_t)
    # log sigmoid(z) and log(1 - sigmoid(z)) = log sigmoid(-z), computed stably
    kl = (p_t * (F.logsigmoid(z_t) - F.logsigmoid(z_s))
          + (1 - p_t) * (F.logsigmoid(-z_t) - F.logsigmoid(-z_s))).mean()
    gold = gold.reshape(-1)
    has_gold = gold != NO_LABEL
    if has_gold.any():
        bce = F.binary_cross_entropy_with_logits(student_logits.reshape(-1)[has_gold], gold[has_gold].to(z_s.dtype))
    else:
        bce = student_logits.new_zeros(())
    return alpha * t * t * kl + (1.0 - alpha) * bce


LOSSES = {"multiclass": kd_loss, "binary": binary_kd_loss}  # task -> distillation loss
