"""The hashed n-gram student (family ``hashed_ngram_mlp``): word + character n-grams -> EmbeddingBag -> MLP.

fastText-style features make the student robust to spelling variants ("Tshirt", "T-shirt") and
unseen brand names, while staying ~10x smaller and ~100x faster than a MiniLM teacher on a CPU.
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import FAMILIES
from .base import SavedStudent, adamw
from .training import Optimizers, RowAdam

FAMILY = "hashed_ngram_mlp"
SIZES = FAMILIES[FAMILY].sizes  # name -> (hash buckets, embedding dim, hidden units)

# Featuriser versions. A student records the version it was trained with and keeps it for life, so a
# champion or an export is always scored on the inputs it learnt from.
#   1: lower-cased [a-z0-9]+ words only (every non-Latin title became one empty input)
#   2: NFKC + casefold, Unicode words (letters, digits and their combining marks) and symbols such as
#      emoji as one-character words; at most MAX_CHARS characters, MAX_WORDS words and MAX_GRAMS grams
#      per text, so a pathological title costs no more than a long review
FEATURIZER_VERSION = 2
FEATURIZERS = {
    1: "lower-cased [a-z0-9]+ words, word bigrams, char 3-5-grams of <word>, zlib.crc32 mod n_buckets",
    2: "NFKC + casefold; Unicode words (letters, digits, combining marks) and single symbols (emoji), "
       "first 2000 chars / 256 words; word bigrams, char 3-5-grams of <word>, at most 4096 grams, "
       "zlib.crc32 mod n_buckets",
}
MAX_CHARS, MAX_WORDS, MAX_GRAMS = 2000, 256, 4096
_WORD_V1 = re.compile(r"[a-z0-9]+")


def _words_v2(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    for ch in unicodedata.normalize("NFKC", text[:MAX_CHARS]).casefold():
        cat = unicodedata.category(ch)
        if ch.isalnum() or cat[0] == "M":
            current.append(ch)
            continue
        if current:
            words.append("".join(current))
            current = []
        if cat[0] == "S":  # emoji, currency and other symbols carry meaning in titles
            words.append(ch)
    if current:
        words.append("".join(current))
    return words[:MAX_WORDS]


def words(text: str, featurizer: int = FEATURIZER_VERSION) -> list[str]:
    if featurizer == 1:
        return _WORD_V1.findall(text.lower())
    if featurizer == 2:
        return _words_v2(text)
    raise ValueError(f"featurizer version {featurizer} is unknown; known: {sorted(FEATURIZERS)}")


def featurize(text: str, n_buckets: int, featurizer: int = FEATURIZER_VERSION) -> list[int]:
    """Bucket ids of the text's words, word bigrams and character 3..5-grams of each word."""
    return featurize_words(words(text, featurizer), n_buckets, featurizer)


def featurize_words(ws: Sequence[str], n_buckets: int, featurizer: int = FEATURIZER_VERSION) -> list[int]:
    """``featurize`` of a text already split into its words (``words``)."""
    grams = [f"w:{w}" for w in ws]
    grams += [f"b:{a}_{b}" for a, b in zip(ws, ws[1:])]
    for w in ws:
        padded = f"<{w}>"
        for n in (3, 4, 5):
            grams += [f"c:{padded[i:i + n]}" for i in range(len(padded) - n + 1)]
    if not grams:
        grams = ["<empty>"]
    elif featurizer >= 2:
        grams = grams[:MAX_GRAMS]
    return [zlib.crc32(g.encode()) % n_buckets for g in grams]


