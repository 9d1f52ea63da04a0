"""Stage 4: evaluate teacher, student, no-KD baseline and champion on the fixed held-out slice.

Quality is measured on gold-labelled held-out rows of the window; agreement and KL against the
teacher on the same rows; size as parameters and bytes on disk; CPU latency by one harness for
every model (tokenisation / featurisation included, batch 1 and batch 64).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import UseCase
from ..home import kd_home
from ..metrics import Agreement, paired_bootstrap
from ..models import load_student, load_teacher
from ..models.inputs import take
from ..storage import files, registry, teachers
from ..storage.files import IntegrityError
from ..storage.runs import RunDir
from ..tasks import get_task
from .window import scan_window

log = logging.getLogger(__name__)


def latency(predict: Callable[[Any], Any], inputs: Any, batch_size: int,
            repeats: int, warmup: int = 3, rounds: int = 5) -> dict[str, Any]:
    """Wall-clock milliseconds of ``predict`` on batches of ``batch_size`` rows (texts or feature rows;
    preprocessing inside ``predict`` is part of the time), ``repeats`` calls in ``rounds`` rounds.

    ``p50_ms`` and ``p95_ms`` are over every call; ``p50_ms_rounds`` are the rounds' medians (the
    spread) and ``p50_ms_robust`` the lowest of them: other processes only ever add time, so the fastest
    round is the closest to the model's own cost, and a burst of load on the machine in a few rounds
    does not move it."""
    rng = np.random.default_rng(0)
    batches = [take(inputs, rng.integers(0, len(inputs), batch_size)) for _ in range(warmup + repeats)]
    for b in batches[:warmup]:
        predict(b)
    times = []
    for b in batches[warmup:]:
        t0 = time.perf_counter()
        predict(b)
        times.append((time.perf_counter() - t0) * 1e3)
    medians = [float(np.median(part)) for part in np.array_split(np.asarray(times), min(rounds, len(times)))]
    return {"p50_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)),
            "p50_ms_robust": min(medians), "p50_ms_rounds": [round(m, 4) for m in medians],
            "samples_ms": [round(t, 4) for t in times[:200]]}  # the report's latency distribution


def machine_load() -> dict[str, Any]:
    """The machine's 1-minute load average and its CPUs: how busy it was while latency was measured."""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:  # not every platform has it
        load = None
    return {"load_1m": load, "cpus": os.cpu_count()}


