"""What every student family shares: its directory (``student.safetensors`` + ``student.json`` naming
the family and its config), parameter count, size on disk, and the warm-start check on saved configs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..storage import files

WEIGHTS = "student.safetensors"
CONFIG = "student.json"
DEFAULT_FAMILY = "hashed_ngram_mlp"  # a student.json without "family" was written by the n-gram student


class SavedStudent:
    """A family adds ``create``, ``config_for``, ``config``, ``from_config``, ``prepare`` (a tuple of
    arrays), ``forward_rows`` and ``logits``."""

    family: str
    net: Any
    warm_start_keys: tuple[str, ...] = ("label_names", "size")  # saved config values a warm start must match
    saved_defaults: Mapping[str, Any] = {}  # values of keys a student saved by an older release lacks

    @classmethod
    def create(cls, label_names: Sequence[str], size: str, inputs: Any, feature_names: Sequence[str]) -> "SavedStudent":
        raise NotImplementedError

    @classmethod
    def config_for(cls, label_names: Sequence[str], size: str, feature_names: Sequence[str]) -> dict:
        """The config a fresh student of this family would save (no model is built)."""
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: dict) -> "SavedStudent":
        raise NotImplementedError

    @classmethod
    def warm_startable(cls, saved: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
        """Whether a student saved with config ``saved`` can seed a fresh one with config ``fresh``:
        same family, and the same values of ``warm_start_keys``."""
        if saved.get("family", DEFAULT_FAMILY) != cls.family:
            return False
        saved = {**cls.saved_defaults, **saved}
        return all(saved.get(k) == fresh.get(k) for k in cls.warm_start_keys)

    def features_key(self) -> tuple:
        """What ``prepare``'s output depends on besides the rows: students with equal keys share the
        features of one window (featurised once per night, not once per student)."""
        return (self.family,)

    def optimizer(self, learning_rate: float, sparse: bool, fused: bool = True) -> Any:
        """The training optimiser: AdamW over every weight, its step fused into one kernel per tensor
        unless ``fused`` is False (a family with sparse gradients may split it)."""
        return adamw(self.net.parameters(), learning_rate, fused)

    @staticmethod
    def join_prepared(parts: Sequence[tuple]) -> tuple:
        """The prepared features of several parts (``prepare`` returns a tuple of arrays, one row per
        row) as those of their rows back to back."""
        if len(parts) == 1:
            return parts[0]
        import numpy as np

        return tuple(np.concatenate(arrays) for arrays in zip(*parts))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def row_lengths(self, prepared: tuple) -> Any:
        """Tokens of each prepared row, for a family whose cost grows with a batch's longest row (training
        batches then group rows of similar length); None for a family of fixed-size rows."""
        return None

    def row_groups(self, prepared: tuple) -> Any:
        """A group code per prepared row for a family trained on whole groups (a ranking student: a
        query's candidates in one batch); None otherwise."""
        return None

    def empty_inputs(self, inputs: object) -> int:
        """Rows whose input the family reduces to nothing (none for a family without that notion)."""
        return 0

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        with files.atomic_path(directory / WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, tmp)
        files.write_json(directory / CONFIG, {"family": self.family, **self.config()})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SavedStudent":
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / WEIGHTS).is_file() or not (directory / CONFIG).is_file():
            raise FileNotFoundError(
                f"{directory} is not a student directory (needs {WEIGHTS} and {CONFIG})"
            )
        student = cls.from_config(read_config(directory))
        try:
            student.net.load_state_dict(load_file(directory / WEIGHTS))
        except Exception as exc:  # safetensors and torch raise several types for a damaged file
            raise files.IntegrityError(f"student weights {directory / WEIGHTS} could not be loaded "
                                       f"({type(exc).__name__}: {exc}); retrain or restore this student") from None
        student.net.eval()
        return student

    @staticmethod
    def bytes_on_disk(directory: str | Path) -> int:
        return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


def read_config(directory: str | Path) -> dict:
    """The saved ``student.json`` of a student directory."""
    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        raise FileNotFoundError(f"{directory} is not a student directory (needs {CONFIG} and its weights)")
    cfg = files.read_json(directory / CONFIG, "student config", "retrain or restore this student")
    if not isinstance(cfg, dict):
        raise files.IntegrityError(f"student config {directory / CONFIG} is not a JSON object; retrain or restore "
                                   "this student")
    return cfg


def adamw(params: Any, learning_rate: float, fused: bool = True) -> Any:
    """AdamW with the students' weight decay; ``fused``: torch's single-kernel step (CPU and CUDA)."""
    import torch

    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=1e-4, fused=fused or None)