def batch_inputs(texts: Sequence[str], n_buckets: int,
                 featurizer: int = FEATURIZER_VERSION) -> tuple[torch.Tensor, torch.Tensor]:
    """EmbeddingBag inputs: flat bucket ids and the offset of each text."""
    ids, offsets = [], []
    for t in texts:
        offsets.append(len(ids))
        ids.extend(featurize(t, n_buckets, featurizer))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def featurize_all(texts: Sequence[str], n_buckets: int, featurizer: int = FEATURIZER_VERSION,
                  chunk_rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Every text's bucket ids back to back (int32) and the row offsets (n + 1, int64), hashed a chunk
    at a time, so no Python list of the whole window's ids is ever built."""
    ids, lengths = [], np.zeros(len(texts), np.int64)
    for start in range(0, len(texts), chunk_rows):
        grams = [featurize(t, n_buckets, featurizer) for t in texts[start:start + chunk_rows]]
        lengths[start:start + len(grams)] = [len(g) for g in grams]
        ids.append(np.fromiter((b for g in grams for b in g), np.int32, int(lengths[start:start + len(grams)].sum())))
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return (np.concatenate(ids) if ids else np.zeros(0, np.int32)), offsets


def join_ragged(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several (ids, offsets) of ``featurize_all`` as those of their rows back to back."""
    if len(parts) == 1:
        return parts[0]
    starts = np.cumsum([0] + [len(ids) for ids, _ in parts[:-1]])
    offsets = [offsets[:-1] + start for (_, offsets), start in zip(parts, starts)]
    return (np.concatenate([ids for ids, _ in parts]),
            np.concatenate([*offsets, [sum(len(ids) for ids, _ in parts)]]).astype(np.int64))


def gather_rows(ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The EmbeddingBag inputs (flat ids, offsets) of rows ``rows`` of ``featurize_all``'s arrays."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    batch_offsets = np.zeros(len(rows), np.int64)
    np.cumsum(lengths[:-1], out=batch_offsets[1:])
    positions = np.repeat(starts - batch_offsets, lengths) + np.arange(int(lengths.sum()))
    return torch.from_numpy(ids[positions].astype(np.int64)), torch.from_numpy(batch_offsets)


class StudentNet(nn.Module):
    def __init__(self, n_buckets: int, dim: int, hidden: int, n_labels: int):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_buckets, dim, mode="mean")
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_labels))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embedding(ids, offsets))


class HashedNgramStudent(SavedStudent):
    """A trained hashed n-gram student with its label names; saves and loads as a small directory."""

    family = FAMILY
    warm_start_keys = ("label_names", "size", "featurizer")
    saved_defaults = {"featurizer": 1}  # a student saved before featuriser versions were recorded used 1

    def __init__(self, label_names: Sequence[str], size: str = "base", net: StudentNet | None = None,
                 featurizer: int = FEATURIZER_VERSION):
        if size not in SIZES:
            raise ValueError(f"student size {size!r} is unknown; choose one of {sorted(SIZES)}")
        if featurizer not in FEATURIZERS:
            raise ValueError(f"featurizer version {featurizer} is unknown; known: {sorted(FEATURIZERS)}")
        self.label_names = list(label_names)
        self.size = size
        self.featurizer = featurizer
        self.n_buckets, self.dim, self.hidden = SIZES[size]
        self.net = net or StudentNet(self.n_buckets, self.dim, self.hidden, len(self.label_names))
        self._rows: RowAdam | None = None  # the embedding's optimiser while training with sparse updates

    @classmethod
    def create(cls, label_names: Sequence[str], size: str, inputs: Sequence[str] = (),
               feature_names: Sequence[str] = ()) -> "HashedNgramStudent":
        """A fresh student (the hashing featurizer needs no fitting)."""
        return cls(label_names, size)

    @classmethod
    def config_for(cls, label_names: Sequence[str], size: str, feature_names: Sequence[str] = (),
                   featurizer: int = FEATURIZER_VERSION) -> dict:
        n_buckets, dim, hidden = SIZES[size]
        return {"size": size, "label_names": list(label_names), "n_buckets": n_buckets, "dim": dim,
                "hidden": hidden, "featurizer": featurizer}

    def features_key(self) -> tuple:
        return (self.family, self.n_buckets, self.featurizer)

    def prepare(self, texts: Sequence[str], chunk_rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Featurise every row once (the hashing is the expensive part of a training step) into two
        compact arrays: every row's bucket ids back to back (int32) and the row offsets (n + 1, int64)."""
        return featurize_all(texts, self.n_buckets, self.featurizer, chunk_rows)

    def optimizer(self, learning_rate: float, sparse: bool, fused: bool = True) -> Any:
        """With ``sparse``, a step updates only the embedding rows its batch touched (``RowAdam``, the
        lazy Adam of ``torch.optim.SparseAdam``) and the MLP with AdamW; else AdamW over every weight
        (whose step reads and writes the whole table)."""
        self._rows = RowAdam(self.net.embedding.weight, learning_rate) if sparse else None
        if not sparse:
            return super().optimizer(learning_rate, sparse, fused)
        rest = [p for n, p in self.net.named_parameters() if not n.startswith("embedding.")]
        return Optimizers(self._rows, adamw(rest, learning_rate, fused))

    @staticmethod
    def join_prepared(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return join_ragged(parts)

    def empty_inputs(self, texts: Sequence[str]) -> int:
        """How many texts featurise to nothing (no word the featuriser keeps): the student sees them
        all as the same input."""
        return sum(1 for t in texts if not words(t, self.featurizer))

    def forward_rows(self, prepared: tuple[np.ndarray, np.ndarray], idx: torch.Tensor) -> torch.Tensor:
        """Logits of the rows ``idx`` of prepared features: their ids gathered into one EmbeddingBag batch."""
        batch_ids, batch_offsets = gather_rows(*prepared, idx.numpy())
        if self._rows is None or not self.net.training:
            return self.net(batch_ids, batch_offsets)
        # the rows this batch touches as a small table of their own: its gradient is theirs alone
        table = self._rows.gather(batch_ids)
        pooled = nn.functional.embedding_bag(self._rows.inverse, table, batch_offsets, mode="mean")
        return self.net.mlp(pooled)

    def logits(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        self.net.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                out.append(self.net(*batch_inputs(texts[i:i + batch_size], self.n_buckets, self.featurizer)).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def config(self) -> dict:
        return self.config_for(self.label_names, self.size, featurizer=self.featurizer)

    @classmethod
    def from_config(cls, cfg: dict) -> "HashedNgramStudent":
        # a student saved before featuriser versions were recorded used version 1, and keeps it
        return cls(cfg["label_names"], cfg["size"], featurizer=int(cfg.get("featurizer", 1)))


class HashedFamilyStudent(SavedStudent):
    """What a student that hashes its texts with this featuriser shares (the two-tower and pair
    students): its shape is one of its family's sizes (``shape_names`` name the numbers, saved in its
    config), its featuriser version is kept for life, and a warm start needs the same of both."""

    shape_names: tuple[str, ...] = ("n_buckets",)
    warm_start_keys = ("label_names", "size", "featurizer")

    def __init__(self, label_names: Sequence[str], size: str = "base", net: nn.Module | None = None,
                 featurizer: int = FEATURIZER_VERSION):
        sizes = FAMILIES[self.family].sizes
        if size not in sizes:
            raise ValueError(f"student size {size!r} is unknown; choose one of {sorted(sizes)}")
        if featurizer not in FEATURIZERS:
            raise ValueError(f"featurizer version {featurizer} is unknown; known: {sorted(FEATURIZERS)}")
        self.label_names, self.size, self.featurizer = list(label_names), size, featurizer
        for name, value in zip(self.shape_names, sizes[size]):
            setattr(self, name, value)
        self.net = net or self.build_net(*sizes[size])

    def build_net(self, *shape: int) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def create(cls, label_names: Sequence[str], size: str, inputs: Any = (),
               feature_names: Sequence[str] = ()) -> "HashedFamilyStudent":
        return cls(label_names, size)

    @classmethod
    def config_for(cls, label_names: Sequence[str], size: str, feature_names: Sequence[str] = (),
                   featurizer: int = FEATURIZER_VERSION) -> dict:
        return {"size": size, "label_names": list(label_names),
                **dict(zip(cls.shape_names, FAMILIES[cls.family].sizes[size])), "featurizer": featurizer}

    def config(self) -> dict:
        return self.config_for(self.label_names, self.size, featurizer=self.featurizer)

    @classmethod
    def from_config(cls, cfg: dict) -> "HashedFamilyStudent":
        return cls(cfg["label_names"], cfg["size"], featurizer=int(cfg["featurizer"]))

    def features_key(self) -> tuple:
        return (self.family, self.n_buckets, self.featurizer)
