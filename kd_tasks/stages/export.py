"""Export the production student for serving, and prove the export predicts what the registry copy does.

Format: ``torch.export`` (an ExportedProgram saved as ``student.pt2``) of the student network with
dynamic batch and n-gram dimensions, next to ``export.json`` (label names, hash buckets and the
featurizer spec). Why not ONNX: it would add onnx/onnxruntime to the serving and build dependencies
for a network of three standard layers; an ExportedProgram loads with plain ``torch.export.load`` (or
compiles ahead of time with AOTInductor for a C++ server) and TorchScript is in maintenance mode.
The featurizer (hashing of words and n-grams) stays Python: ``kd_tasks.models.hashed_ngram.featurize``
is the reference, and ``export.json`` pins its parameters.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import UseCase
from ..holdout import is_holdout
from ..models.hashed_ngram import FEATURIZERS, HashedNgramStudent, batch_inputs
from ..storage import files, lake, registry

log = logging.getLogger(__name__)


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

    if use_case.student_family != HashedNgramStudent.family:
        raise ValueError(f"export supports {HashedNgramStudent.family} students; {use_case.name} serves "
                         f"{use_case.student_family} models from the registry directory as they are")
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
