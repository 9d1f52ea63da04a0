"""The cross-encoder teacher (family ``hf_cross_encoder``): MiniLM reads a query and a product title
as one sequence ("[CLS] query [SEP] title [SEP]") and outputs one relevance score per pair.

It is fine-tuned as a graded regression on the human grade (mean squared error on, e.g., the mean of
three ratings on 1..3): the grade is an average, so its fractional values carry information that
ordinal classes would round away, and a regression's output is already the score that ranks a query's
candidates. Validated after every epoch on NDCG@10 of the validation queries (early stopping). Its
scores are the soft labels the ranking students learn from.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from .hf_text import HFTeacher, _quiet_transformers, fine_tuning_optimizer, pretrained_encoder_path, training_order
from .training import fit

log = logging.getLogger(__name__)
FAMILY = "hf_cross_encoder"


class CrossEncoderTeacher(HFTeacher):
    """A fine-tuned cross-encoder; ``logits`` of (query, title) rows are their scores, shape (n, 1)."""

    def prepare(self, device: str = "cpu", dtype: str = "fp32", threads: int | None = None) -> "CrossEncoderTeacher":
        if dtype == "int8":
            raise ValueError("int8 labelling is not available for the cross-encoder teacher; label in fp32 or bf16")
        super().prepare(device, dtype, threads)
        return self

    def encode(self, rows: Sequence[Any]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of "[CLS] query [SEP] title [SEP]" per row (the longer side truncated first to
        ``max_length``) and their token types (0: query, 1: title)."""
        enc = self.tokenizer([q for q, _ in rows], [t for _, t in rows], truncation="longest_first",
                             max_length=self.max_length, padding=False, return_attention_mask=False,
                             return_token_type_ids=True)
        return enc["input_ids"], enc["token_type_ids"]

    @staticmethod
    def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return train_cross_encoder(*args, **kwargs)


def train_cross_encoder(rows: Sequence[tuple[str, str]], grades: Sequence[float], label_names: Sequence[str],
                        feature_names: Sequence[str], out_dir: Path, base_model: str | None, config: Any,
                        validation: Any = None) -> dict[str, Any]:
    """Fine-tune a one-output sequence classifier from ``base_model`` (default: the real MiniLM) on
    judged (query, title) rows with their grades (mean squared error), into ``out_dir``.
    ``validation`` (``training.Validation`` with the validation queries as its groups) is scored
    after every epoch (early stopping, the best epoch kept). Returns the manifest fields."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .runtime import device_name, select_device
    from .training import EarlyStopping

    _quiet_transformers()
    if len(rows) != len(grades):
        raise ValueError(f"got {len(rows)} pairs but {len(grades)} grades")
    if len(rows) < 2:
        raise ValueError(f"the cross-encoder needs judged pairs to learn from, got {len(rows)}; load more judged pairs")
    base_model = base_model or pretrained_encoder_path()
    order = training_order(len(rows), config)
    x = [rows[i] for i in order]
    y = torch.tensor([float(grades[i]) for i in order])
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=1, problem_type="regression", id2label={0: label_names[0]},
        label2id={label_names[0]: 0}).to(device)
    with torch.no_grad():  # start the head at the mean grade: the first steps learn order, not the offset
        model.classifier.bias.fill_(float(y.mean()))
    opt, schedule, steps = fine_tuning_optimizer(model, config, len(x))
    view = CrossEncoderTeacher(Path(out_dir), "", list(label_names), model, tokenizer, config.max_length,
                               device=device)
    log.info("fine-tuning the cross-encoder from %s on %d judged pairs (%d validation pairs), at most %d epochs x %d "
             "steps on %s, graded regression (MSE), warm-up %d steps then linear decay", base_model, len(x),
             0 if validation is None else len(validation.gold), config.epochs, steps // config.epochs,
             device_name(device), int(steps * config.warmup_share))
    started = time.perf_counter()
    ids, types = view.encode(x)
    pad = tokenizer.pad_token_id or 0

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        rows_ = idx.tolist()
        width = max(len(ids[i]) for i in rows_)
        input_ids = torch.full((len(rows_), width), pad, dtype=torch.long)
        type_ids = torch.zeros((len(rows_), width), dtype=torch.long)
        mask = torch.zeros((len(rows_), width), dtype=torch.long)
        for j, i in enumerate(rows_):
            input_ids[j, :len(ids[i])] = torch.tensor(ids[i])
            type_ids[j, :len(ids[i])] = torch.tensor(types[i])
            mask[j, :len(ids[i])] = 1
        out = model(input_ids=input_ids.to(device), token_type_ids=type_ids.to(device),
                    attention_mask=mask.to(device)).logits.reshape(-1)
        return torch.nn.functional.mse_loss(out.float(), y[idx].to(device))

    stopper = None
    if validation is not None and len(validation.gold):
        stopper = EarlyStopping(model, lambda: validation.score(view.logits(validation.inputs)), config.patience,
                                "cross-encoder", validation.metric)
    lengths = torch.tensor([len(i) for i in ids])
    fit(model, torch.arange(len(x)), batch_loss, opt, config.epochs, config.batch_size, None, "cross-encoder",
        after_epoch=stopper, scheduler=schedule, lengths=lengths)
    model.to("cpu").save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"family": FAMILY, "label_names": list(label_names), "base_model": str(base_model),
            "max_length": config.max_length, "train_rows": len(x), "train_config": asdict(config),
            "objective": "graded regression (MSE on the grade)",
            "train_seconds": round(time.perf_counter() - started, 1), "train_device": device_name(device),
            "validation": None if stopper is None else {"rows": len(validation.gold), **stopper.summary()}}
