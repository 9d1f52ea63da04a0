"""The tabular family (``tabular_mlp``), for behaviour-log use cases: a deep MLP teacher and a small MLP student.

Both read a float matrix of counts and recencies. The first layer is a fixed transform stored with
the model: ``(log1p(max(x, 0)) - mean) / std`` with mean and std fitted on the training rows, so a
saved model carries its own preprocessing and serving needs nothing but the raw feature values.
One output: the logit of the positive label.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import FAMILIES
from .base import SavedStudent
from .training import fit

log = logging.getLogger(__name__)

FAMILY = "tabular_mlp"
SIZES = FAMILIES[FAMILY].sizes  # student hidden layers
TEACHER_HIDDEN = (512, 256, 128)  # the teacher: deep and wide, it sees serving + privileged features
TEACHER_WEIGHTS = FAMILIES[FAMILY].teacher_files[0]


class LogStandardize(nn.Module):
    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: np.ndarray) -> "LogStandardize":
        z = np.log1p(np.clip(x, 0, None))
        self.mean.copy_(torch.from_numpy(z.mean(axis=0) if len(z) else np.zeros(x.shape[1], np.float32)))
        self.std.copy_(torch.from_numpy(np.maximum(z.std(axis=0), 1e-3) if len(z) else np.ones(x.shape[1],
                                                                                                  np.float32)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.log1p(x.clamp_min(0)) - self.mean) / self.std


class TabularNet(nn.Module):
    def __init__(self, n_features: int, hidden: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.scale = LogStandardize(n_features)
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.scale(x))


def mlp_logits(net: nn.Module, x: np.ndarray, batch_size: int = 8192, device: str = "cpu",
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Raw logits (n, 1) of ``net`` on the rows of ``x``, batched, on ``device``."""
    from .runtime import on_each_batch

    net.eval()
    dtype = next(net.parameters()).dtype
    out = np.zeros((len(x), 1), np.float32)

    def run(start: int, stop: int) -> None:
        batch = torch.from_numpy(np.ascontiguousarray(x[start:stop], dtype=np.float32))
        out[start:stop] = net(batch.to(device=device, dtype=dtype)).float().cpu().numpy()
        if progress is not None:
            progress(stop)

    with torch.inference_mode():
        on_each_batch(len(x), batch_size, run, device)
    return out


