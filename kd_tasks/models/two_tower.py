"""The two-tower student (family ``two_tower``): a query tower and a product tower over one table of
hashed word and character n-grams (the n-gram student's featuriser), each an MLP to a unit vector; a
pair's score is ``scale * q . p + bias``.

Product vectors do not depend on the query, so a service computes them offline for the whole
catalogue (``encode_products``; the export stores them with the query tower) and a search costs one
query-tower pass plus a dot product per candidate. Distilled from a cross-encoder's pair scores with
the ranking loss terms, InfoNCE over the batch's products included (``kd_tasks.losses``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..losses import RankingScores
from .hashed_ngram import HashedFamilyStudent, batch_inputs, featurize_all, gather_rows, join_ragged
from .inputs import query_codes

FAMILY = "two_tower"


def _tower(dim: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


class TwoTowerNet(nn.Module):
    def __init__(self, n_buckets: int, dim: int, hidden: int, out: int):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_buckets, dim, mode="mean")
        self.query = _tower(dim, hidden, out)
        self.product = _tower(dim, hidden, out)
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def encode_query(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.query(self.embedding(ids, offsets)), dim=-1)

    def encode_product(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.product(self.embedding(ids, offsets)), dim=-1)

    def score(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.scale * (q * p).sum(-1) + self.bias


class TwoTowerStudent(HashedFamilyStudent):
    family = FAMILY
    shape_names = ("n_buckets", "dim", "hidden", "vector_dim")

    def build_net(self, n_buckets: int, dim: int, hidden: int, vector_dim: int) -> TwoTowerNet:
        return TwoTowerNet(n_buckets, dim, hidden, vector_dim)

    def prepare(self, rows: Sequence[tuple[str, str]]) -> tuple[np.ndarray, ...]:
        """Per row: the query's bucket ids, the product text's, and the query code (``query_codes``);
        each distinct query is hashed once."""
        queries = [q for q, _ in rows]
        unique, inverse = np.unique(np.asarray(queries, dtype=str), return_inverse=True) if rows else ([], [])
        u_ids, u_offsets = featurize_all(list(unique), self.n_buckets, self.featurizer)
        q_ids, q_starts = gather_rows(u_ids, u_offsets, np.asarray(inverse, np.int64).reshape(-1))
        q_offsets = np.append(q_starts.numpy(), len(q_ids)).astype(np.int64)
        p_ids, p_offsets = featurize_all([t for _, t in rows], self.n_buckets, self.featurizer)
        return q_ids.numpy().astype(np.int32), q_offsets, p_ids, p_offsets, query_codes(rows)

    @staticmethod
    def join_prepared(parts: Sequence[tuple]) -> tuple:
        if len(parts) == 1:
            return parts[0]
        q = join_ragged([(p[0], p[1]) for p in parts])
        t = join_ragged([(p[2], p[3]) for p in parts])
        return (*q, *t, np.concatenate([p[4] for p in parts]))

    def row_groups(self, prepared: tuple) -> np.ndarray:
        return prepared[4]

    def forward_rows(self, prepared: tuple, idx: torch.Tensor) -> RankingScores:
        q_ids, q_offsets, p_ids, p_offsets, groups = prepared
        rows = idx.numpy()
        q = self.net.encode_query(*gather_rows(q_ids, q_offsets, rows))
        p = self.net.encode_product(*gather_rows(p_ids, p_offsets, rows))
        return RankingScores(self.net.score(q, p), torch.from_numpy(groups[rows]), q * self.net.scale, p)

    def _encode(self, texts: Sequence[str], tower: str, batch_size: int = 1024) -> np.ndarray:
        encode = self.net.encode_query if tower == "query" else self.net.encode_product
        out = []
        self.net.eval()
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                out.append(encode(*batch_inputs(texts[i:i + batch_size], self.n_buckets, self.featurizer)).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.vector_dim), np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit query vectors (n, vector_dim)."""
        return self._encode(texts, "query")

    def encode_products(self, texts: Sequence[str]) -> np.ndarray:
        """Unit product vectors (n, vector_dim): computed offline for the catalogue."""
        return self._encode(texts, "product")

    def score_vectors(self, query_vectors: np.ndarray, product_vectors: np.ndarray) -> np.ndarray:
        """Scores of every query against every product from their vectors: ``scale * Q P^T + bias``."""
        return float(self.net.scale.detach()) * (query_vectors @ product_vectors.T) + float(self.net.bias.detach())

    def logits(self, rows: Sequence[tuple[str, str]], batch_size: int = 512) -> np.ndarray:
        """Scores (n, 1) of (query, product text) rows, both towers run (a service with precomputed
        product vectors runs only the query tower: ``encode_queries`` and ``score_vectors``)."""
        self.net.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(rows), batch_size):
                chunk = rows[i:i + batch_size]
                q = self.net.encode_query(*batch_inputs([a for a, _ in chunk], self.n_buckets, self.featurizer))
                p = self.net.encode_product(*batch_inputs([b for _, b in chunk], self.n_buckets, self.featurizer))
                out.append(self.net.score(q, p).numpy().reshape(-1, 1))
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)
