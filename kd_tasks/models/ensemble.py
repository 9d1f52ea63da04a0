"""Teacher ensembles: a family whose row in ``models.FAMILIES`` names its ``members`` (other teacher
families). Each member is trained on the same gold rows into ``members/<family>/`` (a teacher directory
of its own, with its manifest and version), calibrated on the validation rows by temperature scaling,
and the ensemble's logits are the weighted sum of the members' calibrated log-probabilities, the
weights chosen on the validation rows by the use case's metric (a grid over the simplex, step 0.05 for
two members, 0.1 for more). ``ensemble.json`` records members, versions, temperatures and weights;
the soft labels record every member's version (``member_versions``). Multi-teacher distillation as a
declaration: a new ensemble is one more row in ``FAMILIES``.

The temperatures and weights are fitted on the validation rows, so the ensemble's own score on them
flatters it. Where the teacher gate compares it with its baselines on those rows, it reads the
ensemble's cross-fitted logits instead (``EnsembleTeacher.validation_logits``): each of ``FOLDS``
folds of the rows (by a hash of the row's group or position) combined with the temperatures and weights
fitted on the other folds, so no row is scored by settings chosen on it.
"""
from __future__ import annotations

import dataclasses
import hashlib
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
FOLDS = 5


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


def gold_index(validation: Any, label_names: Sequence[str]) -> np.ndarray:
    """The validation rows' gold class indices (-1: no gold, or a class the teacher does not know)."""
    index = {n: i for i, n in enumerate(label_names)}
    return np.array([index.get(str(g), -1) if g is not None else -1 for g in validation.gold])


def calibrate_and_weigh(raw: Sequence[np.ndarray], validation: Any,
                        gold: np.ndarray) -> tuple[list[float], tuple[float, ...], float]:
    """Each member's temperature (NLL on the rows), then the weights on the simplex that maximise
    ``validation``'s metric of the combined calibrated log-probabilities: (temperatures, weights, score)."""
    temps = [fit_temperature(z, gold) for z in raw]
    parts = [log_softmax(z / t) for z, t in zip(raw, temps)]
    best, best_score = None, float("-inf")
    for w in weight_grid(len(parts)):
        score = validation.score(combine(parts, w))
        if score > best_score + 1e-12:
            best, best_score = w, score
    if best is None:  # the metric is undefined on these rows (e.g. one class): equal weights
        best = tuple(1.0 / len(parts) for _ in parts)
    return temps, best, best_score


def fold_of(validation: Any, folds: int = FOLDS) -> np.ndarray:
    """Each validation row's fold: a hash of its group (rows of one group stay together) or position."""
    keys = validation.groups if validation.groups is not None else range(len(validation.gold))
    return np.array([int.from_bytes(hashlib.sha1(f"ensemble-fold:{k}".encode()).digest()[:4], "big") % folds
                     for k in keys])


def subset(validation: Any, rows: np.ndarray) -> Any:
    """The validation rows ``rows`` (indices) as a validation set of their own (gold and groups)."""
    return dataclasses.replace(validation, inputs=None, gold=[validation.gold[i] for i in rows],
                               groups=None if validation.groups is None else [validation.groups[i] for i in rows])


def cross_fitted(raw: Sequence[np.ndarray], validation: Any, gold: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """The ensemble's logits on the validation rows, each fold combined with the temperatures and
    weights fitted on the other folds: an honest score on rows that also chose the settings."""
    fold = fold_of(validation, folds)
    out = np.zeros_like(np.asarray(raw[0], dtype=np.float32))
    for k in range(folds):
        held, fit = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        if not len(held):
            continue
        if not len(fit):  # a single fold: nothing to fit on but the rows themselves
            fit = held
        temps, weights, _ = calibrate_and_weigh([z[fit] for z in raw], subset(validation, fit), gold[fit])
        out[held] = combine([log_softmax(z[held] / t) for z, t in zip(raw, temps)], weights)
    return out


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

    def validation_logits(self, validation: Any) -> np.ndarray:
        """The ensemble's cross-fitted logits on the rows its temperatures and weights were fitted on
        (``cross_fitted``): what the teacher gate compares with the baselines."""
        raw = [t.logits(validation.inputs) for t in self.teachers]
        return cross_fitted(raw, validation, gold_index(validation, self.label_names))

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
    val_gold = gold_index(validation, label_names)
    specs, raw, scores = [], [], {}
    for name in members:
        cls = teacher_class(name)
        (out_dir / "members" / name).mkdir(parents=True)
        manifest = build_teacher(out_dir / "members" / name, lambda tmp, cls=cls: cls.train(
            inputs, gold, label_names, feature_names, tmp, base_model, config, validation))
        teacher = cls.load(out_dir / "members" / name, manifest["version"], manifest)
        raw.append(teacher.logits(validation.inputs))
        scores[name] = validation.score(raw[-1])
        specs.append({"family": name, "dir": f"members/{name}", "version": manifest["version"]})
    temps, weights, best_score = calibrate_and_weigh(raw, validation, val_gold)
    honest = validation.score(cross_fitted(raw, validation, val_gold))
    for spec, t, w in zip(specs, temps, weights):
        spec["temperature"], spec["weight"] = t, w
        log.info("ensemble member %s (teacher %s): temperature %.3f, weight %.2f, validation %s %.4f", spec["family"],
                 spec["version"], t, w, validation.metric, scores[spec["family"]])
    (out_dir / ENSEMBLE).write_text(json.dumps({"members": specs}, indent=2))
    log.info("ensemble %s: validation %s %.4f with the weights fitted on those rows, %.4f cross-fitted over %d "
             "folds (members: %s)", family_name, validation.metric, best_score, honest, FOLDS,
             {k: round(v, 4) for k, v in scores.items()})
    return {"family": family_name, "label_names": list(label_names), "members": specs,
            "validation": {"metric": validation.metric, "rows": len(validation.gold), "best": best_score,
                           "cross_fitted": honest, "folds": FOLDS, "members": scores}}
