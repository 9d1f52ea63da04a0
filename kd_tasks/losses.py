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
