"""Teacher ensembles: a family whose row in ``models.FAMILIES`` names its ``members`` (other teacher
families). Each member is trained on the same gold rows into ``members/<family>/`` (a teacher directory
of its own, with its manifest and version), calibrated on the validation rows by temperature scaling,
and the ensemble's logits are the weighted sum of the members' calibrated log-probabilities, the
weights chosen on the validation rows by the use case's metric (a grid over the simplex, step 0.05 for
two members, 0.1 for more). ``ensemble.json`` records members, versions, temperatures and weights;
the soft labels record every member's version (``member_versions``). Multi-teacher distillation as a
declaration: a new ensemble is one more row in ``FAMILIES``.
"""
from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..metrics import log_softmax

log = logging.getLogger(__name__)
ENSEMBLE = "ensemble.json"
TEMPERATURES = np.geomspace(0.25, 8.0, 31)


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) on rows with a
    known gold class (``gold`` >= 0), searched on a log grid of 0.25..8."""
    rows = np.flatnonzero(gold >= 0)
    if not len(rows):
        return 1.0
    nll = [-log_softmax(logits[rows] / t)[np.arange(len(rows)), gold[rows]].mean() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


def weight_grid(n: int) -> list[tuple[float, ...]]:
    step = 20 if n == 2 else 10
    return [tuple(k / step for k in ks) for ks in itertools.product(range(step + 1), repeat=n) if sum(ks) == step]


def combine(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, parts)).astype(np.float32)


class EnsembleTeacher:
    def __init__(self, path: Path, version: str, label_names: Sequence[str], members: list[dict[str, Any]],
                 teachers: list[Any]):
        self.path, self.version, self.label_names = path, version, list(label_names)
        self.members, self.teachers = members, teachers

    @property
    def device(self) -> str:
        return self.teachers[0].device

    @property
    def runtime(self) -> str:
        return "+".join(t.runtime for t in self.teachers)

    @classmethod
    def load(cls, path: Path, version: str, manifest: dict[str, Any]) -> "EnsembleTeacher":
        from . import teacher_class

        spec = json.loads((path / ENSEMBLE).read_text())  # its bytes were checked against the manifest's version
        teachers = []
        for m in spec["members"]:
            member = path / m["dir"]
            member_manifest = json.loads((member / "kd_manifest.json").read_text())
            teachers.append(teacher_class(m["family"]).load(member, m["version"], member_manifest))
        return cls(path, version, manifest["label_names"], spec["members"], teachers)

    @staticmethod
    def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return train_ensemble(*args, **kwargs)

    def member_versions(self) -> dict[str, str]:
        """Each member family's teacher version (recorded in the soft labels' provenance)."""
        return {m["family"]: m["version"] for m in self.members}

    def prepare(self, device: str = "cpu", dtype: str = "fp32", threads: int | None = None) -> "EnsembleTeacher":
        for t in self.teachers:
            t.prepare(device, dtype, threads)
        return self

    def logits(self, texts: Sequence[str], batch_size: int = 64,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        parts = [log_softmax(t.logits(texts, batch_size=batch_size) / m["temperature"])
                 for m, t in zip(self.members, self.teachers)]
        if progress is not None:
            progress(len(texts))
        return combine(parts, [m["weight"] for m in self.members])

    def num_parameters(self) -> int:
        return sum(t.num_parameters() for t in self.teachers)

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def train_ensemble(inputs: Sequence[Any], gold: Sequence[int], label_names: Sequence[str],
                   feature_names: Sequence[str], out_dir: Path, base_model: str | None, config: Any,
                   validation: Any = None, members: Sequence[str] = (), family_name: str = "") -> dict[str, Any]:
    """Train each member family into ``out_dir/members/<family>``, calibrate and weigh them on
    ``validation``, write ``ensemble.json``; returns the manifest fields."""
    from ..storage.teachers import build_teacher
    from . import teacher_class

    if validation is None or not len(validation.gold):
        raise ValueError(f"the {family_name} ensemble weighs its members on validation rows; none were given "
                         "(validation_share must be > 0 and the use case needs gold rows to spare)")
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, {family_name} declares {list(members)}")
    out_dir = Path(out_dir)
    index = {n: i for i, n in enumerate(label_names)}
    val_gold = np.array([index.get(str(g), -1) if g is not None else -1 for g in validation.gold])
    specs, parts, scores = [], [], {}
    for name in members:
        cls = teacher_class(name)
        (out_dir / "members" / name).mkdir(parents=True)
        manifest = build_teacher(out_dir / "members" / name, lambda tmp, cls=cls: cls.train(
            inputs, gold, label_names, feature_names, tmp, base_model, config, validation))
        teacher = cls.load(out_dir / "members" / name, manifest["version"], manifest)
        z = teacher.logits(validation.inputs)
        t = fit_temperature(z, val_gold)
        parts.append(log_softmax(z / t))
        scores[name] = validation.score(parts[-1])
        specs.append({"family": name, "dir": f"members/{name}", "version": manifest["version"], "temperature": t})
        log.info("ensemble member %s (teacher %s): temperature %.3f, validation %s %.4f", name, manifest["version"],
                 t, validation.metric, scores[name])
    best, best_score = None, float("-inf")
    for w in weight_grid(len(parts)):
        score = validation.score(combine(parts, w))
        if score > best_score + 1e-12:
            best, best_score = w, score
    for spec, w in zip(specs, best):
        spec["weight"] = w
    (out_dir / ENSEMBLE).write_text(json.dumps({"members": specs}, indent=2))
    log.info("ensemble %s: weights %s, validation %s %.4f (members: %s)", family_name,
             {s["family"]: s["weight"] for s in specs}, validation.metric, best_score,
             {k: round(v, 4) for k, v in scores.items()})
    return {"family": family_name, "label_names": list(label_names), "members": specs,
            "validation": {"metric": validation.metric, "rows": len(validation.gold), "best": best_score,
                           "members": scores}}
