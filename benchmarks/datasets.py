"""Benchmark data: the real catalogues and reviews, and the fixed, seeded split protocol.

Protocol: every row goes to ``test`` (20%), ``val`` (10%) or the training ``pool`` (70%) by a seeded
hash of its id, so the split does not depend on file order. In the ``scarce`` regime only 5% of the
pool (again by a seeded hash) keeps its gold label. Nothing trains or tunes on ``test``.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from kd_tasks.loaders.catalogue import read_fashion_styles

TEST_SHARE, VAL_SHARE, SCARCE_GOLD_SHARE = 0.20, 0.10, 0.05


@dataclass
class Corpus:
    dataset: str
    label: str
    ids: list[str]
    texts: list[str]
    labels: list[str]
    notes: list[str] = field(default_factory=list)


def _unit(seed: int, salt: str, row_id: str) -> float:
    return int(hashlib.sha1(f"{seed}:{salt}:{row_id}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def split_of(row_id: str, seed: int) -> str:
    u = _unit(seed, "split", row_id)
    return "test" if u < TEST_SHARE else "val" if u < TEST_SHARE + VAL_SHARE else "pool"


def keeps_gold(row_id: str, regime: str, seed: int) -> bool:
    """Whether a pool row keeps its gold label in ``regime`` (full: all; scarce: 5%)."""
    if regime == "full":
        return True
    if regime == "scarce":
        return _unit(seed, "gold", row_id) < SCARCE_GOLD_SHARE
    raise ValueError(f"unknown regime {regime!r}; use 'full' or 'scarce'")


def load_fashion(folder: Path, label: str, limit: int | None = None) -> Corpus:
    records = read_fashion_styles(folder)[:limit]
    kept = [r for r in records if (r.get("productDisplayName") or "").strip() and (r.get(label) or "").strip()]
    notes = []
    if len(kept) < len(records):
        notes.append(f"skipped {len(records) - len(kept)} rows without a title or a {label}")
    return Corpus("fashion_product_styles", label, [str(r["id"]) for r in kept],
                  [r["productDisplayName"].strip() for r in kept], [r[label].strip() for r in kept], notes)


def load_reviews(folder: Path, limit: int | None = None) -> Corpus:
    """Review title + text -> Recommended IND ("0"/"1"); rows without review text are skipped."""
    path = folder / "womens_clothing_ecommerce_reviews.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; set KD_DATASETS to the shared datasets folder")
    with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    kept = [r for r in rows if (r.get("Review Text") or "").strip()]
    texts = [". ".join(p for p in ((r.get("Title") or "").strip(), r["Review Text"].strip()) if p) for r in kept]
    return Corpus("womens_clothing_reviews", "Recommended IND", [str(r[""]) for r in kept], texts,
                  [r["Recommended IND"].strip() for r in kept],
                  [f"skipped {len(rows) - len(kept)} rows without review text"])


def load(datasets_dir: Path, dataset: str, label: str, limit: int | None = None) -> Corpus:
    if dataset == "fashion_product_styles":
        return load_fashion(datasets_dir / dataset, label, limit)
    if dataset == "womens_clothing_reviews":
        return load_reviews(datasets_dir / dataset, limit)
    raise ValueError(f"unknown benchmark data set {dataset!r}")
