"""The one training loop: shuffled mini-batches, AdamW steps, the mean loss per epoch in the task log.

Students, the tabular teacher and the text teacher's fine-tuning all train here; what differs is the
loss of a batch of row indices (``batch_loss``) and the optimiser's parameter groups.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

log = logging.getLogger(__name__)


@dataclass
class Validation:
    """Rows a teacher is validated on after every epoch: its inputs, their gold values (as the task
    reads them: label names, or 0/1) and the metric that judges (the use case's gate metric)."""

    inputs: Any
    gold: Sequence[Any]
    label_names: Sequence[str]
    task: str
    metric: str
    groups: Sequence[Any] | None = None  # the rows' grouping key (a query), for tasks scored per group

    def score(self, logits: Any) -> float:
        from ..tasks import get_task

        value = get_task(self.task).quality(self.label_names, self.gold, logits, self.groups).get(self.metric)
        return float("nan") if value is None else float(value)


class Optimizers:
    """Several optimisers, each over its own parameters, stepped as one (``fit`` calls ``zero_grad``
    and ``step``)."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad()

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


class RowAdam:
    """Adam on the rows of an embedding table that a batch touches (the lazy Adam of
    ``torch.optim.SparseAdam``: untouched rows keep their moments and weights; the bias correction
    counts every step). ``gather`` hands the forward pass the batch's rows as a small leaf tensor, and
    ``step`` applies its gradient: no gradient of the whole table is built, none is coalesced."""

    def __init__(self, weight: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.weight, self.lr, self.betas, self.eps = weight, lr, betas, eps
        self.exp_avg = torch.zeros_like(weight, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(weight, requires_grad=False)
        self.steps = 0
        self.rows: torch.Tensor | None = None
        self.inverse: torch.Tensor | None = None
        self.table: torch.Tensor | None = None

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        self.rows, self.inverse = torch.unique(ids, return_inverse=True)
        self.table = self.weight.detach()[self.rows].requires_grad_()
        return self.table

    def zero_grad(self) -> None:
        """Nothing to clear: each batch's rows are a new leaf tensor (``gather``)."""

    @torch.no_grad()
    def step(self) -> None:
        if self.table is None or self.table.grad is None:
            return
        self.steps += 1
        beta1, beta2 = self.betas
        grad, rows = self.table.grad, self.rows
        m = self.exp_avg[rows].mul_(beta1).add_(grad, alpha=1 - beta1)
        v = self.exp_avg_sq[rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self.exp_avg[rows], self.exp_avg_sq[rows] = m, v
        step_size = self.lr * (1 - beta2 ** self.steps) ** 0.5 / (1 - beta1 ** self.steps)
        self.weight.data[rows] = self.weight.data[rows] - step_size * m / (v.sqrt() + self.eps)


Batches = Callable[[int], Iterable[tuple]]  # (rows, loss of a batch of rows[, lengths[, groups of the rows]])


def fit(net: torch.nn.Module, rows: torch.Tensor, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        optimizer: Any, epochs: int, batch_size: int,
        generator: torch.Generator | None, what: str, after_epoch: "EarlyStopping | None" = None,
        scheduler: Any = None, lengths: torch.Tensor | None = None) -> torch.nn.Module:
    """Train ``net`` for ``epochs`` passes over ``rows`` (row indices) in batches of ``batch_size``.

    Each epoch draws a permutation of ``rows`` from ``generator`` (None: torch's global generator, which
    dropout also draws from). ``after_epoch`` (an ``EarlyStopping``) validates after every epoch and may
    stop early; ``scheduler`` steps after every batch; ``lengths`` (tokens of each row, indexed like
    ``rows``) groups rows of similar length into batches (``batches``). Returns ``net`` in eval mode."""
    return fit_blocks(net, lambda epoch: [(rows, batch_loss, lengths)], optimizer, epochs, batch_size, generator,
                      what, after_epoch, scheduler)


GROUP_BATCHES = 50  # length grouping sorts windows of this many batches (Hugging Face's group_by_length)


def batches(rows: torch.Tensor, batch_size: int, generator: torch.Generator | None,
            lengths: torch.Tensor | None = None, groups: torch.Tensor | None = None) -> list[torch.Tensor]:
    """One epoch's batches of ``rows``: a random permutation cut into batches. With ``lengths`` (one per
    row of ``rows``), each window of ``GROUP_BATCHES`` batches of the permutation is sorted by length
    before it is cut, and the batches are shuffled: a batch pads its rows to its longest, so rows of
    similar length waste little compute on padding, while every batch stays a random draw of rows.

    With ``groups`` (a code per row of ``rows``: a query), whole groups are drawn in a random order and
    packed into batches of about ``batch_size`` rows (a batch closes once it holds that many; a group
    larger than a batch is a batch of its own): ranking losses compare a query's candidates with each
    other, so a query is never split between batches."""
    if groups is not None:
        return _group_batches(rows, batch_size, generator, torch.as_tensor(groups))
    perm = torch.randperm(len(rows), generator=generator)
    if lengths is None:
        return [rows[perm[s:s + batch_size]] for s in range(0, len(perm), batch_size)]
    lengths = torch.as_tensor(lengths)
    window = GROUP_BATCHES * batch_size
    out = []
    for s in range(0, len(perm), window):
        part = perm[s:s + window]
        part = part[torch.argsort(lengths[part], descending=True, stable=True)]
        out += [rows[part[i:i + batch_size]] for i in range(0, len(part), batch_size)]
    return [out[k] for k in torch.randperm(len(out), generator=generator).tolist()]


def _group_batches(rows: torch.Tensor, batch_size: int, generator: torch.Generator | None,
                   groups: torch.Tensor) -> list[torch.Tensor]:
    if not len(rows):
        return []
    _, codes = torch.unique(groups, return_inverse=True)
    members = torch.argsort(codes, stable=True)
    sizes = torch.bincount(codes)
    starts = torch.cumsum(sizes, 0) - sizes
    out, current, held = [], [], 0
    for g in torch.randperm(len(sizes), generator=generator).tolist():
        current.append(members[starts[g]:starts[g] + sizes[g]])
        held += int(sizes[g])
        if held >= batch_size:
            out.append(rows[torch.cat(current)])
            current, held = [], 0
    if current:
        out.append(rows[torch.cat(current)])
    return out


def fit_blocks(net: torch.nn.Module, blocks: Batches, optimizer: Any, epochs: int, batch_size: int,
               generator: torch.Generator | None, what: str, after_epoch: "EarlyStopping | None" = None,
               scheduler: Any = None, progress_every_s: float = 30.0) -> torch.nn.Module:
    """``fit`` over data held a block at a time: ``blocks(epoch)`` yields (rows of the block, the loss of
    a batch of them), optionally followed by the rows' lengths and their groups (either may be None);
    each block's rows are drawn into batches on their own (``batches``). ``optimizer`` has ``zero_grad`` and ``step`` (one optimiser, or several
    behind one front). A long epoch logs its progress with an ETA every ``progress_every_s`` seconds."""
    started = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        total, steps, seen = 0.0, 0, 0
        epoch_started = last = time.perf_counter()
        for rows, batch_loss, *extra in blocks(epoch):
            done = 0
            lengths, groups = (list(extra) + [None, None])[:2]
            for batch in batches(rows, batch_size, generator, lengths, groups):
                loss = batch_loss(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total += loss.item()
                steps += 1
                done += len(batch)
                now = time.perf_counter()
                if now - last >= progress_every_s and done < len(rows):
                    last = now
                    log.info("%s epoch %d/%d: %d rows of this block, mean loss %.4f, %.0f rows/s", what, epoch + 1,
                             epochs, seen + done, total / steps, (seen + done) / (now - epoch_started))
            seen += len(rows)
        elapsed = time.perf_counter() - started
        per_epoch = elapsed / (epoch + 1)
        log.info("%s epoch %d/%d: mean loss %.4f over %d rows (%.1fs elapsed, ETA at most %.0fs)", what, epoch + 1,
                 epochs, total / max(steps, 1), seen, elapsed, per_epoch * (epochs - epoch - 1))
        if after_epoch is not None:
            stop = after_epoch(epoch, elapsed, epochs)
            net.train()
            if stop:
                break
    if after_epoch is not None:
        after_epoch.restore()
    net.eval()
    return net


class EarlyStopping:
    """Validation after every epoch on the use case's metric (``score()``, higher is better): keeps the
    best epoch's weights (restored at the end of training) and stops after ``patience`` epochs without
    an improvement. ``history`` holds each epoch's score."""

    def __init__(self, net: torch.nn.Module, score: Callable[[], float], patience: int, what: str, metric: str):
        self.net, self.score, self.patience, self.what, self.metric = net, score, patience, what, metric
        self.best, self.best_epoch, self.history = float("-inf"), -1, []
        self._state: dict[str, torch.Tensor] | None = None

    def __call__(self, epoch: int, elapsed: float, epochs: int) -> bool:
        self.net.eval()
        with torch.no_grad():
            value = float(self.score())
        self.history.append(round(value, 6))
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
        stop = epoch - self.best_epoch >= self.patience
        left = 0 if stop else epochs - epoch - 1
        log.info("%s epoch %d/%d: validation %s %.4f (best %.4f at epoch %d)%s; ETA at most %.0fs", self.what,
                 epoch + 1, epochs, self.metric, value, self.best, self.best_epoch + 1,
                 f", stopping: no gain in {self.patience} epochs" if stop else "", elapsed / (epoch + 1) * left)
        return stop

    def restore(self) -> None:
        if self._state is not None:
            self.net.load_state_dict(self._state)

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": round(self.best, 6), "best_epoch": self.best_epoch + 1,
                "epochs_run": len(self.history), "history": self.history}


def warmup_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_share: float) -> Any:
    """Linear warm-up over ``warmup_share`` of the steps, then linear decay to zero (BERT's schedule)."""
    warm = max(1, int(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def class_weights(gold: Any, n_classes: int) -> torch.Tensor:
    """Per-class loss weights for macro-averaged metrics: the inverse square root of each class's share
    of the rows, normalised to a mean of 1 over the rows (rare classes count more, without the
    instability of full inverse-frequency weights); a class without rows gets weight 1."""
    counts = torch.bincount(torch.as_tensor(gold), minlength=n_classes).double()
    w = torch.where(counts > 0, (counts.sum() / (n_classes * counts.clamp(min=1))).sqrt(), torch.ones_like(counts))
    return (w / (w[torch.as_tensor(gold)].mean())).float()
