"""Stage 4: evaluate teacher, student, no-KD baseline and champion on the fixed held-out slice.

Quality is measured on gold-labelled held-out rows of the window; agreement and KL against the
teacher on the same rows; size as parameters and bytes on disk; CPU latency by one harness for
every model (tokenisation / featurisation included, batch 1 and batch 64).
"""
from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import UseCase
from ..home import kd_home
from ..metrics import Agreement
from ..models import load_student, load_teacher
from ..models.inputs import take
from ..storage import files, registry, teachers
from ..storage.files import IntegrityError
from ..storage.runs import RunDir
from ..tasks import get_task
from .window import scan_window

log = logging.getLogger(__name__)


def latency(predict: Callable[[Any], Any], inputs: Any, batch_size: int,
            repeats: int, warmup: int = 3) -> dict[str, float]:
    """p50 / p95 wall-clock milliseconds of ``predict`` on batches of ``batch_size`` rows (texts or feature
    rows; preprocessing inside ``predict`` is part of the time)."""
    rng = np.random.default_rng(0)
    batches = [take(inputs, rng.integers(0, len(inputs), batch_size)) for _ in range(warmup + repeats)]
    for b in batches[:warmup]:
        predict(b)
    times = []
    for b in batches[warmup:]:
        t0 = time.perf_counter()
        predict(b)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def latency_profile(predict: Callable[[Any], Any], texts: Any,
                    repeats_b1: int = 50, repeats_b64: int = 10) -> dict[str, float]:
    b1 = latency(predict, texts, 1, repeats_b1)
    b64 = latency(predict, texts, 64, repeats_b64)
    return {"p50_ms_b1": b1["p50_ms"], "p95_ms_b1": b1["p95_ms"],
            "p50_ms_b64": b64["p50_ms"], "p95_ms_b64": b64["p95_ms"],
            "rows_per_s_b64": 64_000.0 / b64["p50_ms"]}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def evaluate_student(use_case: UseCase, ds: str, teacher_version: str, run: RunDir,
                     champion_version: str | None = None, home: Path | None = None,
                     measure_latency: bool = True, labelling: str | None = None) -> dict[str, Any]:
    """Write the run's ``evaluation`` fact and return it.

    ``champion_version`` is the production version read when the run started; passing it keeps
    evaluation and the later compare-and-swap promotion about the same champion.
    """
    task = get_task(use_case.task)
    # the teacher's latency is measured once per teacher version (it does not change night to night)
    home = home or kd_home()
    profile = teachers.read_profile(use_case.name, teacher_version, home) if measure_latency else None
    scan = scan_window(use_case, ds, labelling or teacher_version, use_case.distill.lookback_days, home)
    log.info("evaluating on %d gold-labelled held-out rows (window %s..%s)", scan.count("held"),
             scan.days[0] if scan.days else ds, ds)

    models: dict[str, dict[str, Any]] = {"teacher": {"version": teacher_version}}
    dirs: dict[str, Path] = {name: files.local_copy(run.model_dir(name), "model",
                                                    "clear the distill_student task of this run to retrain")
                             for name in ("student", "baseline")}
    students = {name: load_student(d) for name, d in dirs.items()}
    if champion_version is not None:
        models["champion"] = {"version": champion_version}
        try:  # a damaged champion must not block every later night: it is reported, not compared
            dirs["champion"] = files.local_copy(registry.verify_version(use_case.name, champion_version, home),
                                                "model", "roll back to a sound version")
            students["champion"] = load_student(dirs["champion"])
        except IntegrityError as exc:
            log.error("champion %s cannot be evaluated: %s", champion_version, exc)
            models["champion"]["error"] = str(exc)
    for name in students:
        models.setdefault(name, {})

    # held-out rows a block at a time: each model's metrics accumulate, no block's logits are kept
    scorers = {"teacher": task.scorer(scan.label_names),
               **{n: task.scorer(s.label_names) for n, s in students.items()}}
    agreements = {n: Agreement() for n, s in students.items() if s.label_names == scan.label_names}
    rows = 0
    for held in scan.blocks("held", use_case.distill.block_rows):
        scorers["teacher"].add(held.gold, held.teacher_logits, held.groups)
        for name, student in students.items():
            z = student.logits(held.inputs)
            scorers[name].add(held.gold, z, held.groups)
            if name in agreements:
                agreements[name].add(held.teacher_logits, z)
        rows += len(held.ids)
    for name, scorer in scorers.items():
        models[name].update(scorer.result())
        if name in agreements and rows:
            models[name].update(agreements[name].result())

    teacher = load_teacher(use_case.resolved_teacher_dir())
    models["teacher"].update({"params": teacher.num_parameters(), "bytes": teacher.bytes_on_disk()})
    for name, s in students.items():
        models[name].update({"params": s.num_parameters(), "bytes": s.bytes_on_disk(dirs[name])})
    first = next((p for p in scan.pieces if p.rows("all").any()), None) if measure_latency else None
    if first is not None:  # latency on the first rows (by id) of the window's first shard
        first = scan.block([first], "all", with_teacher_inputs=profile is None)
        n = min(512, len(first.ids))
        sample = take(first.inputs, np.arange(n))
        if profile is None:
            profile = {**latency_profile(lambda b: teacher.logits(b, batch_size=64),
                                         take(first.teacher_inputs, np.arange(n))),
                       "measured": {"ds": ds, "host": socket.gethostname(), "torch_threads": torch_threads()}}
            teachers.write_profile(use_case.name, teacher_version, profile, home)
        else:
            log.info("teacher %s latency: measured on ds=%s, reused", teacher_version, profile["measured"]["ds"])
        models["teacher"].update({k: v for k, v in profile.items() if k != "measured"})
        models["student"].update(latency_profile(students["student"].logits, sample))
        log.info("latency p50 b1: teacher %.2f ms, student %.3f ms", models["teacher"]["p50_ms_b1"],
                 models["student"]["p50_ms_b1"])
    report = {"use_case": use_case.name, "ds": ds, "task": use_case.task, "metric": use_case.gate.metric,
              "eval_rows": rows, "window": scan.days, "teacher_version": teacher_version,
              "champion_version": champion_version, "models": models}
    run.write("evaluation", report)
    metric = use_case.gate.metric
    for name, m in models.items():
        log.info("%-9s %s %s params %s", name, metric, _fmt(m.get(metric)), m.get("params"))
    return report


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"
