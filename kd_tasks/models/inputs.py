"""How a table's columns become a model's inputs: the readers a family names in the table."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def texts(table: Any, columns: Sequence[str]) -> list[str]:
    """One text column as a list of strings (NULL -> "")."""
    if len(columns) != 1:
        raise ValueError(f"a text model reads exactly one column, got {list(columns)}")
    return [str(t) if t is not None else "" for t in table.column(columns[0]).to_pylist()]


def matrix(table: Any, columns: Sequence[str]) -> np.ndarray:
    """Feature columns as a float32 matrix (NULL -> 0)."""
    if not columns:
        raise ValueError("a tabular model needs at least one feature column")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"feature columns {missing} are not in the table (columns: {table.column_names})")
    cols = [np.nan_to_num(np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=np.float32))
            for c in columns]
    return np.stack(cols, axis=1) if len(table) else np.zeros((0, len(columns)), np.float32)


def pairs(table: Any, columns: Sequence[str]) -> list[tuple[str, str]]:
    """Two text columns (a query and a candidate's text) as a list of (query, text) pairs (NULL -> "")."""
    if len(columns) != 2:
        raise ValueError(f"a pair model reads exactly two columns (query, candidate text), got {list(columns)}")
    first, second = (table.column(c).to_pylist() for c in columns)
    return [("" if a is None else str(a), "" if b is None else str(b)) for a, b in zip(first, second)]


READERS: dict[str, Callable[[Any, Sequence[str]], Any]] = {"text": texts, "matrix": matrix, "pairs": pairs}


def take(inputs: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a list of texts or of a feature matrix."""
    return inputs[idx] if isinstance(inputs, np.ndarray) else [inputs[i] for i in idx]


def query_codes(rows: Sequence[tuple[str, str]]) -> np.ndarray:
    """A 64-bit code per (query, text) row from its query (a stable hash: rows of one query share it,
    across shards and nights): how a ranking student's batches and loss terms know a query's rows."""
    import hashlib

    queries = np.asarray([q for q, _ in rows], dtype=object)
    if not len(queries):
        return np.zeros(0, np.int64)
    unique, inverse = np.unique(queries.astype(str), return_inverse=True)
    codes = np.fromiter((int.from_bytes(hashlib.blake2b(q.encode(), digest_size=8).digest(), "little", signed=True)
                         for q in unique), np.int64, len(unique))
    return codes[inverse.reshape(-1)]
