"""Export the production student for serving, and prove the export predicts what the registry copy does.

Format: ``torch.export`` (an ExportedProgram saved as ``student.pt2``) of the student network with
dynamic batch and n-gram dimensions, next to ``export.json`` (label names, hash buckets and the
featurizer spec). Why not ONNX: it would add onnx/onnxruntime to the serving and build dependencies
for a network of three standard layers; an ExportedProgram loads with plain ``torch.export.load`` (or
compiles ahead of time with AOTInductor for a C++ server) and TorchScript is in maintenance mode.
The featurizer (hashing of words and n-grams) stays Python: ``kd_tasks.models.hashed_ngram.featurize``
is the reference, and ``export.json`` pins its parameters.

A two-tower student exports its query tower (``query_tower.pt2``: bucket ids and offsets in, unit
query vectors out) and the vectors of the items it ranks (``item_vectors.npy``, float32, one row per
id in ``items.json``), computed once from the product tower: a service embeds the query and scores
``scale * q . v + bias`` (both in ``export.json``) against the candidates' rows, or searches the
vectors for its nearest items. The items are the use case's ``item_id_column`` values in the
model's data window, or the catalogue passed in.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import UseCase
from ..holdout import is_holdout
from ..models import FAMILIES, family
from ..models.hashed_ngram import FEATURIZERS, HashedNgramStudent, batch_inputs
from ..storage import files, lake, registry

log = logging.getLogger(__name__)


def exportable_families() -> list[str]:
    return sorted(name for name, f in FAMILIES.items() if f.exportable)


class ExportMismatchError(RuntimeError):
    """The exported program does not reproduce the registry model's predictions."""


def held_out_texts(use_case: UseCase, days: list[str], home: Path | None = None) -> list[str]:
    """Titles of the held-out rows in the extract partitions of ``days`` (the model's data window)."""
    texts = []
    for day in days:
        if lake.extract_dir(use_case.name, day, home).exists():
            t = lake.read_extract(use_case.name, day, list(dict.fromkeys([use_case.holdout_column,
                                                                          use_case.text_column])), home)
            keys, column = t.column(use_case.holdout_column).to_pylist(), t.column(use_case.text_column).to_pylist()
            for key, text in zip(keys, column):
                if is_holdout(key, use_case.holdout_percent):
                    texts.append(text)
    return texts


def export_production(use_case: UseCase, version: str | None = None, home: Path | None = None,
                      atol: float = 1e-4) -> dict[str, Any]:
    """Export ``version`` (default: production) to ``registry/<use_case>/exports/<version>/``."""
    import torch
    from torch.export import Dim, export

    if not family(use_case.student_family).exportable:
        raise ValueError(f"export supports {', '.join(exportable_families())} students; {use_case.name} "
                         f"serves {use_case.student_family} models from the registry directory as they are")
    if use_case.student_family == "two_tower":
        return export_two_tower(use_case, version, home, atol)
    if version is None:
        version = registry.alias_version(use_case.name, home)
        if version is None:
            raise ValueError(f"{use_case.name} has no production model yet; run the nightly DAG until one is promoted")
    manifest = registry.version_manifest(use_case.name, version, home)  # verifies the version's files
    student = HashedNgramStudent.load(files.local_copy(registry.version_dir(use_case.name, version, home), "model",
                                                       f"roll back {use_case.name} to a sound version"))
    texts = held_out_texts(use_case, manifest["data_window"], home)
    if not texts:
        raise ValueError(f"no held-out rows in the extract partitions {manifest['data_window']} to smoke-test "
                         f"version {version}; they may have been deleted — re-run {use_case.extract_task_id} for them")

    example = batch_inputs(texts[:2], student.n_buckets, student.featurizer)
    program = export(student.net.eval(), example, dynamic_shapes={
        "ids": {0: Dim("n_ids", min=1, max=1 << 30)}, "offsets": {0: Dim("batch", min=1, max=1 << 24)}})

    out = registry.export_dir(use_case.name, version, home)

    def build(tmp: Path) -> dict[str, Any]:
        torch.export.save(program, tmp / "student.pt2")
        loaded = torch.export.load(tmp / "student.pt2").module()
        with torch.inference_mode():
            exported = np.concatenate([loaded(*batch_inputs(texts[i:i + 256], student.n_buckets, student.featurizer)).numpy()
                                       for i in range(0, len(texts), 256)])
        reference = student.logits(texts)
        diff = float(np.abs(exported - reference).max())
        same = bool((exported.argmax(1) == reference.argmax(1)).all())
        if not same or diff > atol:
            raise ExportMismatchError(
                f"exported {version} differs from the registry copy on {len(texts)} held-out rows "
                f"(max |logit diff| {diff:.2e}, same top-1: {same}); the export was not published"
            )
        info = {"version": version, "format": "torch.export ExportedProgram (student.pt2)",
                "inputs": "ids: int64[n_ids] bucket ids; offsets: int64[batch] start of each row",
                "featurizer": {"name": "kd_tasks.models.hashed_ngram.featurize", "n_buckets": student.n_buckets,
                               "version": student.featurizer, "features": FEATURIZERS[student.featurizer]},
                "label_names": student.label_names, "teacher_version": manifest.get("teacher_version"),
                "smoke_test": {"rows": len(texts), "same_top1": same, "max_abs_logit_diff": diff}}
        files.write_json(tmp / "export.json", info)
        files.write_manifest(tmp)
        return info

    info = files.publish_dir(out, build)
    diff = info["smoke_test"]["max_abs_logit_diff"]
    log.info("exported %s to %s; smoke test on %d held-out rows: same top-1, max |diff| %.2e",
             version, out, len(texts), diff)
    return {"version": version, "path": str(out / "student.pt2"), "rows_checked": len(texts), "max_abs_diff": diff}


