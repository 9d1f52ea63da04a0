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


READERS: dict[str, Callable[[Any, Sequence[str]], Any]] = {"text": texts, "matrix": matrix}


def take(inputs: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a list of texts or of a feature matrix."""
    return inputs[idx] if isinstance(inputs, np.ndarray) else [inputs[i] for i in idx]
