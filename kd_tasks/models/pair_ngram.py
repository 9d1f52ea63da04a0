"""The pair student (family ``pair_ngram``): a re-ranker that reads query and product text together,
cheaply. Hashed word and character n-grams of the query, of the title and of what they share, pooled
by one EmbeddingBag table, with six overlap figures (shared words and character trigrams, lengths,
exact containment), into an MLP that outputs the pair's score. It scores candidates a search has
already retrieved (a feature vector per candidate, no transformer pass), distilled from the
cross-encoder's scores with the ranking loss terms.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..losses import RankingScores
from .hashed_ngram import FEATURIZER_VERSION, HashedFamilyStudent, featurize_words, gather_rows, join_ragged, words
from .inputs import query_codes

FAMILY = "pair_ngram"
DENSE = ("shared_word_share", "shared_trigram_share", "log_query_words", "log_title_words", "all_words_in_title",
         "query_in_title")


def _trigrams(ws: Sequence[str]) -> set[str]:
    return {f"<{w}>"[i:i + 3] for w in ws for i in range(len(w))}


def _side(text: str, n_buckets: int, featurizer: int) -> tuple[list[int], list[str]]:
    ws = words(text, featurizer)
    return featurize_words(ws, n_buckets, featurizer), ws


def pair_features(query: tuple[list[int], list[str]], title: tuple[list[int], list[str]]) -> tuple[list[int], list[float]]:
    """From each side's bucket ids and words (``_side``): the ids they share and the overlap figures
    (``DENSE``)."""
    (q_ids, qw), (t_ids, tw) = query, title
    shared = sorted(set(q_ids) & set(t_ids)) or [0]  # bucket 0 also stands for "nothing shared"
    qs, ts = set(qw), set(tw)
    q3, t3 = _trigrams(qw), _trigrams(tw)
    dense = [len(qs & ts) / max(len(qs), 1), len(q3 & t3) / max(len(q3), 1), float(np.log1p(len(qw))),
             float(np.log1p(len(tw))), float(bool(qs) and qs <= ts),
             float(bool(qw) and " ".join(qw) in " ".join(tw))]
    return shared, dense


class PairNet(nn.Module):
    def __init__(self, n_buckets: int, dim: int, hidden: int):
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_buckets, dim, mode="mean")
        width = 4 * dim + len(DENSE)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, q: tuple, t: tuple, shared: tuple, dense: torch.Tensor) -> torch.Tensor:
        hq, ht, hs = self.embedding(*q), self.embedding(*t), self.embedding(*shared)
        return self.mlp(torch.cat([hq, ht, hq * ht, hs, dense], dim=-1)).reshape(-1)


def _ragged(lists: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    return np.fromiter((b for x in lists for b in x), np.int32, int(offsets[-1])), offsets


class PairStudent(HashedFamilyStudent):
    family = FAMILY
    shape_names = ("n_buckets", "dim", "hidden")

    def build_net(self, n_buckets: int, dim: int, hidden: int) -> PairNet:
        return PairNet(n_buckets, dim, hidden)

    @classmethod
    def config_for(cls, label_names: Sequence[str], size: str, feature_names: Sequence[str] = (),
                   featurizer: int = FEATURIZER_VERSION) -> dict:
        return {**super().config_for(label_names, size, feature_names, featurizer), "dense": list(DENSE)}

    def prepare(self, rows: Sequence[tuple[str, str]]) -> tuple[np.ndarray, ...]:
        queries = {q: _side(q, self.n_buckets, self.featurizer) for q in dict.fromkeys(q for q, _ in rows)}
        titles = [_side(t, self.n_buckets, self.featurizer) for _, t in rows]  # each query featurised once
        feats = [pair_features(queries[q], title) for (q, _), title in zip(rows, titles)]
        dense = np.asarray([f[1] for f in feats], np.float32).reshape(len(rows), len(DENSE))
        return (*_ragged([queries[q][0] for q, _ in rows]), *_ragged([t[0] for t in titles]),
                *_ragged([f[0] for f in feats]), dense, query_codes(rows))

    @staticmethod
    def join_prepared(parts: Sequence[tuple]) -> tuple:
        if len(parts) == 1:
            return parts[0]
        ragged = [join_ragged([(p[k], p[k + 1]) for p in parts]) for k in (0, 2, 4)]
        return (*ragged[0], *ragged[1], *ragged[2], np.concatenate([p[6] for p in parts]),
                np.concatenate([p[7] for p in parts]))

    def row_groups(self, prepared: tuple) -> np.ndarray:
        return prepared[7]

    def _forward(self, prepared: tuple, rows: np.ndarray) -> torch.Tensor:
        q_ids, q_off, t_ids, t_off, s_ids, s_off, dense, _ = prepared
        return self.net(gather_rows(q_ids, q_off, rows), gather_rows(t_ids, t_off, rows),
                        gather_rows(s_ids, s_off, rows), torch.from_numpy(dense[rows]))

    def forward_rows(self, prepared: tuple, idx: torch.Tensor) -> RankingScores:
        rows = idx.numpy()
        return RankingScores(self._forward(prepared, rows), torch.from_numpy(prepared[7][rows]))

    def logits(self, rows: Sequence[tuple[str, str]], batch_size: int = 512) -> np.ndarray:
        """Scores (n, 1) of (query, product text) rows."""
        self.net.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(rows), batch_size):
                chunk = list(rows[i:i + batch_size])
                out.append(self._forward(self.prepare(chunk), np.arange(len(chunk))).numpy().reshape(-1, 1))
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)
