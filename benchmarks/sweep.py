"""Temperature x alpha sweep on the validation split  (``make bench-sweep``).

Uses the cached teachers and soft labels of ``make bench-quality`` (or builds them), trains one KD
student per (T, alpha) with the use case's other defaults, and scores it on the validation split;
the test split is never read. Writes ``$KD_HOME/bench/sweep.json`` and prints a grid per run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks import datasets as bd
from benchmarks.quality import RUNS, machine, prepare
from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
from kd_tasks.stages.distill import train_student
from kd_tasks.metrics import classification_metrics

log = logging.getLogger("bench.sweep")
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
ALPHAS = (0.5, 0.7, 0.9, 1.0)
DEFAULT_RUNS = ("fashion_product_styles:subCategory:scarce", "fashion_product_styles:articleType:scarce",
                "womens_clothing_reviews:Recommended IND:scarce")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets-dir", default=os.environ.get("KD_DATASETS", "../shared/datasets"))
    p.add_argument("--runs", nargs="*", default=list(DEFAULT_RUNS), help="DATASET:LABEL:REGIME to sweep")
    p.add_argument("--temperatures", nargs="*", type=float, default=list(TEMPERATURES))
    p.add_argument("--alphas", nargs="*", type=float, default=list(ALPHAS))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kd_tasks.home import kd_home

    out = kd_home() / "bench" / "sweep.json"
    specs = {f"{r.dataset}:{r.label}:{r.regime}": r for r in RUNS}
    unknown = [r for r in args.runs if r not in specs]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {sorted(specs)}")
    started = time.perf_counter()
    results = []
    for key in args.runs:
        spec = specs[key]
        corpus = bd.load(Path(args.datasets_dir), spec.dataset, spec.label)
        prep = prepare(spec, corpus, out.parent / "cache", args.seed)
        val = prep.windows["val"]
        gold = [str(g) for g in val.gold]
        grid = []
        for t in args.temperatures:
            for a in args.alphas:
                cfg = replace(PRODUCT_CATEGORY.distill, temperature=t, alpha=a)
                student = train_student(prep.windows["pool"], cfg, log_prefix=f"T={t} alpha={a}")
                pred = [student.label_names[k] for k in student.logits(val.texts).argmax(axis=1)]
                m = classification_metrics(gold, pred)
                grid.append({"temperature": t, "alpha": a, "val_macro_f1": m["macro_f1"],
                             "val_accuracy": m["accuracy"]})
                log.info("%s T=%s alpha=%s: validation macro-F1 %.4f", key, t, a, m["macro_f1"])
        best = max(grid, key=lambda g: g["val_macro_f1"])
        results.append({"dataset": spec.dataset, "label": spec.label, "regime": spec.regime,
                        "grid": grid, "best": best})
        print(f"\n{key}: validation macro-F1 (rows T, columns alpha)")
        print("T \\ alpha " + " ".join(f"{a:>7}" for a in args.alphas))
        for t in args.temperatures:
            row = [g["val_macro_f1"] for g in grid if g["temperature"] == t]
            print(f"{t:>9} " + " ".join(f"{v:7.4f}" for v in row))
        print(f"best: T={best['temperature']} alpha={best['alpha']} macro-F1 {best['val_macro_f1']:.4f}")
    report = {"machine": machine(), "date": dt.date.today().isoformat(), "split": "validation",
              "student_defaults": asdict(PRODUCT_CATEGORY.distill),
              "wall_s": round(time.perf_counter() - started, 1), "runs": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
