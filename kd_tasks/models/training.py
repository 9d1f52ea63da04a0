"""The one training loop: shuffled mini-batches, AdamW steps, the mean loss per epoch in the task log.

Students, the tabular teacher and the text teacher's fine-tuning all train here; what differs is the
loss of a batch of row indices (``batch_loss``) and the optimiser's parameter groups.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import torch

log = logging.getLogger(__name__)


def fit(net: torch.nn.Module, rows: torch.Tensor, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer, epochs: int, batch_size: int,
        generator: torch.Generator | None, what: str) -> torch.nn.Module:
    """Train ``net`` for ``epochs`` passes over ``rows`` (row indices) in batches of ``batch_size``.

    Each epoch draws a permutation of ``rows`` from ``generator`` (None: torch's global generator, which
    dropout also draws from). Returns ``net`` in eval mode."""
    started = time.perf_counter()
    net.train()
    for epoch in range(epochs):
        order = rows[torch.randperm(len(rows), generator=generator)]
        total, batches = 0.0, 0
        for start in range(0, len(order), batch_size):
            loss = batch_loss(order[start:start + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        log.info("%s epoch %d/%d: mean loss %.4f over %d rows (%.1fs elapsed)", what, epoch + 1, epochs,
                 total / max(batches, 1), len(rows), time.perf_counter() - started)
    net.eval()
    return net
