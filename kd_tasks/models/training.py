"""The one training loop: shuffled mini-batches, AdamW steps, the mean loss per epoch in the task log.

Students, the tabular teacher and the text teacher's fine-tuning all train here; what differs is the
loss of a batch of row indices (``batch_loss``) and the optimiser's parameter groups.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

import torch

log = logging.getLogger(__name__)


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


Batches = Callable[[int], Iterable[tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]]


def fit(net: torch.nn.Module, rows: torch.Tensor, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        optimizer: Any, epochs: int, batch_size: int,
        generator: torch.Generator | None, what: str) -> torch.nn.Module:
    """Train ``net`` for ``epochs`` passes over ``rows`` (row indices) in batches of ``batch_size``.

    Each epoch draws a permutation of ``rows`` from ``generator`` (None: torch's global generator, which
    dropout also draws from). Returns ``net`` in eval mode."""
    return fit_blocks(net, lambda epoch: [(rows, batch_loss)], optimizer, epochs, batch_size, generator, what)


def fit_blocks(net: torch.nn.Module, blocks: Batches, optimizer: Any, epochs: int, batch_size: int,
               generator: torch.Generator | None, what: str) -> torch.nn.Module:
    """``fit`` over data held a block at a time: ``blocks(epoch)`` yields (rows of the block, the loss of
    a batch of them); each block's rows are permuted on their own. ``optimizer`` has ``zero_grad`` and
    ``step`` (one optimiser, or several behind one front)."""
    started = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        total, batches, seen = 0.0, 0, 0
        for rows, batch_loss in blocks(epoch):
            order = rows[torch.randperm(len(rows), generator=generator)]
            for start in range(0, len(order), batch_size):
                loss = batch_loss(order[start:start + batch_size])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
                batches += 1
            seen += len(rows)
        log.info("%s epoch %d/%d: mean loss %.4f over %d rows (%.1fs elapsed)", what, epoch + 1, epochs,
                 total / max(batches, 1), seen, time.perf_counter() - started)
    net.eval()
    return net
