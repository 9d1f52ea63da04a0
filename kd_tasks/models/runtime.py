"""Where and how a teacher runs on the worker it landed on: the device (CUDA when present, else the
CPU), the dtype, the batch size, the CPU thread count, and progress lines for long labelling.

torch is imported only inside the functions that need it, so choosing a device can be tested (and the
DAG files parsed) without touching a GPU.
"""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Callable

from ..names import ConfigError

log = logging.getLogger(__name__)

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # torch dtypes
LABEL_DTYPES = sorted([*DTYPES, "int8"])  # int8: the text teacher quantised by ONNX Runtime (models.int8), CPU only
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
DEFAULT_BATCH = {"cpu": 64, "cuda": 512}  # rows per forward pass; CUDA halves it on out-of-memory


class DeviceUnavailable(RuntimeError):
    """The requested device is not on this worker (a task routed to the wrong queue): a retry may land
    on a worker that has it."""


def select_device(requested: str = "auto", cuda_available: bool | None = None, cuda_count: int | None = None) -> str:
    """The torch device string for ``requested``: ``auto`` is ``cuda`` when the worker has a GPU, else
    ``cpu``; ``cuda`` / ``cuda:N`` must exist here. ``cuda_available`` / ``cuda_count`` default to what
    torch sees."""
    if not isinstance(requested, str) or not re.fullmatch(DEVICE_PATTERN, requested):
        raise ConfigError(f"label_device {requested!r} is not valid; use auto, cpu, cuda or cuda:N")
    if requested == "cpu":
        return "cpu"
    if cuda_available is None or cuda_count is None:
        import torch

        cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
        cuda_count = (torch.cuda.device_count() if cuda_available else 0) if cuda_count is None else cuda_count
    if requested == "auto":
        return "cuda" if cuda_available and cuda_count > 0 else "cpu"
    index = int(requested.split(":")[1]) if ":" in requested else 0
    if not cuda_available or index >= cuda_count:
        raise DeviceUnavailable(f"label_device={requested} but this worker has {cuda_count if cuda_available else 0} "
                                "CUDA device(s); route the task to a GPU worker (queue 'teacher') or use auto")
    return requested


def check_dtype(dtype: str, device: str) -> str:
    """``dtype`` if the device can run it: fp16 needs CUDA (CPU kernels for half are slow or missing),
    int8 runs on the CPU."""
    if dtype not in LABEL_DTYPES:
        raise ConfigError(f"label_dtype {dtype!r} is unknown; use one of {LABEL_DTYPES}")
    if dtype == "fp16" and not device.startswith("cuda"):
        raise ConfigError("label_dtype=fp16 needs a CUDA device; on the CPU use fp32, bf16 or int8")
    if dtype == "int8" and device != "cpu":
        raise ConfigError(f"label_dtype=int8 runs on the CPU (ONNX Runtime), not {device}; set label_device "
                          "to cpu or auto, or use bf16 / fp16 on a GPU")
    return dtype


def label_device(requested: str, dtype: str) -> str:
    """The device a labelling runs on: ``select_device``, except that ``auto`` means the CPU for int8."""
    return select_device("cpu" if dtype == "int8" and requested == "auto" else requested)


def batch_size(requested: int, device: str) -> int:
    """``requested``, or the device's default when 0."""
    return requested if requested > 0 else DEFAULT_BATCH["cuda" if device.startswith("cuda") else "cpu"]


def cpu_threads(requested: int = 0) -> int:
    """Set and return torch's intra-op thread count: ``requested``, or the cores this process may use."""
    import torch

    n = requested if requested > 0 else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def device_name(device: str) -> str:
    """A human name of the device, for provenance: the GPU's model, or the CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def torch_dtype(dtype: str) -> Any:
    import torch

    return getattr(torch, DTYPES[dtype])


def labelling(version: str, dtype: str) -> str:
    """The labelling identity: the teacher version, plus the dtype where it changes the numbers."""
    return version if dtype == "fp32" else f"{version}-{dtype}"


# How the int8 teacher is made (``models.int8``); a new recipe rebuilds it and relabels its shards.
# reduce_range: 7-bit weights. On x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of
# products in 16 bits, which can saturate with full-range weights: on such a CPU (AMD EPYC, AVX2 only)
# a tiny test teacher's int8 logits moved by 11% of their range with 8-bit weights, by less than 10%
# with 7-bit ones. One recipe for every worker keeps the labels of one labelling alike wherever they ran.
INT8_RECIPE = "onnx-export-opset18 quant_pre_process quantize_dynamic QInt8 per-channel reduce_range MatMul"


def recipe(dtype: str) -> str | None:
    """What, beyond the dtype, makes a labelling's numbers (the int8 recipe); None for the others."""
    return INT8_RECIPE if dtype == "int8" else None


class Progress:
    """Progress lines for a long loop: rows done, rows/s and ETA, at most every ``every_s`` seconds."""

    def __init__(self, what: str, total: int, every_s: float = 10.0, clock: Callable[[], float] = time.perf_counter):
        self.what, self.total, self.every_s, self.clock = what, total, every_s, clock
        self.started = self.last = clock()

    def __call__(self, done: int) -> None:
        now = self.clock()
        if now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        log.info("%s: %d/%d rows (%.0f rows/s, ETA %.0f s)", self.what, done, self.total, rate,
                 (self.total - done) / max(rate, 1e-9))


def on_each_batch(n: int, size: int, run: Callable[[int, int], None], device: str) -> int:
    """Call ``run(start, stop)`` over ``n`` rows in batches of ``size``; on CUDA an out-of-memory batch
    is retried at half the size (down to 1). Returns the batch size that fitted."""
    start = 0
    while start < n:
        stop = min(start + size, n)
        try:
            run(start, stop)
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not device.startswith("cuda") or "out of memory" not in str(exc).lower() or size == 1:
                raise
            import torch

            torch.cuda.empty_cache()
            size = max(1, size // 2)
            log.warning("CUDA out of memory at batch %d: retrying with batch size %d", stop - start, size)
            continue
        start = stop
    return size
