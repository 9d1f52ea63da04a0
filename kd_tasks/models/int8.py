"""int8 labelling of a text teacher on the CPU: the teacher exported to ONNX (torch's ``torch.export``
based exporter) and quantised dynamically by ONNX Runtime (int8 weights per output channel, int8
activations scaled per batch), run by an ONNX Runtime session.

The quantised model is derived from the teacher's content version, so it is built once per teacher and
worker and kept in the worker's local cache (``home.cache_dir()``), under ``int8/<version>/`` with a
manifest naming the teacher version, the ONNX Runtime version, the recipe and the model's SHA-256: a damaged or
foreign cache entry is rebuilt, never run. Builds of two processes race harmlessly: each writes its own
temporary folder, the first rename wins and the other uses the winner's.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..storage.files import sha256_file
from .runtime import INT8_RECIPE

log = logging.getLogger(__name__)
MANIFEST = "kd_int8.json"
OPSET = 18
RECIPE = INT8_RECIPE  # a new one rebuilds the cached model


def _runtime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _valid(directory: Path, version: str) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        return (manifest.get("teacher_version") == version and manifest.get("onnxruntime") == _runtime_version()
                and manifest.get("recipe") == RECIPE and sha256_file(directory / "model.onnx") == manifest.get("sha256"))
    except (OSError, ValueError):
        return False


def _build(model: Any, out: Path) -> None:
    """Export ``model`` (a sequence classifier taking input_ids and attention_mask), check the export
    against the model, and quantise it."""
    _export(model, out / "fp32.onnx")
    _check_export(model, out / "fp32.onnx")
    with _quiet(""):  # ONNX Runtime's quantisation logs every tensor it skips on the root logger
        _quantise(out)


def _export(model: Any, path: Path) -> None:
    import torch

    ids, mask = _example()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
    # the exporter's notes (optional torchvision ops, axis names) are not for task logs
    with _quiet("torch.onnx"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.float().eval(), (), kwargs={"input_ids": ids, "attention_mask": mask},
                                    dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                    "attention_mask": {0: batch, 1: seq}},
                                    dynamo=True, external_data=False, opset_version=OPSET, verbose=False)
    program.save(str(path))


def _example() -> tuple[Any, Any]:
    """The batch the exporter traces; it holds padding, like the batches the teacher labels."""
    import torch

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0
    return ids, mask


def _check_export(model: Any, path: Path) -> None:
    """The exported graph must give the torch model's logits on a batch of another shape, with padding:
    an export that traced a shape, a branch or an input wrongly never labels anything."""
    import onnxruntime as ort
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 3:] = 0, 0
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=mask).logits.numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    if not np.allclose(got, want, rtol=1e-3, atol=1e-3 * (1 + float(np.abs(want).max()))):
        raise RuntimeError(f"the ONNX export does not reproduce the teacher's logits (largest difference "
                           f"{float(np.abs(got - want).max()):.3g}); label with label_dtype=fp32 or bf16")


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from ``logger`` (``""``: the root logger) while the block runs."""
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


def _quantise(out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # shape inference and graph fusions first, as ONNX Runtime's quantisation guide asks
    quant_pre_process(str(out / "fp32.onnx"), str(out / "prepared.onnx"), skip_symbolic_shape=True)
    # MatMul only: the embedding tables stay fp32 (quantising them too cost top-1 agreement, 0.9959 ->
    # 0.9948 on a teacher tuned on 1,512 titles, and saved no time)
    quantize_dynamic(out / "prepared.onnx", out / "model.onnx", weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True, op_types_to_quantize=["MatMul"])
    for name in ("fp32.onnx", "prepared.onnx"):
        (out / name).unlink()


def quantized_model(model: Any, version: str, cache: Path) -> Path:
    """The int8 ONNX model of the teacher ``version`` (whose torch module is ``model``) in ``cache``,
    built on first use."""
    final = cache / "int8" / version
    if _valid(final, version):
        return final / "model.onnx"
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        log.warning("int8 model cache %s is damaged or outdated (another ONNX Runtime or recipe): rebuilding it", final)
        shutil.rmtree(final, ignore_errors=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    try:
        _build(model, tmp)
        (tmp / MANIFEST).write_text(json.dumps({"teacher_version": version, "onnxruntime": _runtime_version(),
                                                "recipe": RECIPE, "sha256": sha256_file(tmp / "model.onnx")},
                                               indent=2))
        try:
            os.rename(tmp, final)
        except OSError:  # another process published it first
            if not _valid(final, version):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("teacher %s quantised to int8 (ONNX Runtime %s) in %.1fs: %s", version, _runtime_version(),
             time.perf_counter() - started, final)
    return final / "model.onnx"


class Int8Forward:
    """``forward(input_ids, attention_mask) -> logits`` through an ONNX Runtime session on ``threads``."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.runtime = f"onnxruntime {_runtime_version()}"

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
