"""A small transformer student cut from the teacher (family ``teacher_layers_transformer``): the
fine-tuned MiniLM teacher's embeddings, ``k`` of its layers (evenly spaced from the first, as
DistilBERT keeps every other layer), its pooler and its classification head, then distilled on the
teacher's logits like any student. For long texts (reviews), where a bag of n-grams loses word order
and negation. Sizes keep 2, 3 or 4 of the teacher's layers.

It needs the teacher at creation (``create(..., teacher_dir=...)``, the use case's teacher directory);
saved, it is a student directory like the others (weights, ``student.json`` with the BERT config and
the layers it kept) plus the tokenizer's files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .base import SavedStudent, read_config

FAMILY = "teacher_layers_transformer"
SIZES = {"small": 2, "base": 3, "large": 4}  # teacher layers kept


def kept_layers(teacher_layers: int, keep: int) -> list[int]:
    """``keep`` of ``teacher_layers`` layer indices, evenly spaced from the first (6 -> 3: 0, 2, 4)."""
    if not 1 <= keep <= teacher_layers:
        raise ValueError(f"cannot keep {keep} of the teacher's {teacher_layers} layers")
    return sorted({int(i * teacher_layers / keep) for i in range(keep)})


def cut(teacher_model: Any, keep: int) -> tuple[Any, list[int]]:
    """A BERT sequence classifier with ``keep`` of ``teacher_model``'s layers, every weight copied:
    embeddings, the kept layers in order, pooler and classifier."""
    from transformers import BertForSequenceClassification

    layers = kept_layers(teacher_model.config.num_hidden_layers, keep)
    config = teacher_model.config.__class__.from_dict({**teacher_model.config.to_dict(), "num_hidden_layers": keep})
    student = BertForSequenceClassification(config)
    student.bert.embeddings.load_state_dict(teacher_model.bert.embeddings.state_dict())
    for j, i in enumerate(layers):
        student.bert.encoder.layer[j].load_state_dict(teacher_model.bert.encoder.layer[i].state_dict())
    if teacher_model.bert.pooler is not None:
        student.bert.pooler.load_state_dict(teacher_model.bert.pooler.state_dict())
    student.classifier.load_state_dict(teacher_model.classifier.state_dict())
    return student, layers


class TeacherLayersStudent(SavedStudent):
    family = FAMILY
    from_teacher = True  # create() takes the teacher directory
    warm_start_keys = ("label_names", "size", "teacher_version")

    def __init__(self, label_names: Sequence[str], size: str, net: Any, tokenizer: Any, max_length: int,
                 layers: Sequence[int], teacher_version: str):
        self.label_names, self.size, self.net, self.tokenizer = list(label_names), size, net, tokenizer
        self.max_length, self.layers, self.teacher_version = int(max_length), list(layers), teacher_version
        self._rows: Any = None  # the token embeddings' optimiser while training with sparse updates

    @classmethod
    def create(cls, label_names: Sequence[str], size: str, inputs: Any = (), feature_names: Sequence[str] = (),
               teacher_dir: Any = None) -> "TeacherLayersStudent":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..storage import files

        if teacher_dir is None:
            raise ValueError(f"the {FAMILY} student starts from the teacher's layers: give it the teacher directory")
        if size not in SIZES:
            raise ValueError(f"student size {size!r} is unknown; choose one of {sorted(SIZES)}")
        teacher_dir = Path(teacher_dir)
        manifest = files.read_json(teacher_dir / "kd_manifest.json", "teacher manifest", "")
        if list(manifest.get("label_names", [])) != list(label_names):
            raise ValueError(f"the teacher at {teacher_dir} has outputs {manifest.get('label_names')} but the "
                             f"student needs {list(label_names)}")
        teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
        net, layers = cut(teacher, SIZES[size])
        return cls(label_names, size, net.eval(), AutoTokenizer.from_pretrained(teacher_dir),
                   int(manifest.get("max_length", 32)), layers, str(manifest.get("version", "")))

    @classmethod
    def config_for(cls, label_names: Sequence[str], size: str, feature_names: Sequence[str] = ()) -> dict:
        return {"size": size, "label_names": list(label_names)}

    def config(self) -> dict:
        return {**self.config_for(self.label_names, self.size), "bert_config": self.net.config.to_dict(),
                "max_length": self.max_length, "layers": self.layers, "teacher_version": self.teacher_version}

    @classmethod
    def warm_startable(cls, saved: Any, fresh: Any) -> bool:
        return False  # a new teacher means new layers to start from: always cut afresh

    def features_key(self) -> tuple:
        return (self.family, self.max_length, self.teacher_version)

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding="max_length",
                             return_token_type_ids=False, return_tensors="np")
        return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int8)

    def prepare(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention masks, ``max_length`` wide, tokenised once per window."""
        return self._encode(texts)

    def row_lengths(self, prepared: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return prepared[1].sum(axis=1, dtype=np.int64)

    def optimizer(self, learning_rate: float, sparse: bool, fused: bool = True) -> Any:
        """With ``sparse``, a step updates only the token embeddings its batch uses (``RowAdam``: no
        dense gradient and no AdamW step over the whole 30,522-row vocabulary) and the rest with
        AdamW; else AdamW over every weight."""
        from .base import adamw
        from .training import Optimizers, RowAdam

        words = self.net.bert.embeddings.word_embeddings.weight
        self._rows = RowAdam(words, learning_rate) if sparse else None
        if not sparse:
            return super().optimizer(learning_rate, sparse, fused)
        return Optimizers(self._rows, adamw([p for p in self.net.parameters() if p is not words], learning_rate, fused))

    def forward_rows(self, prepared: tuple[np.ndarray, np.ndarray], idx: torch.Tensor) -> torch.Tensor:
        ids, mask = prepared[0][idx.numpy()], prepared[1][idx.numpy()]
        width = max(1, int(mask.sum(axis=1).max()))  # no column that is padding in every row
        input_ids = torch.from_numpy(ids[:, :width].astype(np.int64))
        attention_mask = torch.from_numpy(mask[:, :width].astype(np.int64))
        rows = self._rows
        if rows is None or not self.net.training:
            return self.net(input_ids=input_ids, attention_mask=attention_mask).logits
        # the token embeddings this batch uses as a small table of their own: its gradient is theirs alone
        table = rows.gather(input_ids)
        return self.net(inputs_embeds=table[rows.inverse], attention_mask=attention_mask).logits

    def logits(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        self.net.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                out.append(self.forward_rows(self._encode(texts[start:start + batch_size]),
                                             torch.arange(min(batch_size, len(texts) - start))).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def save(self, directory: str | Path) -> Path:
        directory = super().save(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "TeacherLayersStudent":
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

        from ..storage import files
        from .base import WEIGHTS

        directory = Path(directory)
        cfg = read_config(directory)
        net = BertForSequenceClassification(BertConfig.from_dict(cfg["bert_config"]))
        try:
            net.load_state_dict(load_file(directory / WEIGHTS))
        except Exception as exc:  # safetensors and torch raise several types for a damaged file
            raise files.IntegrityError(f"student weights {directory / WEIGHTS} could not be loaded "
                                       f"({type(exc).__name__}: {exc}); retrain or restore this student") from None
        return cls(cfg["label_names"], cfg["size"], net.eval(), AutoTokenizer.from_pretrained(directory),
                   cfg["max_length"], cfg["layers"], cfg.get("teacher_version", ""))
