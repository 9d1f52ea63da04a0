"""The TF-IDF + logistic regression teacher (family ``tfidf_lr``): word 1-2-grams and character
3-5-grams, C chosen on the validation rows; saved as ``tfidf_lr.pkl`` in a teacher directory whose
manifest hash is checked before the file is unpickled. Cheap and strong on closed vocabularies: a
member of teacher ensembles (``models.ensemble``) more than a teacher alone.
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .baselines import fit_tfidf_lr

FAMILY = "tfidf_lr"
WEIGHTS = "tfidf_lr.pkl"


class TfidfTeacher:
    device, runtime = "cpu", "sklearn"

    def __init__(self, path: Path, version: str, label_names: Sequence[str], fitted: Any):
        self.path, self.version, self.label_names, self.fitted = path, version, list(label_names), fitted

    @classmethod
    def load(cls, path: Path, version: str, manifest: dict[str, Any]) -> "TfidfTeacher":
        with open(path / WEIGHTS, "rb") as fh:  # its bytes were checked against the manifest's version
            return cls(path, version, manifest["label_names"], pickle.load(fh))

    @staticmethod
    def train(inputs: Sequence[str], gold: Sequence[int], label_names: Sequence[str], feature_names: Sequence[str],
              out_dir: Path, base_model: str | None, config: Any, validation: Any = None) -> dict[str, Any]:
        started = time.perf_counter()
        fitted, info = fit_tfidf_lr(inputs, np.asarray(gold), len(label_names), False, validation)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(out_dir) / WEIGHTS, "wb") as fh:
            pickle.dump(fitted, fh)
        return {"family": FAMILY, "label_names": list(label_names), "train_rows": len(inputs), **info,
                "train_seconds": round(time.perf_counter() - started, 1)}

    def prepare(self, device: str = "cpu", dtype: str = "fp32", threads: int | None = None) -> "TfidfTeacher":
        return self  # scikit-learn on the CPU whatever the labelling asks of the other members

    def logits(self, texts: Sequence[str], batch_size: int = 4096,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), len(self.label_names)), np.float32)
        for start in range(0, len(texts), batch_size):
            out[start:start + batch_size] = self.fitted.scores(texts[start:start + batch_size])
            if progress is not None:
                progress(min(start + batch_size, len(texts)))
        return out

    def num_parameters(self) -> int:
        return int(self.fitted.model.coef_.size + self.fitted.model.intercept_.size)

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