def window_items(use_case: UseCase, days: list[str], home: Path | None = None) -> tuple[dict[str, str], list[tuple]]:
    """The items (id -> text) of the extract partitions of ``days`` and their held-out (query, text,
    item id) rows."""
    if not use_case.item_id_column:
        raise ValueError(f"use case {use_case.name} declares no item_id_column: a two-tower export stores one vector "
                         "per item id; declare it")
    query, text = use_case.input_columns
    items: dict[str, str] = {}
    held: list[tuple] = []
    for day in days:
        if not lake.extract_dir(use_case.name, day, home).exists():
            continue
        t = lake.read_extract(use_case.name, day, list(dict.fromkeys(
            [use_case.holdout_column, query, text, use_case.item_id_column])), home)
        keys = t.column(use_case.holdout_column).to_pylist()
        for key, q, x, item in zip(keys, t.column(query).to_pylist(), t.column(text).to_pylist(),
                                   t.column(use_case.item_id_column).to_pylist()):
            items.setdefault(str(item), x or "")
            if is_holdout(key, use_case.holdout_percent):
                held.append((q or "", x or "", str(item)))
    return items, held


def export_two_tower(use_case: UseCase, version: str | None = None, home: Path | None = None, atol: float = 1e-4,
                     catalogue: dict[str, str] | None = None) -> dict[str, Any]:
    """Export a two-tower ``version`` (default: production): its query tower as an ExportedProgram and
    the item vectors of ``catalogue`` (id -> text; default: the items of its data window), smoke-tested
    against the registry model's scores of the held-out pairs of its window."""
    import torch
    from torch import nn
    from torch.export import Dim, export

    from ..models.two_tower import TwoTowerStudent

    if version is None:
        version = registry.alias_version(use_case.name, home)
        if version is None:
            raise ValueError(f"{use_case.name} has no production model yet; run the nightly DAG until one is promoted")
    manifest = registry.version_manifest(use_case.name, version, home)
    student = TwoTowerStudent.load(files.local_copy(registry.version_dir(use_case.name, version, home), "model",
                                                    f"roll back {use_case.name} to a sound version"))
    items, held = window_items(use_case, manifest["data_window"], home)
    if catalogue is not None:
        items = {**{str(k): v for k, v in catalogue.items()}, **items}
    if not held:
        raise ValueError(f"no held-out rows in the extract partitions {manifest['data_window']} to smoke-test "
                         f"version {version}; re-run {use_case.extract_task_id} for them")

    class QueryTower(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
            return self.net.encode_query(ids, offsets)

    tower = QueryTower(student.net.eval())
    example = batch_inputs([q for q, _, _ in held[:2]], student.n_buckets, student.featurizer)
    program = export(tower, example, dynamic_shapes={
        "ids": {0: Dim("n_ids", min=1, max=1 << 30)}, "offsets": {0: Dim("batch", min=1, max=1 << 24)}})
    ids = sorted(items)
    vectors = student.encode_products([items[i] for i in ids]).astype(np.float32)
    scale, bias = float(student.net.scale.detach()), float(student.net.bias.detach())
    out = registry.export_dir(use_case.name, version, home)

    def build(tmp: Path) -> dict[str, Any]:
        torch.export.save(program, tmp / "query_tower.pt2")
        np.save(tmp / "item_vectors.npy", vectors)
        files.write_json(tmp / "items.json", ids)
        loaded = torch.export.load(tmp / "query_tower.pt2").module()
        row = {item: i for i, item in enumerate(ids)}
        queries = [q for q, _, _ in held]
        with torch.inference_mode():
            q = np.concatenate([loaded(*batch_inputs(queries[i:i + 256], student.n_buckets, student.featurizer)).numpy()
                                for i in range(0, len(queries), 256)])
        stored = np.load(tmp / "item_vectors.npy")[[row[item] for _, _, item in held]]
        served = scale * (q * stored).sum(axis=1) + bias
        reference = student.logits([(qq, x) for qq, x, _ in held]).reshape(-1)
        diff = float(np.abs(served - reference).max())
        if diff > atol:
            raise ExportMismatchError(f"exported {version} scores {len(held)} held-out pairs up to {diff:.2e} away from "
                                      "the registry copy; the export was not published")
        info = {"version": version, "family": "two_tower",
                "format": "query tower: torch.export ExportedProgram (query_tower.pt2); item vectors: float32 .npy",
                "inputs": "ids: int64[n_ids] bucket ids of the queries; offsets: int64[batch] start of each query",
                "score": "scale * dot(query_vector, item_vector) + bias", "scale": scale, "bias": bias,
                "items": len(ids), "vector_dim": int(vectors.shape[1]),
                "featurizer": {"name": "kd_tasks.models.hashed_ngram.featurize", "n_buckets": student.n_buckets,
                               "version": student.featurizer, "features": FEATURIZERS[student.featurizer]},
                "teacher_version": manifest.get("teacher_version"),
                "smoke_test": {"rows": len(held), "max_abs_score_diff": diff}}
        files.write_json(tmp / "export.json", info)
        files.write_manifest(tmp)
        return info

    info = files.publish_dir(out, build)
    log.info("exported two-tower %s to %s: query tower and %d item vectors; smoke test on %d held-out pairs, max "
             "|diff| %.2e", version, out, len(ids), len(held), info["smoke_test"]["max_abs_score_diff"])
    return {"version": version, "path": str(out / "query_tower.pt2"), "items": len(ids), "rows_checked": len(held),
            "max_abs_diff": info["smoke_test"]["max_abs_score_diff"]}