def latency_profile(predict: Callable[[Any], Any], texts: Any,
                    repeats_b1: int = 50, repeats_b64: int = 10) -> dict[str, Any]:
    """Batch-1 and batch-64 latency, batch 1 with its spread over rounds and its robust figure (the
    gate's), and the machine's load before and after (``load_1m`` at the start, ``load_1m_after``)."""
    before = machine_load()
    b1 = latency(predict, texts, 1, repeats_b1)
    b64 = latency(predict, texts, 64, repeats_b64)
    rounds = b1["p50_ms_rounds"]
    return {"p50_ms_b1": b1["p50_ms"], "p95_ms_b1": b1["p95_ms"], "p50_ms_b1_robust": b1["p50_ms_robust"],
            "p50_ms_b1_spread": [min(rounds), max(rounds)], "p50_ms_b1_rounds": rounds,
            "samples_ms_b1": b1["samples_ms"],
            "p50_ms_b64": b64["p50_ms"], "p95_ms_b64": b64["p95_ms"],
            "rows_per_s_b64": 64_000.0 / b64["p50_ms"], **before, "load_1m_after": machine_load()["load_1m"]}


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
    gate = use_case.gate
    scorers = {"teacher": task.scorer(scan.label_names),
               **{n: task.scorer(s.label_names) for n, s in students.items()}}
    agreements = {n: Agreement() for n, s in students.items() if s.label_names == scan.label_names and task.agreement}
    row_slices = [sl for sl in gate.slices if sl.column]
    slice_scorers = {sl.name: {n: task.scorer(scan.label_names if n == "teacher" else students[n].label_names)
                               for n in scorers} for sl in row_slices}
    groups: list[Any] | None = [] if use_case.group_column else None
    rows = 0
    for held in scan.blocks("held", use_case.distill.block_rows, extra_columns=[sl.column for sl in row_slices]):
        logits = {"teacher": held.teacher_logits, **{n: s.logits(held.inputs) for n, s in students.items()}}
        masks = {sl.name: sl.rows(held.extra[sl.column]) for sl in row_slices}
        for name, z in logits.items():
            scorers[name].add(held.gold, z, held.groups)
            if name in agreements:
                agreements[name].add(held.teacher_logits, z)
            for sl_name, mask in masks.items():
                idx = np.flatnonzero(mask)
                slice_scorers[sl_name][name].add([held.gold[i] for i in idx], z[idx],
                                                 None if held.groups is None else [held.groups[i] for i in idx])
        if groups is not None:
            groups.extend(held.groups)
        rows += len(held.ids)
    for name, scorer in scorers.items():
        models[name].update(scorer.result())
        if name in agreements and rows:
            models[name].update(agreements[name].result())
        if name != "teacher" and rows:
            models[name].update(scorer.versus(scorers["teacher"]))
    comparisons = compare(scorers, gate.metric, groups, gate.bootstrap_resamples, gate.confidence)
    slices = {sl: {n: {**sc.result(), "rows": sc.rows()} for n, sc in by_model.items()}
              for sl, by_model in slice_scorers.items()}

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
        for name in ("student", "baseline"):  # either can be the night's candidate
            models[name].update(latency_profile(students[name].logits, sample))
        log.info("latency p50 b1: teacher %.2f ms, student %.3f ms (robust %.3f, rounds' medians %s; load %s on "
                 "%s CPUs)", models["teacher"]["p50_ms_b1"], models["student"]["p50_ms_b1"],
                 models["student"]["p50_ms_b1_robust"], models["student"]["p50_ms_b1_spread"],
                 models["student"]["load_1m"], models["student"]["cpus"])
    report = {"use_case": use_case.name, "ds": ds, "task": use_case.task, "metric": use_case.gate.metric,
              "eval_rows": rows, "classes": len(scan.label_names),
              "eval_groups": None if groups is None else len(set(map(str, groups))),
              "support": scorers["teacher"].support(), "window": scan.days, "teacher_version": teacher_version,
              "teacher_verdict": teachers.read_verdict(use_case.resolved_teacher_dir()),
              "teacher_accepted": teachers.read_acceptance(use_case.name, teacher_version, home),
              "champion_version": champion_version, "models": models, "comparisons": comparisons,
              "slices": slices}
    run.write("evaluation", report)
    metric = use_case.gate.metric
    for name, m in models.items():
        log.info("%-9s %s %s params %s", name, metric, _fmt(m.get(metric)), m.get("params"))
    return report


def compare(scorers: dict[str, Any], metric: str, groups: list[Any] | None, resamples: int,
            confidence: float) -> dict[str, dict[str, Any]]:
    """Paired bootstrap intervals of the differences the gate reads: ``baseline_vs_student`` (did
    distillation pay?) and each candidate against the champion (``student_vs_champion``,
    ``baseline_vs_champion``); ``x_vs_y`` is the interval of x - y."""
    pairs = [("baseline", "student")] + [(c, "champion") for c in ("student", "baseline") if "champion" in scorers]
    out = {}
    for b, a in pairs:
        out[f"{b}_vs_{a}"] = paired_bootstrap(scorers[a], scorers[b], metric, groups, resamples, confidence)
        c = out[f"{b}_vs_{a}"]
        if c["low"] is not None:
            log.info("%s - %s %s: %+.4f, %d%% interval [%+.4f, %+.4f] over %d resamples of %d %s", b, a, metric,
                     c["delta"], round(confidence * 100), c["low"], c["high"], resamples, c["units"], c["unit"])
    return out


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"
