"""Scale benchmark: does every stage grow linearly with the rows, in bounded memory?  (``make bench-scale``)

For product_category, synthetic catalogues of 10k, 100k and 1M listings (one night each), on SQLite
and on PostgreSQL; for purchase_intent, the seeded event generator (``loaders.synthetic.generate_events``,
shaped like the Taobao sample) writes a log of 8 days of ``--events-per-day`` events, and the extract
runs over its last 1, 2, 4 and 8 days; the same windows over the real Taobao sample. Each stage (extract, soft labels, train, evaluate) runs in a process of
its own, so its peak RSS (``ru_maxrss``) is its own; wall time covers the stage call only (not the
imports). The soft labels of the scale runs come from a tiny random BERT (the pipeline's cost, not the
teacher's: a MiniLM at ~250 titles/s on 2 cores would take an hour per million rows); the teacher's
own throughput is measured apart, on real fashion titles with the packaged MiniLM:

- ``softlabel_vs_bare``: the soft-label stage end to end (read the shard, fingerprint, tokenise once,
  length-sorted batches, write the Parquet file) over a bare ``inference_mode`` loop with the same
  model, the same sorted batches and threads (tokenising per batch), median of 3;
- ``softlabel_speedup_sorted``: the stage over the labelling before this release (batches in input
  order, tokenised per batch), median of 3;
- ``softlabel_speedup_int8``: the stage with ``label_dtype=int8`` (the teacher quantised by ONNX
  Runtime, built once before the timing) over that same labelling before this release: the combined
  gain of sorted batches and int8; ``int8_factor`` is int8's own share (fp32 stage over int8 stage);
  ``int8_top1_agreement`` compares the int8 teacher's top-1 with the fp32 teacher's on those titles.
  int8 counts only if that agreement is >= 0.995 and ``bench-quality``'s ``--int8-check`` moved no KD
  student's macro-F1 (mean over seeds) by more than 0.005;
- ``student_epoch_speedup``: one epoch of the KD student with the fused AdamW step over the per-tensor
  loop before this release, same rows, median of 3; it counts only if ``bench-quality``'s
  ``--compare-distill fused_optimizer=false`` moved no KD student's macro-F1 (mean over seeds) by more
  than 0.005. Both checks are read from ``--quality-checks``.

Writes ``$KD_HOME/bench/scale.json`` and, with ``--update-readme``, the README's table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_model

log = logging.getLogger("bench.scale")
DS = "2024-01-10"
INTENT_DS = "2017-12-03"
TAOBAO = "taobao_userbehavior_sample/UserBehavior_head.csv.gz"
ROOT = Path(__file__).resolve().parent.parent
QUALITY_CHECKS = "--int8-check --compare-distill fused_optimizer=false"  # bench-quality's side-by-side checks
# the last full run of those checks on the reference machine (2 cores), committed with its date and machine:
# bench-scale reads it when $KD_HOME/bench/quality-checks.json is not there (the checks take an hour)
RECORDED_QUALITY_CHECKS = ROOT / "benchmarks" / "results" / "quality-checks.json"
README_BEGIN, README_END = "<!-- bench-scale:begin -->", "<!-- bench-scale:end -->"
TARGETS = {"linear_rows_per_s_1m_vs_100k": 0.7, "rss_1m_vs_100k": 1.5, "extrapolated_10m_7day_peak_gb": 8.0,
           "softlabel_vs_bare": 0.9, "softlabel_speedup": 1.5, "student_epoch_speedup": 1.8,
           "celery_2_vs_1_wall": 0.7}


def peak_rss_mb() -> float:
    """This process's peak resident set. Linux's ``VmHWM`` starts afresh at ``exec``; ``ru_maxrss``
    does not (it carries the parent's peak over), so it is only the fallback."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- one stage, in a child process


def _use_case(spec: dict[str, Any]):
    from kd_tasks.use_cases import get_use_case

    uc = get_use_case(spec["use_case"])
    return uc.with_overrides(distill={"epochs": 1, "lookback_days": 1}, labelling={"label_threads": spec["threads"]},
                             extract_lookback_days=spec.get("days", 1), teacher_dir=spec["teacher_dir"])


def run_stage(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one stage of one night as the DAG task would; return rows, wall time and peak RSS."""
    os.environ["KD_HOME"] = spec["home"]
    import torch

    torch.set_num_threads(spec["threads"])
    from kd_tasks.storage.runs import RunDir

    uc, ds, stage = _use_case(spec), spec["ds"], spec["stage"]
    started = time.perf_counter()
    if stage == "extract":
        from kd_tasks.stages.extract import extract_partition

        rows = extract_partition(uc, ds, spec["warehouse"])["rows"]
    elif stage == "soft_labels":
        from kd_tasks.stages.soft_labels import generate_soft_labels

        done = generate_soft_labels(uc, ds, lookback_days=1)
        rows = done["rows_labelled"]
        RunDir.create(uc.name, "bench").write("soft_labels", done)
    elif stage == "train":
        from kd_tasks.stages.distill import distill_student

        run = RunDir.create(uc.name, "bench")
        labelled = run.read("soft_labels")
        rows = distill_student(uc, ds, labelled["teacher_version"], run, labelling=labelled["labelling"])["train_rows"]
    elif stage == "evaluate":
        from kd_tasks.stages.evaluate import evaluate_student

        run = RunDir.create(uc.name, "bench")
        distilled = run.read("distill")
        report = evaluate_student(uc, ds, distilled["teacher_version"], run, labelling=distilled["labelling"])
        rows = report["eval_rows"]
    else:
        raise SystemExit(f"unknown stage {stage}")
    wall = time.perf_counter() - started
    return {"rows": int(rows), "wall_s": round(wall, 3), "rows_per_s": round(rows / max(wall, 1e-9), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(spec)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "KD_HOME": spec["home"]})
    if out.returncode != 0:
        raise RuntimeError(f"stage {spec['stage']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- warehouses and teachers


def warehouse(engine: str, home: Path, name: str) -> str:
    """A fresh warehouse: a SQLite file under ``home`` or a new database on the PostgreSQL server."""
    if engine == "sqlite":
        path = home / "warehouse.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    from benchmarks.airflow_stack import fresh_database

    return fresh_database(name)


def fresh_home(path: Path) -> Path:
    """An empty KD_HOME for one size: a previous run's soft labels of the same seeded rows would be
    reused, and the stage would measure nothing."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def tiny_text_teacher(root: Path, labels: list[str]) -> Path:
    """A tiny random BERT classifier published as a teacher (speed of the pipeline, not of a model)."""
    from kd_tasks.config import TeacherTrainConfig
    from kd_tasks.models.hf_text import bootstrap_teacher, create_tiny_base_model

    target = root / "teachers" / "tiny_text"
    if not (target / "kd_manifest.json").exists():
        base = create_tiny_base_model(root / "tiny_base")
        bootstrap_teacher([f"{label} item" for label in labels] * 4, labels * 4, target, base_model=str(base),
                          config=TeacherTrainConfig(epochs=1, max_rows=64))
    return target


# --------------------------------------------------------------------------- the runs


def catalogue_runs(root: Path, sizes: list[int], engines: list[str], threads: int,
                   slope_size: int = 0) -> list[dict[str, Any]]:
    """Every stage at each of ``sizes`` on each engine; ``slope_size`` (on the first engine only) is a
    second size above ``block_rows``, so the memory a window adds per row is measured apart from the
    block that training and evaluation hold."""
    from kd_tasks.loaders.catalogue import load_products
    from kd_tasks.loaders.synthetic import CATALOGUE, generate_catalogue

    teacher = tiny_text_teacher(root, sorted(CATALOGUE))
    out = []
    for engine in engines:
        for n in sizes + ([slope_size] if slope_size and engine == engines[0] else []):
            home = fresh_home(root / "product_category" / engine / str(n))
            uri = warehouse(engine, home, f"kd_bench_scale_{n}")
            t = time.perf_counter()
            load_products(uri, generate_catalogue(n, days=1, end_date=DS, seed=n), replace=True)
            log.info("product_category %s %d: catalogue loaded in %.0fs", engine, n, time.perf_counter() - t)
            for stage in ("extract", "soft_labels", "train", "evaluate"):
                spec = {"use_case": "product_category", "stage": stage, "ds": DS, "home": str(home),
                        "warehouse": uri, "teacher_dir": str(teacher), "threads": threads}
                result = child(spec)
                out.append({"use_case": "product_category", "stage": stage, "engine": engine, "size": n,
                            "dtype": "fp32", "batch": 64 if stage == "soft_labels" else None, **result})
                log.info("%s", out[-1])
    return out


def intent_runs(root: Path, day_counts: list[int], engines: list[str], events_per_day: int,
                datasets: Path | None, threads: int) -> list[dict[str, Any]]:
    from kd_tasks.loaders.events import load_events, read_taobao
    from kd_tasks.loaders.synthetic import generate_events

    out = []
    sources = [("synthetic", None)] + ([("taobao", datasets / TAOBAO)] if datasets else [])
    for engine in engines:
        for source, path in sources:
            home = fresh_home(root / "purchase_intent" / engine / source)
            uri = warehouse(engine, home, f"kd_bench_scale_{source}")
            t = time.perf_counter()
            events = (generate_events(max(day_counts), events_per_day, INTENT_DS) if path is None
                      else read_taobao(path)[0])
            loaded = load_events(uri, events, replace=True)
            log.info("purchase_intent %s %s: %d events loaded in %.0fs", engine, source, loaded["events"],
                     time.perf_counter() - t)
            for days in day_counts:
                spec = {"use_case": "purchase_intent", "stage": "extract", "ds": INTENT_DS, "days": days,
                        "home": str(home / f"days={days}"), "warehouse": uri, "teacher_dir": "", "threads": threads}
                result = child(spec)
                out.append({"use_case": "purchase_intent", "stage": "extract", "engine": engine, "source": source,
                            "days": days, "dtype": None, "batch": None, **result})
                log.info("%s", out[-1])
    return out


def teacher_throughput(datasets: Path | None, rows: int, threads: int, root: Path, repeats: int = 3,
                       train_rows: int = 2000, train_epochs: int = 3) -> dict[str, Any]:
    """On real titles with a fine-tuned MiniLM teacher (tuned and labelled under ``root``): the soft-label
    stage vs a bare loop, vs the unsorted labelling and in int8, and what float16 storage would change."""
    import statistics

    import numpy as np
    import pyarrow as pa
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kd_tasks.loaders.catalogue import read_fashion_styles
    from kd_tasks.config import TeacherTrainConfig
    from kd_tasks.models import load_teacher
    from kd_tasks.models.hf_text import bootstrap_teacher
    from kd_tasks.stages.soft_labels import label_shard
    from kd_tasks.storage import lake
    from kd_tasks.use_cases import get_use_case

    torch.set_num_threads(threads)
    if datasets is None:
        return {}
    records = read_fashion_styles(datasets / "fashion_product_styles")
    # a fine-tuned teacher of the real size: MiniLM on the 45 most frequent article types
    counts = Counter(r["articleType"] for r in records if r.get("articleType"))
    classes = sorted(c for c, _ in counts.most_common(45))
    labelled = [r for r in records if r.get("articleType") in classes and r.get("productDisplayName")]
    train, records = labelled[:train_rows], labelled[train_rows:train_rows + rows]
    texts = [r["productDisplayName"] for r in records]
    teacher_dir = root / "teacher"
    started = time.perf_counter()
    version = bootstrap_teacher([r["productDisplayName"] for r in train], [r["articleType"] for r in train],
                                teacher_dir, label_names=classes,
                                config=TeacherTrainConfig(epochs=train_epochs, max_rows=train_rows))["version"]
    log.info("fine-tuned a MiniLM teacher on %d real titles, 45 classes, in %.0fs", len(train),
             time.perf_counter() - started)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()

    os.environ["KD_HOME"] = str(root / "home")
    uc = get_use_case("product_category").with_overrides(teacher_dir=str(teacher_dir),
                                                         labelling={"label_threads": threads})
    uc8 = uc.with_overrides(labelling={"label_dtype": "int8", "label_device": "cpu"})
    lake.write_shards(lake.extract_dir(uc.name, DS), [pa.table({
        "product_id": [str(r["id"]) for r in records], "title": texts, "category": [None] * len(texts)},
        schema=pa.schema([("product_id", pa.string()), ("title", pa.string()), ("category", pa.string())]))],
        {"use_case": uc.name})
    lengths = np.array([len(x) for x in tok(texts, truncation=True, max_length=32)["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    batch = 64

    def bare(sequence):
        started = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(sequence), batch):
                enc = tok([texts[k] for k in sequence[i:i + batch]], padding=True, truncation=True, max_length=32,
                          return_tensors="pt")
                model(**enc)
        return time.perf_counter() - started

    def stage(use_case=uc, labelling=version):
        import shutil

        shutil.rmtree(Path(os.environ["KD_HOME"]) / "lake" / uc.name / "soft_labels", ignore_errors=True)
        started = time.perf_counter()
        label_shard(use_case, DS, 0, labelling)
        return time.perf_counter() - started

    int8_build = stage(uc8, f"{version}-int8")  # the first int8 labelling quantises the teacher into the cache
    times = {"stage": [], "stage_int8": [], "bare_sorted": [], "unsorted": []}
    for _ in range(repeats):  # interleaved, so a load change hits all four alike
        times["stage"].append(stage())
        times["stage_int8"].append(stage(uc8, f"{version}-int8"))
        times["bare_sorted"].append(bare(order))
        times["unsorted"].append(bare(np.arange(len(texts))))
    med = {k: statistics.median(v) for k, v in times.items()}
    logits = load_teacher(teacher_dir).prepare("cpu", "fp32").logits(texts)  # float32, before storage
    logits8 = load_teacher(teacher_dir).prepare("cpu", "int8", threads).logits(texts)
    return {"rows": len(texts), "threads": threads, "batch": batch, "seconds_median_of_3": med,
            "teacher": {"version": version, "train_rows": len(train), "classes": len(classes)},
            "logits_float16": logits_precision(logits, uc.distill.temperature),
            "int8": {"first_stage_with_quantisation_s": round(int8_build, 1),
                     "max_abs_logit_diff": float(np.abs(logits8 - logits).max())},
            "rows_per_s": {k: round(len(texts) / v, 1) for k, v in med.items()},
            "softlabel_vs_bare": round(med["bare_sorted"] / med["stage"], 3),
            "softlabel_speedup_sorted": round(med["unsorted"] / med["stage"], 3),
            "int8_factor": round(med["stage"] / med["stage_int8"], 3),
            "softlabel_speedup_int8": round(med["unsorted"] / med["stage_int8"], 3),
            "int8_top1_agreement": round(float((logits8.argmax(1) == logits.argmax(1)).mean()), 5)}


def quality_deltas(path: Path) -> tuple[float | None, float | None]:
    """The largest KD-student macro-F1 moves of int8 labels and of the fused step recorded by
    ``python -m benchmarks.quality`` with ``QUALITY_CHECKS``; None where the report lacks one."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        report = {}
    int8 = report.get("int8", {}).get("student_kd_macro_f1_delta_max_abs")
    fused = report.get("distill_check", {}).get("delta_max_abs")
    int8, fused = (None if x is None else round(x, 4) for x in (int8, fused))
    if int8 is None or fused is None:
        log.warning("no quality checks at %s (run: python -m benchmarks.quality %s --out %s); their targets stay "
                    "unmet until it has them", path, QUALITY_CHECKS, path)
    return int8, fused


def _dated(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {"date": report.get("date"), "machine": report.get("machine")}


BENCH_DAG = '''"""The nightly chain of product_category with no schedule (scale benchmark)."""
import datetime as dt

from airflow.sdk import dag

from kd_common import DEFAULT_ARGS, distill_params, nightly_tasks


@dag(dag_id="{}", schedule=None, start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
     catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, params=distill_params("product_category"))
def bench():
    nightly_tasks("product_category")


bench()
'''


def celery_2_vs_1(root: Path, datasets: Path | None, rows: int = 20_000, redis_db: int = 10) -> dict[str, Any]:
    """A real Airflow stack (scheduler, dag-processor, api-server, PostgreSQL metadata, Redis broker) with
    two Celery workers of one task and one teacher thread each; the nightly DAG labels a partition of
    ``rows`` real titles with a fine-tuned MiniLM as one shard (one worker) and then as two shards (both
    workers). Wall time: first start to last end of the night's ``generate_soft_labels`` tasks."""
    import datetime as dt
    import shutil

    from benchmarks import airflow_stack as stack
    from kd_tasks.loaders import catalogue
    from kd_tasks.nightly import bootstrap, resolve_use_case

    if datasets is None:
        return {"skipped": "the fashion titles (KD_DATASETS) are not here"}
    base = root / "celery"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    db = f"kd_bench_airflow_{os.getpid()}"
    try:
        metadata = stack.create_database(db)
    except Exception as exc:  # no PostgreSQL for the metadata: reported, not fatal
        return {"skipped": f"PostgreSQL for the Airflow metadata is not reachable ({type(exc).__name__})"}
    nightly = "kd_bench_product_category_nightly"  # the nightly chain without a schedule: only the runs below
    c = stack.cluster(base, base / "kd_home", metadata, redis_db, {"kd_bench_nightly.py": BENCH_DAG.format(nightly)},
                      quick=False)
    stack.flush_broker(redis_db)
    # a SIGTERM (a timeout, a Ctrl-C in another shell) still stops the stack's processes below
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        records = [r for r in catalogue.read_fashion_styles(datasets / "fashion_product_styles")
                   if r.get("productDisplayName")][:rows]
        listed = catalogue.catalogue_rows(records, source="fashion", text_column="productDisplayName",
                                          label_column="masterCategory", id_column="id", end_date=DS, days=1)
        os.environ["KD_HOME"] = str(c.kd_home)
        uri = f"sqlite:///{c.kd_home / 'warehouse.db'}"
        catalogue.load_products(uri, listed, replace=True)
        started = time.perf_counter()
        bootstrap(resolve_use_case("product_category"), DS, uri, train={"epochs": 1, "max_rows": 1000})
        log.info("celery: teacher fine-tuned in %.0fs; starting the stack", time.perf_counter() - started)
        stack.start(c, [("worker-a", "default,teacher"), ("worker-b", "default,teacher")], [nightly])
        assert c.api("PATCH", f"/dags/{nightly}", {"is_paused": False})[0] == 200
        out: dict[str, Any] = {"rows": len(listed), "workers": 2, "threads_per_worker": 1}
        for name, shard_rows in (("one_shard", len(listed)), ("two_shards", (len(listed) + 1) // 2)):
            shutil.rmtree(c.kd_home / "lake" / "product_category" / "soft_labels", ignore_errors=True)
            run_id = c.trigger(nightly, {"ds": DS, "shard_rows": shard_rows, "label_threads": 1, "dry_run": True},
                               timeout=3600)
            tis = c.task_instances(nightly, run_id, "generate_soft_labels")
            when = [(dt.datetime.fromisoformat(t["start_date"]), dt.datetime.fromisoformat(t["end_date"])) for t in tis]
            first = min(s for s, _ in when)
            out[name] = {"tasks_s": [[round((s - first).total_seconds(), 1), round((e - s).total_seconds(), 1)]
                                     for s, e in sorted(when)],
                         "shards": len(tis), "by_worker": {w: sorted(c.map_indexes_run_by(w, run_id, "generate_soft_labels"))
                                                         for w in ("worker-a", "worker-b")},
                         "wall_s": round((max(e for _, e in when) - min(s for s, _ in when)).total_seconds(), 2)}
            log.info("celery %s: %s", name, out[name])
        out["celery_2_vs_1_wall"] = round(out["two_shards"]["wall_s"] / out["one_shard"]["wall_s"], 3)
        return out
    finally:
        c.stop()
        stack.flush_broker(redis_db)
        stack.drop_database(db)
        signal.signal(signal.SIGTERM, previous)


def student_epochs(home: Path, threads: int, repeats: int = 3) -> dict[str, Any]:
    """One epoch of the KD student on the same training rows (a product_category night that the
    catalogue runs labelled): AdamW's per-tensor loop (the step before this release), the fused AdamW
    step (the default now) and sparse embedding updates; median of 3, interleaved, the features
    prepared before the clock starts."""
    import statistics
    from dataclasses import replace

    import torch

    from kd_tasks.models import student_class
    from kd_tasks.stages.distill import TrainingRows, train_student
    from kd_tasks.stages.window import scan_window
    from kd_tasks.storage.runs import RunDir
    from kd_tasks.use_cases import get_use_case

    os.environ["KD_HOME"] = str(home)
    torch.set_num_threads(threads)
    uc = get_use_case("product_category")
    labelled = RunDir.create(uc.name, "bench").read("soft_labels")
    scan = scan_window(uc, DS, labelled["labelling"], 1)
    cfg = replace(uc.distill, epochs=1)
    variants = {"adamw_loop": {"fused_optimizer": False}, "adamw_fused": {"fused_optimizer": True},
                "sparse_adam": {"sparse_embedding": True}}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as cache:
        rows = TrainingRows.from_scan(scan, cfg.block_rows, Path(cache))
        rows.features(student_class(uc.student_family).create(scan.label_names, cfg.student_size, [], ()))
        for _ in range(repeats):
            for name, fields in variants.items():
                started = time.perf_counter()
                train_student(rows, replace(cfg, **fields))
                times[name].append(time.perf_counter() - started)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rows": len(rows), "threads": threads, "seconds_median_of_3": med,
            "rows_per_s": {k: round(len(rows) / v, 1) for k, v in med.items()},
            "student_epoch_speedup": round(med["adamw_loop"] / med["adamw_fused"], 3),
            "sparse_over_fused": round(med["adamw_fused"] / med["sparse_adam"], 3)}


def logits_precision(logits: Any, temperature: float) -> dict[str, Any]:
    """What storing ``logits`` as float16 (zstd) instead of float32 (snappy) changes: max |delta|, mean KL
    at the training temperature, top-1 agreement, and bytes per row and class on disk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kd_tasks.metrics import log_softmax

    half = logits.astype(np.float16).astype(np.float32)
    lt, lh = log_softmax(logits / temperature), log_softmax(half / temperature)
    out = {"max_abs_delta": float(np.abs(half - logits).max()),
           "kl_at_training_t": float((np.exp(lt) * (lt - lh)).sum(axis=1).mean()),
           "top1_agreement": float((logits.argmax(1) == half.argmax(1)).mean()),
           "temperature": temperature, "bytes_per_row_class": {}}
    n, k = logits.shape
    with tempfile.TemporaryDirectory() as tmp:
        for name, dtype, codec in (("float32_snappy", np.float32, "snappy"), ("float16_zstd", np.float16, "zstd"),
                                   ("float32_zstd", np.float32, "zstd")):
            table = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.astype(dtype).ravel()), k)})
            pq.write_table(table, Path(tmp) / name, compression=codec)
            out["bytes_per_row_class"][name] = round((Path(tmp) / name).stat().st_size / (n * k), 3)
    out["adopt"] = bool(out["max_abs_delta"] <= 1e-2 and out["kl_at_training_t"] <= 1e-5
                        and out["top1_agreement"] >= 0.999)
    return out


# --------------------------------------------------------------------------- report


def ratio(stages: list[dict[str, Any]], key: str, big: Any, small: Any, **match: Any) -> dict[str, Any]:
    """For each (stage, engine): ``key`` at size ``big`` over ``key`` at size ``small``."""
    out = {}
    rows = [s for s in stages if all(s.get(k) == v for k, v in match.items())]
    for s in rows:
        if s.get("size", s.get("days")) != big:
            continue
        other = [o for o in rows if o["stage"] == s["stage"] and o["engine"] == s["engine"]
                 and o.get("source") == s.get("source") and o.get("size", o.get("days")) == small]
        if other:
            out[f"{s['use_case']}/{s['stage']}/{s['engine']}" + (f"/{s['source']}" if s.get("source") else "")] = \
                round(s[key] / max(other[0][key], 1e-9), 3)
    return out


def extrapolate_10m_7day_gb(stages: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any] | None:
    """Peak RSS of each product_category stage for 10M new rows a night and a 7-day window (70M rows) with
    45 classes: a line through the two largest sizes on SQLite (both above ``block_rows``, so the line's
    slope is what a row of the window costs beyond the block), at 10M rows for the stages that read one
    night (extract, soft labels) and at 70M for those that read the window (train, evaluate), plus the
    logits of 45 - 12 more classes (the synthetic catalogue has 12) for the rows a stage holds at once
    (a block of ``block_rows``, three copies: read, filtered, joined). The night's peak is the largest."""
    from kd_tasks.config import DistillConfig

    block = DistillConfig().block_rows
    out: dict[str, Any] = {}
    for stage, rows in (("extract", 10_000_000), ("soft_labels", 10_000_000), ("train", 70_000_000),
                        ("evaluate", 70_000_000)):
        runs = sorted((s for s in stages if s["use_case"] == "product_category" and s["stage"] == stage
                       and s["engine"] == "sqlite"), key=lambda s: s["size"])
        if len(runs) < 2:
            continue
        a, b = runs[-2], runs[-1]
        per_row_mb = max(b["peak_rss_mb"] - a["peak_rss_mb"], 0.0) / max(b["size"] - a["size"], 1)
        wider_mb = 3 * block * (45 - 12) * 4 / 2**20 if stage in ("train", "evaluate") else 0.0
        out[stage] = round((b["peak_rss_mb"] + per_row_mb * (rows - b["size"]) + wider_mb) / 1024, 2)
    return {"by_stage_gb": out, "peak_gb": max(out.values())} if out else None


def readme_table(report: dict[str, Any]) -> str:
    lines = [README_BEGIN, "", f"Measured on {report['machine']['cpu']} ({report['machine']['threads']} threads, "
             f"load average {report['machine']['load_avg']}), {report['measured_at']}:", "",
             "| use case | stage | engine | rows | wall s | rows/s | peak RSS MB |", "|---|---|---|---|---|---|---|"]
    for s in report["stages"]:
        where = s["engine"] + (f" ({s['source']}, {s['days']} d)" if s.get("source") else "")
        lines.append(f"| {s['use_case']} | {s['stage']} | {where} | {s['rows']:,} | {s['wall_s']} | "
                     f"{s['rows_per_s']:,.0f} | {s['peak_rss_mb']:,.0f} |")
    lines += ["", "| target | value | goal | met |", "|---|---|---|---|"]
    for name, t in report["targets"].items():
        lines.append(f"| {name} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'no' if t['met'] is False else 'not measured'} |")
    return "\n".join(lines + ["", README_END])


def quality_checks_path(given: str | None, home: Path) -> Path:
    """``--quality-checks``, else ``$KD_HOME/bench/quality-checks.json``, else the recorded one."""
    if given:
        return Path(given)
    fresh = home / "bench" / "quality-checks.json"
    return next((p for p in (fresh, RECORDED_QUALITY_CHECKS) if p.is_file()), fresh)


def judge(measured: dict[str, Any], checks: Path) -> dict[str, Any]:
    """The ratios and targets of a run's measurements, with the quality checks read from ``checks``."""
    stages, teacher, epochs, celery = (measured[k] for k in ("stages", "teacher", "student_epochs", "celery"))
    sizes = measured["sizes"]
    days = measured.get("intent_days") or sorted({s.get("size", s.get("days")) for s in stages
                                                  if s["use_case"] == "purchase_intent"})
    big, small = sizes[-1], sizes[-2] if len(sizes) > 1 else sizes[-1]
    linear = {**ratio(stages, "rows_per_s", big, small, use_case="product_category"),
              **ratio(stages, "rows_per_s", days[-1], days[-2], use_case="purchase_intent")}
    rss = ratio(stages, "peak_rss_mb", big, small, use_case="product_category")
    extrapolation = extrapolate_10m_7day_gb(stages, sizes)
    extrapolated = extrapolation["peak_gb"] if extrapolation else None
    int8_delta, fused_delta = quality_deltas(checks)
    agreement = teacher.get("int8_top1_agreement")
    int8_counts = agreement is not None and agreement >= 0.995 and int8_delta is not None and int8_delta <= 0.005
    ratios = {"softlabel_vs_bare": teacher.get("softlabel_vs_bare"),
              "softlabel_speedup_sorted": teacher.get("softlabel_speedup_sorted"),
              "softlabel_speedup_int8": teacher.get("softlabel_speedup_int8"), "int8_top1_agreement": agreement,
              "int8_factor": teacher.get("int8_factor"), "int8_student_quality_delta_max": int8_delta,
              "student_epoch_speedup": epochs["student_epoch_speedup"],
              "student_quality_delta_max": fused_delta, "celery_2_vs_1_wall": celery.get("celery_2_vs_1_wall"),
              "rows_per_s_big_over_small": linear, "peak_rss_big_over_small": rss}

    def target(value: Any, goal: float, higher: bool) -> dict[str, Any]:
        met = None if value is None else (value >= goal if higher else value <= goal)
        return {"value": value, "goal": (">= " if higher else "<= ") + str(goal), "met": met}

    return {
        **measured,
        "ratios": ratios, "extrapolated_10m_7day_peak_gb": extrapolated,
        "quality_checks": {"path": str(checks), **_dated(checks)},
        "extrapolation": extrapolation, "gpu": None,
        "targets": {
            "linear_rows_per_s_1m_vs_100k": target(min(linear.values()) if linear else None,
                                                   TARGETS["linear_rows_per_s_1m_vs_100k"], True),
            "rss_1m_vs_100k": target(max(rss.values()) if rss else None, TARGETS["rss_1m_vs_100k"], False),
            "extrapolated_10m_7day_peak_gb": target(extrapolated, TARGETS["extrapolated_10m_7day_peak_gb"], False),
            "softlabel_vs_bare": target(ratios["softlabel_vs_bare"], TARGETS["softlabel_vs_bare"], True),
            # int8 counts only under its bar (top-1 agreement and bench-quality's KD macro-F1), else sorted alone
            "softlabel_speedup": target(ratios["softlabel_speedup_int8" if int8_counts else "softlabel_speedup_sorted"],
                                        TARGETS["softlabel_speedup"], True),
            "int8_top1_agreement": target(agreement, 0.995, True),
            "int8_student_quality_delta_max": target(int8_delta, 0.005, False),
            # the speedup counts under the quality bar: no KD student of bench-quality moved by more than 0.005
            "student_epoch_speedup": {**target(epochs["student_epoch_speedup"], TARGETS["student_epoch_speedup"], True),
                                      **({} if fused_delta is not None and fused_delta <= 0.005 else
                                         {"met": None if fused_delta is None else False})},
            "student_quality_delta_max": target(fused_delta, 0.005, False),
            "celery_2_vs_1_wall": target(celery.get("celery_2_vs_1_wall"), TARGETS["celery_2_vs_1_wall"], False),
        },
    }


def publish(report: dict[str, Any], out: Path, update_readme: bool) -> int:
    """Write the report to ``out``, with ``update_readme`` its table into the README; print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", out)
    if update_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        if README_BEGIN in text:
            start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
            readme.write_text(text[:start] + readme_table(report) + text[end:])
    print(readme_table(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="catalogue sizes (rows per night)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--slope-size", type=int, default=2_000_000,
                        help="one more catalogue size, on the first engine, for the memory extrapolation (0: none)")
    parser.add_argument("--intent-days", default="1,2,4,8")
    parser.add_argument("--events-per-day", type=int, default=1_000_000)
    parser.add_argument("--teacher-rows", type=int, default=4000, help="real titles for the teacher throughput")
    parser.add_argument("--teacher-train-rows", type=int, default=2000, help="real titles the teacher is tuned on")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="fine-tuning epochs of that teacher")
    parser.add_argument("--celery-rows", type=int, default=20_000,
                        help="titles of the 2-workers-vs-1 run on a real Airflow stack (0: skip it)")
    parser.add_argument("--quality-checks", default=None, help=f"the JSON of python -m benchmarks.quality "
                        f"{QUALITY_CHECKS} (default: $KD_HOME/bench/quality-checks.json)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=None, help="default: $KD_HOME/bench/scale.json")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--rejudge", metavar="SCALE_JSON", default=None,
                        help="measure nothing: judge the measurements of an earlier run's JSON again against "
                             "the quality checks (e.g. recorded after it), rewrite it (or --out) and the README")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_stage(json.loads(args.child))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from kd_tasks.home import kd_home

    home = kd_home()
    if args.rejudge:
        measured = json.loads(Path(args.rejudge).read_text())
        report = judge(measured, quality_checks_path(args.quality_checks, home))
        return publish(report, Path(args.out or args.rejudge), args.update_readme)
    root = home / "bench" / "scale"
    root.mkdir(parents=True, exist_ok=True)
    datasets = Path(os.environ.get("KD_DATASETS", ROOT.parent / "shared" / "datasets"))
    datasets = datasets if (datasets / "fashion_product_styles").is_dir() else None
    sizes = [int(x) for x in args.sizes.split(",")]
    engines = args.engines.split(",")
    days = [int(x) for x in args.intent_days.split(",")]
    load = os.getloadavg()
    stages = catalogue_runs(root, sizes, engines, args.threads, args.slope_size)
    stages += intent_runs(root, days, engines, args.events_per_day, datasets, args.threads)
    epochs = student_epochs(root / "product_category" / engines[0] / str(sizes[-2 if len(sizes) > 1 else -1]),
                            args.threads)
    with tempfile.TemporaryDirectory(prefix="kd-bench-teacher-") as work:
        teacher = teacher_throughput(datasets, args.teacher_rows, args.threads, Path(work),
                                     train_rows=args.teacher_train_rows, train_epochs=args.teacher_epochs)
    celery = celery_2_vs_1(root, datasets, args.celery_rows) if args.celery_rows else {"skipped": "--celery-rows 0"}
    measured = {
        "machine": {"cpu": cpu_model(), "threads": args.threads,
                    "load_avg": [round(x, 2) for x in load]},
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sizes": sizes, "intent_days": days, "events_per_day": args.events_per_day, "stages": stages,
        "teacher": teacher, "student_epochs": epochs, "celery": celery}
    report = judge(measured, quality_checks_path(args.quality_checks, home))
    return publish(report, Path(args.out) if args.out else home / "bench" / "scale.json", args.update_readme)


if __name__ == "__main__":
    sys.exit(main())
