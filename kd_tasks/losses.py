"""Loss terms of the distillation objective, by name; the objective is their weighted sum.

A use case's ``DistillConfig.loss_terms`` maps term names to weights (default: its task's
``default_loss``, which is one term). Each term takes the student's logits, the teacher's logits and
the gold targets of a batch (``NO_LABEL`` where a row has none) and the distillation config; adding a
term is a function and one ``LOSS_TERMS`` row.

torch is imported inside the terms: this table is read when DAG files are parsed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .tasks import NO_LABEL


def kd_loss(student_logits: Any, teacher_logits: Any, gold: Any, temperature: float, alpha: float) -> Any:
    """The distillation loss of Hinton, Vinyals & Dean (2015), with gold labels where they exist:
    ``alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(gold, z_s)``.

    - KL is summed over classes and averaged over all rows of the batch (labelled or not).
    - CE is averaged over the rows whose ``gold`` is not ``NO_LABEL`` only; a batch without any gold
      row contributes 0 to that term.
    - T^2 keeps the gradient scale of the soft term independent of T (Hinton et al., section 2).
    """
    import torch.nn.functional as F

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


def binary_kd_loss(student_logits: Any, teacher_logits: Any, gold: Any, temperature: float, alpha: float) -> Any:
    """Binary distillation on one logit per row, with a temperature on the logits.

    With ``p_t = sigmoid(z_t / T)`` and ``p_s = sigmoid(z_s / T)``::

        alpha * T^2 * KL(Bernoulli(p_t) || Bernoulli(p_s)) + (1 - alpha) * BCE(gold, sigmoid(z_s))

    - KL = p_t log(p_t / p_s) + (1 - p_t) log((1 - p_t) / (1 - p_s)), averaged over all rows.
    - BCE is averaged over rows whose ``gold`` (0 or 1) is not ``NO_LABEL``; 0 when there are none.
    - It equals ``kd_loss`` on the two-class logits ``[0, z]``: a sigmoid is a softmax over two classes.
    """
    import torch
    import torch.nn.functional as F

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


def pointwise_kd_loss(student_scores: Any, teacher_scores: Any) -> Any:
    """Ranking, one pair at a time: the mean squared difference of the student's and the teacher's
    relevance scores (the teacher's graded score is the soft label of its pair)."""
    return ((student_scores.reshape(-1) - teacher_scores.reshape(-1).to(student_scores.dtype)) ** 2).mean()


def _group_log_softmax(z: Any, group: Any) -> Any:
    """log softmax of ``z`` within each group (``group``: a query code per row)."""
    import torch

    n = int(group.max()) + 1 if len(group) else 0
    top = torch.full((n,), float("-inf"), dtype=z.dtype, device=z.device).scatter_reduce(
        0, group, z.detach(), "amax", include_self=True)
    shifted = z - top[group]
    total = torch.zeros(n, dtype=z.dtype, device=z.device).index_add(0, group, shifted.exp())
    return shifted - total.log()[group]


def listwise_kd_loss(student_scores: Any, teacher_scores: Any, group: Any, temperature: float) -> Any:
    """Ranking, one query's candidates at a time: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` over each
    query's candidates in the batch (``group``: the query code of each row), averaged over the queries
    with at least two candidates (a single candidate's softmax is 1 whatever its score: no signal); 0
    for a batch without such a query."""
    import torch

    group = group.reshape(-1).long()
    s = student_scores.reshape(-1) / temperature
    t = teacher_scores.reshape(-1).to(s.dtype) / temperature
    log_p_s, log_p_t = _group_log_softmax(s, group), _group_log_softmax(t, group)
    n = int(group.max()) + 1 if len(group) else 0
    size = torch.bincount(group, minlength=n)
    per_query = torch.zeros(n, dtype=s.dtype, device=s.device).index_add(0, group, log_p_t.exp() * (log_p_t - log_p_s))
    kept = size >= 2
    if not bool(kept.any()):
        return student_scores.sum() * 0.0
    return temperature * temperature * per_query[kept].mean()


def infonce_kd_loss(query_vectors: Any, product_vectors: Any, teacher_scores: Any, temperature: float,
                    teacher_temperature: float, unscored_negatives: bool = False) -> Any:
    """Contrastive distillation for a two-tower student, with in-batch negatives: every product of the
    batch is a candidate for every query of the batch. The student's scores are ``q_i . p_j /
    temperature`` (``query_vectors`` (Q, d), ``product_vectors`` (N, d)); the targets are the teacher's
    scores of the same pairs (``teacher_scores`` (Q, N)), ``softmax_j(teacher_scores[i, j] /
    teacher_temperature)`` (the cross-encoder has no vectors: it scores pairs). Returns the
    cross-entropy of the student's softmax against those targets, averaged over queries.

    A pair the teacher did not score is NaN: left out of both softmaxes, or with
    ``unscored_negatives`` kept in the student's softmax with a target of 0 (another query's candidate
    as a negative: what in-batch negatives teach a retriever). Every query needs at least one scored
    pair."""
    import torch
    import torch.nn.functional as F

    logits = query_vectors @ product_vectors.T / temperature
    target = teacher_scores.to(logits.dtype) / teacher_temperature
    known = torch.isfinite(target)
    if not bool(known.any(dim=1).all()):
        raise ValueError("infonce_kd_loss needs the teacher's score of at least one product for every query")
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    log_p_student = F.log_softmax(logits if unscored_negatives else torch.where(known, logits, neg_inf), dim=1)
    p_teacher = F.softmax(torch.where(known, target, neg_inf), dim=1)
    return -(p_teacher * torch.where(known, log_p_student, torch.zeros_like(logits))).sum(dim=1).mean()


def graded_gold_loss(student_scores: Any, grades: Any) -> Any:
    """Ranking, on judged pairs: the mean squared difference of the student's score and the human grade
    (NaN where a pair has no judgement: left out; 0 when none has one)."""
    grades = grades.reshape(-1).to(student_scores.dtype)
    judged = ~grades.isnan()
    if not bool(judged.any()):
        return student_scores.sum() * 0.0
    return ((student_scores.reshape(-1)[judged] - grades[judged]) ** 2).mean()


@dataclass
class RankingScores:
    """A ranking student's output for a batch of (query, candidate) rows: what the ranking terms read.
    ``group`` is a query code per row (rows of one query share it); a two-tower student adds each
    row's query vector and candidate vector (its score is ``scale * q . p + bias``)."""

    scores: Any  # (N,) relevance scores
    group: Any  # (N,) int64 query codes
    query_vectors: Any = None  # (N, d), scaled by the student's score scale
    product_vectors: Any = None  # (N, d)


def _grades(gold: Any) -> Any:
    """Gold grades with unjudged pairs (``NO_LABEL``) as NaN."""
    import torch

    gold = gold.reshape(-1).double()
    return torch.where(gold == NO_LABEL, torch.full_like(gold, float("nan")), gold)


def _compact(group: Any) -> Any:
    import torch

    return torch.unique(group.reshape(-1), return_inverse=True)[1]


def batch_infonce(out: RankingScores, teacher_logits: Any, temperature: float) -> Any:
    """``infonce_kd_loss`` over a batch of rows: each distinct query of the batch against every
    candidate of the batch; the teacher scored the query's own candidates (its targets), the other
    queries' candidates are in-batch negatives."""
    import torch

    if out.query_vectors is None:
        raise ValueError("the infonce_kd loss term needs a two-tower student (query and product vectors); "
                         "drop it from loss_terms for this student family")
    codes = _compact(out.group)
    n_queries = int(codes.max()) + 1 if len(codes) else 0
    first = torch.full((n_queries,), len(codes), dtype=torch.long).scatter_reduce(
        0, codes, torch.arange(len(codes)), "amin")
    teacher = teacher_logits.reshape(-1).to(out.query_vectors.dtype)
    matrix = torch.full((n_queries, len(codes)), float("nan"), dtype=teacher.dtype)
    matrix[codes, torch.arange(len(codes))] = teacher
    return infonce_kd_loss(out.query_vectors[first], out.product_vectors, matrix, temperature, temperature,
                           unscored_negatives=True)


@dataclass(frozen=True)
class LossTerm:
    fn: Callable[..., Any]  # (student outputs, teacher_logits, gold, config) -> scalar tensor
    tasks: tuple[str, ...]  # the tasks whose outputs it understands
    doc: str
    needs_vectors: bool = False  # reads a two-tower student's query and product vectors


LOSS_TERMS: dict[str, LossTerm] = {
    "kd": LossTerm(lambda z_s, z_t, gold, c: kd_loss(z_s, z_t, gold, c.temperature, c.alpha), ("multiclass",),
                   "Hinton KD: alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE on gold rows"),
    "binary_kd": LossTerm(lambda z_s, z_t, gold, c: binary_kd_loss(z_s, z_t, gold, c.temperature, c.alpha),
                          ("binary",), "KD on one logit: alpha * T^2 * Bernoulli KL + (1 - alpha) * BCE on gold rows"),
    # Ranking: the KD terms weigh alpha, the gold term 1 - alpha (alpha = 0: the no-KD student)
    "pointwise_kd": LossTerm(lambda out, z_t, gold, c: c.alpha * pointwise_kd_loss(out.scores, z_t), ("ranking",),
                             "alpha * mean squared difference of the student's and the teacher's pair scores"),
    "listwise_kd": LossTerm(lambda out, z_t, gold, c: c.alpha * listwise_kd_loss(out.scores, z_t, _compact(out.group),
                                                                                  c.temperature), ("ranking",),
                            "alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) over each query's candidates"),
    "infonce_kd": LossTerm(lambda out, z_t, gold, c: c.alpha * batch_infonce(out, z_t, c.temperature), ("ranking",),
                           "alpha * InfoNCE of the two-tower student's q.p over the batch's products, targets the "
                           "teacher's scores of the query's candidates at T (other queries' candidates: negatives)",
                           needs_vectors=True),
    "graded_gold": LossTerm(lambda out, z_t, gold, c: (1.0 - c.alpha) * graded_gold_loss(out.scores, _grades(gold)),
                            ("ranking",), "(1 - alpha) * mean squared difference of the student's score and the "
                                          "human grade, on judged pairs"),
}


def objective(terms: Mapping[str, float], config: Any) -> Callable[[Any, Any, Any], Any]:
    """The weighted sum of ``terms`` as one function of (student logits, teacher logits, gold)."""
    chosen = [(LOSS_TERMS[name].fn, float(weight)) for name, weight in terms.items()]

    def loss(z_s: Any, z_t: Any, gold: Any) -> Any:
        total = None
        for fn, weight in chosen:
            value = weight * fn(z_s, z_t, gold, config)
            total = value if total is None else total + value
        return total

    return loss
