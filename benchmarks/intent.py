"""Purchase-intent benchmark: does privileged-feature distillation pay?  (``make bench-intent``)

For each real behaviour log the run goes through the project's own stages: ``load_events`` fills a
SQLite warehouse, ``extract_partition`` runs ``sql/purchase_intent/extract_candidates.sql`` for every
day, ``train_teacher`` trains the deep MLP teacher on serving + privileged features of the training
days, ``generate_soft_labels`` writes its logits, ``load_window`` reads them back, ``train_student``
trains the KD student and the no-KD student (same serving features, same epochs, same size), and
``binary_metrics`` / ``latency_profile`` measure every model on test days later than any training
day (every test cutoff comes after the last training label window closed). The popularity baseline
ranks candidates by the item's interactions in the 7 days before the cutoff.

Two student regimes share the teacher and the test days: ``history`` (both students train on every
training partition, as the teacher did) and ``nightly`` (they train on the newest two training
partitions only: the nightly job retrains the student on its recent window, while the teacher was
trained on the longer history). Student settings are the use case's declaration.

Writes ``$KD_HOME/bench/intent.json``; ``--sweep`` writes ``$KD_HOME/bench/intent_sweep.json``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kd_tasks.storage import lake
from kd_tasks.use_cases.purchase_intent import USE_CASE as PURCHASE_INTENT
from kd_tasks.home import kd_home
from kd_tasks.stages.window import load_window
from kd_tasks.stages.distill import train_student
from kd_tasks.metrics import agreement, binary_metrics
from kd_tasks.stages.evaluate import latency_profile
from kd_tasks.loaders.events import load_events, read_online_retail, read_taobao
from kd_tasks.stages.extract import extract_partition
from kd_tasks.models import train_teacher
from kd_tasks.stages.soft_labels import generate_soft_labels
from kd_tasks.models import load_teacher

log = logging.getLogger("bench.intent")
TARGET_KD_GAIN = 0.005  # KD student AUC - no-KD student AUC, on every data set


def days(first: str, last: str, step: int = 1) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(0, (end - start).days + 1, step)]


@dataclass(frozen=True)
class IntentRun:
    dataset: str  # folder under KD_DATASETS
    extract_params: dict  # label_horizon_days, candidate_days
    train_days: tuple  # partition dates (label windows closing on them) used for teacher and students
    test_days: tuple  # later partitions: their cutoffs come after every training label window closed
    label: str  # what "bought" means here
    val_days: int  # training partitions the sweep holds out for validation
    nightly_partitions: int = 2  # the "nightly" regime's students see only the newest training partitions


RUNS = [
    IntentRun("taobao_userbehavior_sample", {"label_horizon_days": 1, "candidate_days": 3},
              tuple(days("2017-11-26", "2017-12-01")), tuple(days("2017-12-02", "2017-12-03")),
              "buys the item on the cutoff day", 1),
    IntentRun("online_retail_uci", {"label_horizon_days": 7, "candidate_days": 28},
              tuple(days("2011-03-01", "2011-10-25", 7)), tuple(days("2011-11-08", "2011-12-09", 3)),
              "buys the product again within 7 days of the cutoff", 6),
]


# The smoke variant (make test): the same code on four Taobao days, with a small teacher budget.
SMOKE = IntentRun("taobao_userbehavior_sample", {"label_horizon_days": 1, "candidate_days": 3},
                  tuple(days("2017-11-26", "2017-11-28")), ("2017-11-29",), "buys the item on the cutoff day", 1)


def read_events(dataset: str, folder: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    if dataset == "taobao_userbehavior_sample":
        return read_taobao(folder / "UserBehavior_head.csv.gz")
    return read_online_retail(folder / "online_retail.parquet")


def _concat(use_case, day_list: list[str], home: Path) -> pa.Table:
    return pa.concat_tables([lake.read_extract(use_case.name, d, home=home) for d in day_list],
                            promote_options="permissive")


@dataclass
class Prepared:
    use_case: Any
    teacher: Any
    train: Any  # kd_tasks.stages.window.Window of the training days
    test: Any  # Window of the test days, with the teacher's inputs (for its latency)
    loaded: dict[str, Any]
    dropped: dict[str, int]
    seconds: dict[str, float]


def _span(ds_list: tuple | list) -> int:
    return (dt.date.fromisoformat(ds_list[-1]) - dt.date.fromisoformat(ds_list[0])).days + 1


def prepare(spec: IntentRun, datasets: Path, home: Path, teacher_cfg: dict[str, Any] | None = None) -> Prepared:
    """Warehouse, extract partitions, teacher and soft labels of one run, all through the stages."""
    use_case = PURCHASE_INTENT.with_overrides(extract_params=spec.extract_params,
                                              teacher_dir=str(home / "teachers" / PURCHASE_INTENT.name))
    if teacher_cfg:
        use_case = replace(use_case, teacher_train=replace(use_case.teacher_train, **teacher_cfg))
    uri = f"sqlite:///{home / 'warehouse.db'}"
    started = time.perf_counter()
    events, dropped = read_events(spec.dataset, datasets / spec.dataset)
    loaded = load_events(uri, events, replace=True)
    log.info("%s: %s (dropped %s)", spec.dataset, loaded, dropped)
    for day in spec.train_days + spec.test_days:
        extract_partition(use_case, day, uri, home)
    extract_s = time.perf_counter() - started

    t0 = time.perf_counter()
    train_teacher(use_case, _concat(use_case, list(spec.train_days), home), use_case.resolved_teacher_dir(), None,
                  use_case.teacher_train, {"bench": spec.dataset, "train_days": [spec.train_days[0],
                                                                                  spec.train_days[-1]]})
    teacher = load_teacher(use_case.resolved_teacher_dir())
    teacher_s = time.perf_counter() - t0
    for part in (spec.train_days, spec.test_days):
        generate_soft_labels(use_case, part[-1], lookback_days=_span(part), home=home)
    train = load_window(use_case, spec.train_days[-1], teacher.version, _span(spec.train_days), home)
    test = load_window(use_case, spec.test_days[-1], teacher.version, _span(spec.test_days), home,
                       with_teacher_inputs=True)
    log.info("%s: %d training rows (%d positives), %d test rows (%d positives)", spec.dataset, len(train.ids),
             int(sum(train.gold)), len(test.ids), int(sum(test.gold)))
    return Prepared(use_case, teacher, train, test, loaded, dropped,
                    {"extract": round(extract_s, 1), "teacher": round(teacher_s, 1)})


def popularity(use_case: Any) -> Any:
    """The popularity baseline's score: the item's interactions in the 7 days before the cutoff
    (its buys in 28 days break ties). A ranking score, not a probability."""
    views, buys = (use_case.input_columns.index(c) for c in ("i_events_7d", "i_buy_28d"))
    return lambda x: (np.log1p(x[:, views]) + 1e-3 * np.log1p(x[:, buys]))[:, None]


def serving_only_teacher(use_case: Any, train: Any, config: Any) -> Any:
    """Diagnostic: the teacher's network and budget on serving-time features only. How far serving
    features go with the teacher's capacity and data; the gap to the teacher is what privileged
    features add."""
    from kd_tasks.models.tabular import TEACHER_HIDDEN, TabularNet, fit_binary_mlp

    y = np.array([int(g) for g in train.gold])
    x = train.inputs
    if len(x) > config.max_rows:
        keep = np.sort(np.random.default_rng(config.seed).choice(len(x), config.max_rows, replace=False))
        x, y = x[keep], y[keep]
    net = TabularNet(len(use_case.input_columns), TEACHER_HIDDEN, 0.1)
    net.scale.fit(x)
    return fit_binary_mlp(net, x, y, config.epochs, config.learning_rate, config.batch_size, config.seed,
                          "teacher_serving_only")


def run_one(spec: IntentRun, datasets: Path, out_root: Path, student_cfg: dict[str, Any] | None = None,
            latency_repeats: tuple[int, int] = (50, 10), teacher_cfg: dict[str, Any] | None = None
            ) -> list[dict[str, Any]]:
    """One entry per student regime: ``history`` (students train on every training partition, like the
    teacher) and ``nightly`` (students train on the last ``nightly_partitions`` only, as the nightly job
    retrains them on its recent window while the teacher was trained on the longer history)."""
    from kd_tasks.models.tabular import mlp_logits

    started = time.perf_counter()
    prep = prepare(spec, datasets, out_root / spec.dataset, teacher_cfg)
    use_case, teacher, test = prep.use_case, prep.teacher, prep.test
    cfg = use_case.with_overrides(distill=student_cfg or {}).distill
    family = {"family": use_case.student_family, "feature_names": use_case.input_columns}
    recent = spec.train_days[-spec.nightly_partitions:]
    windows = {"history": prep.train,
               "nightly": load_window(use_case, recent[-1], teacher.version, _span(recent), out_root / spec.dataset)}
    gold = [int(g) for g in test.gold]
    score = popularity(use_case)
    t0 = time.perf_counter()
    serving_net = serving_only_teacher(use_case, prep.train, use_case.teacher_train)
    shared: dict[str, dict[str, Any]] = {
        "teacher": {**binary_metrics(gold, test.teacher_logits), "params": teacher.num_parameters(),
                    **_latency(lambda b: teacher.logits(b), test.teacher_inputs, latency_repeats)},
        "teacher_serving_only": {**binary_metrics(gold, mlp_logits(serving_net, test.inputs)),
                                 "params": sum(p.numel() for p in serving_net.parameters())},
        "popularity": {**binary_metrics(gold, score(test.inputs)), "logloss": None, "ece": None,  # a score
                       "params": 0, **_latency(score, test.inputs, latency_repeats)},
    }
    diagnostic_s = time.perf_counter() - t0
    runs = []
    for regime, train in windows.items():
        t0 = time.perf_counter()
        students = {"student_kd": train_student(train, cfg, None, f"{regime} student_kd", **family),
                    "student_hard": train_student(train, replace(cfg, alpha=0.0), None, f"{regime} student_hard",
                                                  **family)}
        students_s = time.perf_counter() - t0
        models = {"teacher": shared["teacher"]}
        for name, s in students.items():
            z = s.logits(test.inputs)
            models[name] = {**binary_metrics(gold, z), **agreement(test.teacher_logits, z),
                            "params": s.num_parameters(), **_latency(s.logits, test.inputs, latency_repeats)}
        models["popularity"] = shared["popularity"]
        models["teacher_serving_only"] = shared["teacher_serving_only"]
        kd, hard, pop_auc = (models[m]["auc"] for m in ("student_kd", "student_hard", "popularity"))
        runs.append({
            "dataset": spec.dataset, "regime": regime, "label": spec.label, "extract_params": spec.extract_params,
            "teacher_train_days": [spec.train_days[0], spec.train_days[-1], len(spec.train_days)],
            "student_train_days": [train.days[0], train.days[-1], len(train.days)],
            "test_days": [spec.test_days[0], spec.test_days[-1], len(spec.test_days)],
            "events": prep.loaded["events"], "dropped": prep.dropped,
            "student_train_rows": len(train.ids), "student_train_positives": int(sum(train.gold)),
            "test_rows": len(test.ids), "test_positives": int(sum(gold)),
            "distill": asdict(cfg), "teacher_train": asdict(use_case.teacher_train),
            "models": models,
            "kd_gain_auc": kd - hard,
            "targets": {"kd_gain_auc": TARGET_KD_GAIN, "kd_gain_met": kd - hard >= TARGET_KD_GAIN,
                        "both_beat_popularity": kd > pop_auc and hard > pop_auc},
            "seconds": {**prep.seconds, "diagnostic": round(diagnostic_s, 1), "students": round(students_s, 1),
                        "total": round(time.perf_counter() - started, 1)},
        })
    return runs


def sweep(spec: IntentRun, datasets: Path, out_root: Path, grid: list[dict[str, Any]], seeds: int,
          val_days: int) -> dict[str, Any]:
    """Student settings on a validation split: the last ``val_days`` training partitions play the test
    days (teacher and students train on the ones before). The test days are never read."""
    val = replace(spec, train_days=spec.train_days[:-val_days], test_days=spec.train_days[-val_days:])
    prep = prepare(val, datasets, out_root / f"{spec.dataset}-sweep")
    gold = [int(g) for g in prep.test.gold]
    family = {"family": prep.use_case.student_family, "feature_names": prep.use_case.input_columns}
    rows = []
    for point in [{"alpha": 0.0}] + grid:
        cfg = prep.use_case.with_overrides(distill=point).distill
        aucs = [binary_metrics(gold, train_student(prep.train, replace(cfg, seed=k), None, "sweep", **family)
                               .logits(prep.test.inputs))["auc"] for k in range(seeds)]
        rows.append({**point, "val_auc_mean": float(np.mean(aucs)), "val_auc": aucs})
        log.info("sweep %s: %s val AUC %.4f", spec.dataset, point, np.mean(aucs))
    return {"dataset": spec.dataset, "val_days": list(val.test_days), "val_positives": int(sum(gold)),
            "points": rows}


def _latency(predict, inputs, repeats: tuple[int, int]) -> dict[str, float]:
    prof = latency_profile(predict, inputs, *repeats)
    return {"p50_ms_b1": prof["p50_ms_b1"], "p50_ms_b64": prof["p50_ms_b64"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=os.environ.get("KD_DATASETS", "../shared/datasets"))
    parser.add_argument("--only", default=None, help="run one data set (folder name)")
    parser.add_argument("--out", default=None, help="output JSON; default $KD_HOME/bench/intent.json")
    parser.add_argument("--smoke", action="store_true",
                        help="a fast check of the benchmark code: four Taobao days, small teacher budget")
    parser.add_argument("--sweep", action="store_true",
                        help="instead: a T x alpha grid on a validation split of the training days "
                             "(writes $KD_HOME/bench/intent_sweep.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    datasets = Path(args.datasets)
    for spec in ([SMOKE] if args.smoke else RUNS):
        if not (datasets / spec.dataset).is_dir():
            parser.error(f"{datasets / spec.dataset} is missing; set KD_DATASETS to the shared/datasets folder")
    root = kd_home()
    started = time.perf_counter()
    if args.sweep:
        out = Path(args.out) if args.out else root / "bench" / "intent_sweep.json"
        grid = [{"temperature": t, "alpha": a} for t, a in ((1.0, 0.3), (1.0, 0.5), (2.0, 0.5), (1.0, 0.8))]
        sweeps = [sweep(spec, datasets, root / "bench" / "intent", grid, seeds=2, val_days=spec.val_days)
                  for spec in RUNS if args.only in (None, spec.dataset)]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "purchase_intent_sweep", "sweeps": sweeps,
                                   "seconds": round(time.perf_counter() - started, 1)}, indent=2))
        for sw in sweeps:
            for p in sorted(sw["points"], key=lambda p: -p["val_auc_mean"])[:5]:
                print(sw["dataset"], p)
        print(f"wrote {out}")
        return 0
    out = Path(args.out) if args.out else root / "bench" / "intent.json"
    if args.smoke:
        runs = run_one(SMOKE, datasets, root / "bench" / "intent-smoke", latency_repeats=(5, 2),
                       teacher_cfg={"epochs": 3})
    else:
        runs = [r for spec in RUNS if args.only in (None, spec.dataset)
                for r in run_one(spec, datasets, root / "bench" / "intent")]
    result = {"benchmark": "purchase_intent", "smoke": args.smoke,
              "created": dt.datetime.now(dt.timezone.utc).isoformat(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "seconds": round(time.perf_counter() - started, 1), "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for r in runs:
        m = r["models"]
        print(f"{r['dataset']:<28} {r['regime']:<8} AUC teacher {m['teacher']['auc']:.4f}  KD {m['student_kd']['auc']:.4f}  "
              f"no-KD {m['student_hard']['auc']:.4f}  popularity {m['popularity']['auc']:.4f}  "
              f"gain {r['kd_gain_auc']:+.4f} (target +{TARGET_KD_GAIN})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