class TabularStudent(SavedStudent):
    """A small MLP on serving-time features; the same interface as the text ``Student``."""

    family = FAMILY
    warm_start_keys = ("label_names", "size", "feature_names")

    def __init__(self, label_names: Sequence[str], size: str = "base", feature_names: Sequence[str] = (),
                 net: TabularNet | None = None):
        if size not in SIZES:
            raise ValueError(f"student size {size!r} is unknown; choose one of {sorted(SIZES)}")
        self.label_names, self.size, self.feature_names = list(label_names), size, list(feature_names)
        self.hidden = tuple(SIZES[size])
        self.net = net or TabularNet(len(self.feature_names), self.hidden)

    @classmethod
    def create(cls, label_names: Sequence[str], size: str, inputs: np.ndarray,
               feature_names: Sequence[str]) -> "TabularStudent":
        student = cls(label_names, size, feature_names)
        student.net.scale.fit(inputs)
        return student

    @classmethod
    def config_for(cls, label_names: Sequence[str], size: str, feature_names: Sequence[str]) -> dict:
        return {"size": size, "label_names": list(label_names), "feature_names": list(feature_names),
                "hidden": list(SIZES[size])}

    def prepare(self, inputs: np.ndarray) -> tuple[np.ndarray]:
        return (np.ascontiguousarray(inputs, dtype=np.float32),)

    def forward_rows(self, prepared: tuple[np.ndarray], idx: torch.Tensor) -> torch.Tensor:
        return self.net(torch.from_numpy(prepared[0][idx.numpy()]))

    def logits(self, inputs: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        return mlp_logits(self.net, np.asarray(inputs, dtype=np.float32).reshape(-1, len(self.feature_names)),
                       batch_size)

    def config(self) -> dict:
        return self.config_for(self.label_names, self.size, self.feature_names)

    @classmethod
    def from_config(cls, cfg: dict) -> "TabularStudent":
        return cls(cfg["label_names"], cfg["size"], cfg["feature_names"])


class TabularTeacher:
    """A deep MLP on serving + privileged features, loaded from a teacher directory."""

    family = FAMILY

    @classmethod
    def load(cls, path: Path, version: str, manifest: dict[str, Any]) -> "TabularTeacher":
        return cls(path, version, manifest)

    @staticmethod
    def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
        """``train_teacher``: train one into a directory, returning its manifest fields."""
        return train_teacher(*args, **kwargs)

    def __init__(self, path: Path, version: str, manifest: dict[str, Any]):
        from safetensors.torch import load_file

        self.path, self.version = path, version
        self.label_names = list(manifest["label_names"])
        self.feature_names = list(manifest["feature_names"])
        self.net = TabularNet(len(self.feature_names), manifest["hidden"], manifest.get("dropout", 0.0))
        self.net.load_state_dict(load_file(path / TEACHER_WEIGHTS))
        self.net.eval()

    device = "cpu"

    runtime = "torch"

    def prepare(self, device: str = "cpu", dtype: str = "fp32", threads: int | None = None) -> "TabularTeacher":
        """Move the network to ``device`` in ``dtype`` for inference (``threads``: torch's, set by the caller)."""
        from ..names import ConfigError
        from .runtime import torch_dtype

        if dtype == "int8":
            raise ConfigError("label_dtype=int8 is for text teachers; this tabular teacher labels in fp32 or bf16 "
                              "(a forward pass of its small network is cheap already)")

        self.net = self.net.to(device=device, dtype=torch_dtype(dtype)).eval()
        self.device = device
        return self

    def logits(self, inputs: np.ndarray, batch_size: int = 8192,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        return mlp_logits(self.net, np.asarray(inputs, dtype=np.float32).reshape(-1, len(self.feature_names)),
                          batch_size, self.device, progress)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


def fit_binary_mlp(net: TabularNet, x: np.ndarray, y: np.ndarray, epochs: int, learning_rate: float,
                   batch_size: int, seed: int, log_prefix: str, after_epoch: Any = None,
                   warmup_share: float | None = None) -> TabularNet:
    """BCE training of ``net`` on (x, y in {0, 1}); logs the mean loss per epoch. ``after_epoch``: an
    ``EarlyStopping``; ``warmup_share``: linear warm-up and decay of the learning rate."""
    from .training import warmup_decay

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    schedule = None if warmup_share is None else warmup_decay(
        opt, epochs * ((len(xt) + batch_size - 1) // batch_size), warmup_share)
    return fit(net, torch.arange(len(xt)),
               lambda idx: nn.functional.binary_cross_entropy_with_logits(net(xt[idx]).squeeze(1), yt[idx]),
               opt, epochs, batch_size, gen, log_prefix, after_epoch, schedule)


def train_teacher(inputs: np.ndarray, gold: np.ndarray, label_names: Sequence[str], feature_names: Sequence[str],
                  out_dir: Path, base_model: str | None, config: Any, validation: Any = None,
                  dropout: float = 0.1) -> dict[str, Any]:
    """Train the deep MLP teacher into ``out_dir`` (weights + the manifest fields it needs); ``gold`` is
    0/1 per row. ``base_model`` is ignored: this teacher starts from random weights. ``validation``
    (``training.Validation``) is scored after every epoch: early stopping, the best epoch kept."""
    from .training import EarlyStopping
    from dataclasses import asdict

    from safetensors.torch import save_file

    x, y = inputs, np.asarray(gold, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError(f"the teacher needs positive and negative rows, got {int(y.sum())} positives in "
                         f"{len(y)} rows; widen the teacher window (teacher_lookback_days) or load more days")
    rng = np.random.default_rng(config.seed)
    if config.max_rows and len(x) > config.max_rows:
        keep = np.sort(rng.choice(len(x), config.max_rows, replace=False))
        x, y = x[keep], y[keep]
    torch.manual_seed(config.seed)
    net = TabularNet(len(feature_names), TEACHER_HIDDEN, dropout)
    net.scale.fit(x)
    log.info("training the tabular teacher on %d rows (%d positives), %d features, hidden %s",
             len(x), int(y.sum()), len(feature_names), TEACHER_HIDDEN)
    stopper = None
    if validation is not None and len(validation.gold):
        xv = np.asarray(validation.inputs, dtype=np.float32)
        stopper = EarlyStopping(net, lambda: validation.score(mlp_logits(net, xv, 8192, "cpu", None)),
                                config.patience, "teacher", validation.metric)
    fit_binary_mlp(net, x, y, config.epochs, config.learning_rate, config.batch_size, config.seed, "teacher",
                   stopper, config.warmup_share)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out_dir / TEACHER_WEIGHTS)
    return {"family": FAMILY, "label_names": list(label_names), "feature_names": list(feature_names),
            "hidden": list(TEACHER_HIDDEN), "dropout": dropout, "train_rows": len(x), "positives": int(y.sum()),
            "train_config": asdict(config),
            "validation": None if stopper is None else {"rows": len(validation.gold), **stopper.summary()}}
