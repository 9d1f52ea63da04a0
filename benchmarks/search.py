"""bench-search: does distilling the search cross-encoder pay, and what does a query cost?

On the Home Depot search-relevance pairs (74,067 judged (query, product) pairs, 11,795 queries,
54,667 products): queries are split by the pipeline's own held-out hash (20% test, never trained on
or tuned on), then 10% of the rest validate (the teacher's early stopping, the students' temperature
sweep) and the rest train. Two regimes: **full** (every training query keeps its grades) and
**scarce** (10% of the training queries keep them; the teacher scores the rest). Each training query
also gets unjudged candidates the teacher scores: ``Budget.sampled`` random catalogue products (as
``extract_pairs.sql`` adds them) and ``Budget.hard_negatives`` of BM25's top ``Budget.hard_pool``
products for it (its lexical near misses: what a retriever over the whole catalogue must learn to
tell apart).

Models: the MiniLM cross-encoder teacher (graded regression, ``kd_tasks.models.cross_encoder``);
the two-tower and pair students (``two_tower``, ``pair_ngram``) with KD (the use case's loss terms,
T from a sweep on the validation queries) and without (graded gold only); BM25 (``bm25s``) over the
catalogue. Metrics on the test queries' judged pairs (re-ranking each query's judged candidates):
NDCG@10 (graded gains), MRR of the first highly relevant product, Spearman with the grade, Kendall's
tau against the teacher per query; recall@100 of the highly relevant judged products retrieved from
the whole catalogue (two-tower: nearest product vectors; BM25: its top 100); latency of scoring 100
candidates for one query on the CPU (teacher: 100 pair passes in one batch; two-tower: one query-tower
pass and 100 dot products with precomputed product vectors; pair student: 100 feature rows).

Teachers and their scores are cached under ``$KD_HOME/bench/cache`` by their settings; ``--smoke`` is
the same code on a few hundred queries with a tiny random encoder (``make test`` runs it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.machine import cpu_model

log = logging.getLogger("bench.search")
README_BEGIN, README_END = "<!-- bench-search:begin -->", "<!-- bench-search:end -->"
NAMES = ("teacher", "two_tower_kd", "two_tower_nokd", "pair_kd", "pair_nokd", "bm25")
FAMILY_OF = {"two_tower": "two_tower", "pair": "pair_ngram"}


@dataclass(frozen=True)
class Budget:
    teacher_epochs: int = 2
    teacher_max_rows: int = 0  # 0: every judged training pair
    teacher_max_length: int = 48
    student_epochs: int = 6
    temperatures: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    sampled: int = 4
    hard_negatives: int = 4  # per training query: unjudged products from BM25's top ``hard_pool``
    hard_pool: int = 20
    latency_queries: int = 30


FULL_BUDGET = Budget()
SMOKE_BUDGET = Budget(teacher_epochs=1, teacher_max_length=32, student_epochs=2, temperatures=(1.0,), sampled=2,
                      hard_negatives=2, hard_pool=10, latency_queries=5)


# --- data ---------------------------------------------------------------------------------------


def read_pairs(path: Path, limit_queries: int | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The judged pairs and the catalogue (product id -> title) of a Home Depot style file, read by the
    project's loader (cleaning, retitled products and repeated pairs handled as ``load-search`` does)."""
    from kd_tasks.loaders.catalogue import read_rows
    from kd_tasks.loaders.search import SearchRows

    rows = SearchRows(read_rows(path, "latin-1"), source=path.name, query_column="search_term",
                      text_column="product_title", grade_column="relevance", product_id_column="product_uid",
                      grade_range=(1.0, 3.0))
    pairs = [{"query": p["query"], "product_id": p["product_id"], "grade": p["grade"]} for p in rows.pairs()]
    products = {pid: p["title"] for pid, p in rows.products.items()}
    for p in pairs:
        p["title"] = products[p["product_id"]]
    if limit_queries:
        keep = set(sorted({p["query"] for p in pairs}, key=_h)[:limit_queries])
        pairs = [p for p in pairs if p["query"] in keep]
    return pairs, products


def _h(text: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha1(f"{salt}{text}".encode()).digest()[:8], "big")


def split(pairs: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
    """Queries by split: ``test`` by the pipeline's held-out hash (20%), ``val`` 10% of the rest by the
    teacher bootstrap's validation hash, ``train`` the others."""
    from kd_tasks.holdout import is_holdout
    from kd_tasks.stages.bootstrap import validation_mask

    queries = sorted({p["query"] for p in pairs})
    test = {q for q in queries if is_holdout(q, 20)}
    rest = [q for q in queries if q not in test]
    val_mask = validation_mask(rest, 0.1)
    return {"test": test, "val": {q for q, v in zip(rest, val_mask) if v},
            "train": {q for q, v in zip(rest, val_mask) if not v}}


def training_rows(pairs: Sequence[dict[str, Any]], train: set[str], products: dict[str, str], regime: str,
                  budget: Budget, seed: int, catalogue_bm25: Any = None) -> list[dict[str, Any]]:
    """The training queries' pairs (grades kept in the full regime, for 10% of the queries in the
    scarce one) plus unjudged candidates per query: ``budget.sampled`` catalogue products drawn at
    random, and ``budget.hard_negatives`` drawn from BM25's top ``budget.hard_pool`` products for the
    query that it was not judged with (the teacher scores them all: a lexical near-miss it scores low
    is the negative that teaches a two-tower student to find products, not only to order them)."""
    rng = np.random.default_rng(seed)
    ids = sorted(products)
    judged = {q for q in train if regime == "full" or _h(q, "scarce:") % 10 == 0}
    rows, shown = [], set()
    for p in pairs:
        if p["query"] in train:
            rows.append({**p, "grade": p["grade"] if p["query"] in judged else None, "source": "judged"})
            shown.add((p["query"], p["product_id"]))
    ids_of = ids_by_title(products)
    for q in sorted(train):
        extra = [(ids[j], "random") for j in rng.choice(len(ids), budget.sampled, replace=False)]
        if budget.hard_negatives and catalogue_bm25 is not None:
            near = [pid for title in catalogue_bm25.top_k(q, budget.hard_pool) for pid in ids_of.get(title, ())
                    if (q, pid) not in shown]
            if near:
                extra += [(near[j], "bm25") for j in sorted(rng.choice(len(near), min(budget.hard_negatives, len(near)),
                                                                       replace=False))]
        for pid, source in extra:
            if (q, pid) not in shown:
                rows.append({"query": q, "product_id": pid, "title": products[pid], "grade": None, "source": source})
                shown.add((q, pid))
    return rows


def ids_by_title(products: dict[str, str]) -> dict[str, list[str]]:
    """Catalogue product ids by title (BM25 indexes distinct titles; several products may share one)."""
    out: dict[str, list[str]] = {}
    for pid in sorted(products):
        out.setdefault(products[pid], []).append(pid)
    return out


# --- models -------------------------------------------------------------------------------------


def _key(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def teacher_and_scores(regime: str, rows: list[dict[str, Any]], val: list[dict[str, Any]], test: list[dict[str, Any]],
                       budget: Budget, base_model: str | None, cache: Path, seed: int) -> tuple[Any, dict[str, Any]]:
    """The regime's cross-encoder and its scores of the training, validation and test rows. The
    teacher is cached by its settings and judged pairs, its scores by the rows they score: a change to
    the unjudged candidates rescores, it does not retrain."""
    from kd_tasks.config import TeacherTrainConfig
    from kd_tasks.models.cross_encoder import CrossEncoderTeacher, train_cross_encoder
    from kd_tasks.models.runtime import Progress
    from kd_tasks.models.training import Validation

    judged = [r for r in rows if r["grade"] is not None]
    cap = budget.teacher_max_rows if budget.teacher_max_rows < len(judged) else 0  # a cap above the rows is none
    config = TeacherTrainConfig(epochs=budget.teacher_epochs, learning_rate=5e-5, head_learning_rate=1e-3,
                                batch_size=32, max_length=budget.teacher_max_length, max_rows=cap,
                                balanced_classes=False, seed=seed, patience=2)
    pairs_of = lambda rs: [(r["query"], r["title"]) for r in rs]  # noqa: E731
    key = _key({"regime": regime, "config": asdict(config), "base": base_model or "minilm",
                "judged": _key([(r["query"], r["product_id"], r["grade"]) for r in judged]),
                "val": _key(pairs_of(val))})
    home = cache / f"search-{regime}-{key}"
    info_path = home / "teacher_info.json"
    if not info_path.is_file():
        home.mkdir(parents=True, exist_ok=True)
        check = Validation(pairs_of(val), [r["grade"] for r in val], ["grade"], "ranking", "ndcg_at_10",
                           [r["query"] for r in val])
        started = time.perf_counter()
        fields = train_cross_encoder(pairs_of(judged), [r["grade"] for r in judged], ["grade"], (), home / "teacher",
                                     base_model, config, check)
        info = {"train_s": round(time.perf_counter() - started, 1), "judged_train_pairs": len(judged),
                "fields": {k: v for k, v in fields.items() if k != "train_config"}, "config": asdict(config)}
        info_path.write_text(json.dumps(info, indent=1))
        log.info("%s: teacher trained in %.0f s on %d judged pairs", regime, info["train_s"], len(judged))
    else:
        log.info("%s: cached teacher at %s", regime, home)
    teacher = CrossEncoderTeacher.load(home / "teacher", key, {"label_names": ["grade"],
                                                               "max_length": budget.teacher_max_length})
    info = json.loads(info_path.read_text())
    texts = {name: pairs_of(part) for name, part in (("train", rows), ("val", val), ("test", test))}
    scores_path = home / f"scores-{_key(texts)}.npz"
    if not scores_path.is_file():
        label_started = time.perf_counter()
        scores = {name: teacher.logits(part, batch_size=64,
                                       progress=Progress(f"{regime}: teacher scores the {name} pairs", len(part),
                                                         every_s=30.0)).reshape(-1)
                  for name, part in texts.items()}
        partial = scores_path.with_suffix(".tmp.npz")
        np.savez(partial, **scores)
        partial.replace(scores_path)
        scores_path.with_suffix(".json").write_text(json.dumps(
            {"label_s": round(time.perf_counter() - label_started, 1),
             "labelled_rows": sum(len(v) for v in scores.values())}))
        log.info("%s: %d rows scored in %.0f s", regime, sum(len(v) for v in scores.values()),
                 time.perf_counter() - label_started)
    info.update(json.loads(scores_path.with_suffix(".json").read_text()))
    with np.load(scores_path) as z:
        info["scores"] = {k: z[k] for k in z.files}
    return teacher, info


def train_students(family: str, rows: list[dict[str, Any]], teacher_scores: np.ndarray, val: list[dict[str, Any]],
                   budget: Budget, seed: int) -> dict[str, Any]:
    """The KD student (temperature chosen on the validation queries' NDCG@10) and the no-KD student."""
    from kd_tasks.stages.distill import train_student
    from kd_tasks.stages.window import Window
    from kd_tasks.use_cases import get_use_case

    uc = get_use_case("search_relevance")
    terms = dict(uc.distill.loss_terms)
    if family != "two_tower":
        terms.pop("infonce_kd", None)  # the pair student has no vectors
    window = Window([str(i) for i in range(len(rows))], [(r["query"], r["title"]) for r in rows],
                    [r["grade"] for r in rows], teacher_scores.reshape(-1, 1).astype(np.float32), ["grade"],
                    np.zeros(len(rows), bool), [], "ranking", groups=[r["query"] for r in rows])
    val_pairs = [(r["query"], r["title"]) for r in val]
    base = replace(uc.distill, epochs=budget.student_epochs, seed=seed, loss_terms=terms)
    sweep, best = {}, None
    for t in budget.temperatures:
        started = time.perf_counter()
        student = train_student(window, replace(base, temperature=t), None, f"{family}_kd T={t}",
                                family=FAMILY_OF[family])
        value = score(student.logits(val_pairs), val)["ndcg_at_10"]
        sweep[str(t)] = {"val_ndcg_at_10": round(value, 4), "train_s": round(time.perf_counter() - started, 1)}
        log.info("%s KD T=%s: validation NDCG@10 %.4f", family, t, value)
        if best is None or value > best[0]:
            best = (value, t, student)
    started = time.perf_counter()
    judged = np.array([r["grade"] is not None for r in rows])
    nokd = train_student(window.subset(judged), replace(base, alpha=0.0), None, f"{family}_nokd",
                         family=FAMILY_OF[family])
    return {"kd": best[2], "nokd": nokd, "temperature": best[1], "sweep": sweep,
            "nokd_train_s": round(time.perf_counter() - started, 1)}


def score(scores: np.ndarray, rows: list[dict[str, Any]], teacher: Any = None) -> dict[str, Any]:
    """The ranking task's metrics of ``scores`` on judged ``rows`` (and tau against a teacher scorer)."""
    from kd_tasks.tasks import get_task

    scorer = get_task("ranking").scorer(["grade"])
    scorer.add([r["grade"] for r in rows], np.asarray(scores, np.float32).reshape(-1, 1), [r["query"] for r in rows])
    out = scorer.result()
    if teacher is not None:
        out.update(scorer.versus(teacher))
    out["_scorer"] = scorer
    return out


def recall_at_100(ranked: dict[str, list[str]], test: list[dict[str, Any]]) -> tuple[float | None, int]:
    """Mean recall@100 over the test queries with a highly relevant judged product."""
    from kd_tasks.metrics import HIGHLY_RELEVANT, recall_at_k

    relevant: dict[str, set[str]] = {}
    for r in test:
        if r["grade"] >= HIGHLY_RELEVANT - 1e-9:
            relevant.setdefault(r["query"], set()).add(r["product_id"])
    values = [recall_at_k(ranked[q], rel, 100) for q, rel in relevant.items() if q in ranked]
    return (float(np.mean(values)) if values else None), len(values)


def latency_100(predict: Any, queries: list[tuple[str, list[tuple[str, str]], list[int]]],
                repeats: int = 3) -> dict[str, float]:
    """p50 / p95 milliseconds of ``predict(query, candidate rows, candidate catalogue rows)`` over the
    queries (best of ``repeats`` calls each: other processes only ever add time)."""
    times = []
    for q, cands, at in queries:
        predict(q, cands, at)  # warm
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict(q, cands, at)
            best = min(best, (time.perf_counter() - t0) * 1e3)
        times.append(best)
    return {"p50_ms_100_candidates": float(np.median(times)), "p95_ms_100_candidates": float(np.percentile(times, 95))}


# --- one run ------------------------------------------------------------------------------------


def run(regime: str, pairs: list[dict[str, Any]], products: dict[str, str], splits: dict[str, set[str]],
        budget: Budget, base_model: str | None, cache: Path, seed: int, catalogue_bm25: Any,
        product_vectors_cache: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    rows = training_rows(pairs, splits["train"], products, regime, budget, seed, catalogue_bm25)
    val = [p for p in pairs if p["query"] in splits["val"]]
    test = [p for p in pairs if p["query"] in splits["test"]]
    teacher, tinfo = teacher_and_scores(regime, rows, val, test, budget, base_model, cache, seed)
    t_scores = tinfo.pop("scores")
    models: dict[str, dict[str, Any]] = {}
    teacher_eval = score(t_scores["test"], test)
    models["teacher"] = {**teacher_eval, "params": teacher.num_parameters()}
    students = {family: train_students(family, rows, t_scores["train"], val, budget, seed) for family in FAMILY_OF}
    for family, trained in students.items():
        for kind in ("kd", "nokd"):
            s = trained[kind]
            models[f"{family}_{kind}"] = {**score(s.logits([(r["query"], r["title"]) for r in test]), test,
                                                 teacher_eval["_scorer"]), "params": s.num_parameters()}
    bm25_scores = catalogue_bm25.scores([(r["query"], r["title"]) for r in test])
    models["bm25"] = {**score(bm25_scores, test, teacher_eval["_scorer"]), "params": 0}

    # recall@100 from the whole catalogue: two-tower product vectors (computed once per student), BM25's top 100
    test_queries = sorted({r["query"] for r in test})
    ids = sorted(products)
    for name in ("two_tower_kd", "two_tower_nokd"):
        s = students["two_tower"][name.rsplit("_", 1)[1]]
        vectors = s.encode_products([products[i] for i in ids])
        qv = s.encode_queries(test_queries)
        top = np.argsort(-(qv @ vectors.T), axis=1)[:, :100]
        models[name]["recall_at_100"], n_rel = recall_at_100(
            {q: [ids[j] for j in row] for q, row in zip(test_queries, top)}, test)
        if name == "two_tower_kd":
            product_vectors_cache["vectors"], product_vectors_cache["student"] = vectors, s
    ids_of = ids_by_title(products)
    models["bm25"]["recall_at_100"], _ = recall_at_100(
        {q: [pid for t in catalogue_bm25.top_k(q, 100) for pid in ids_of[t]] for q in test_queries}, test)
    for name in ("teacher", "pair_kd", "pair_nokd"):
        models[name]["recall_at_100"] = None  # a pair scorer cannot search 54k products per query

    # latency of 100 candidates for one query: its judged products, then catalogue products
    rng = np.random.default_rng(seed)
    by_query: dict[str, list[str]] = {}
    for r in test:
        by_query.setdefault(r["query"], []).append(r["product_id"])
    chosen = [test_queries[i] for i in rng.choice(len(test_queries), min(budget.latency_queries, len(test_queries)),
                                                  replace=False)]
    position = {pid: i for i, pid in enumerate(ids)}
    lat_queries = []
    for q in chosen:
        cands = list(dict.fromkeys(by_query[q] + [ids[j] for j in rng.choice(len(ids), 100, replace=False)]))[:100]
        lat_queries.append((q, [(q, products[c]) for c in cands], [position[c] for c in cands]))
    tower, vectors = product_vectors_cache["student"], product_vectors_cache["vectors"]
    pair_student = students["pair"]["kd"]
    latency = {
        "teacher": latency_100(lambda q, rows_, _: teacher.logits(rows_, batch_size=100), lat_queries),
        # product vectors are computed offline: one query-tower pass and 100 dot products
        "two_tower_kd": latency_100(lambda q, _, at: tower.score_vectors(tower.encode_queries([q]), vectors[at]),
                                    lat_queries),
        "pair_kd": latency_100(lambda q, rows_, _: pair_student.logits(rows_), lat_queries),
        "two_tower_nokd": None, "pair_nokd": None,
        "bm25": latency_100(lambda q, rows_, _: catalogue_bm25.scores(rows_), lat_queries)}
    for name, lat in latency.items():
        if lat is None:  # the same architecture as its KD twin: the same cost
            twin = name.replace("_nokd", "_kd")
            lat = latency.get(twin) or {"p50_ms_100_candidates": None, "p95_ms_100_candidates": None}
        models[name].update(lat)
    for m in models.values():
        m.pop("_scorer", None)
    t, tt = models["teacher"], models["two_tower_kd"]
    retention = tt["ndcg_at_10"] / t["ndcg_at_10"]
    latency_ratio = t["p50_ms_100_candidates"] / tt["p50_ms_100_candidates"]
    targets = {"two_tower_ndcg_retention": {"value": retention, "goal": ">= 0.97", "met": retention >= 0.97},
               "latency_ratio_two_tower": {"value": latency_ratio, "goal": ">= 50", "met": latency_ratio >= 50}}
    for family in FAMILY_OF:
        kd, nokd = models[f"{family}_kd"]["ndcg_at_10"], models[f"{family}_nokd"]["ndcg_at_10"]
        if regime == "scarce":
            targets[f"kd_beats_nokd_{family}"] = {"value": kd - nokd, "goal": "> 0", "met": kd > nokd}
        for kind in ("kd", "nokd"):
            name = f"{family}_{kind}"
            gap = models[name]["ndcg_at_10"] - models["bm25"]["ndcg_at_10"]
            targets[f"{name}_beats_bm25"] = {"value": gap, "goal": "> 0", "met": gap > 0}
    return {"dataset": "homedepot_search_relevance", "regime": regime, "models": models,
            "ndcg_retention": retention, "latency_ratio": latency_ratio, "targets": targets,
            "queries": {k: len(v) for k, v in splits.items()}, "training_rows": len(rows),
            "judged_training_pairs": sum(r["grade"] is not None for r in rows), "test_pairs": len(test),
            "training_candidates": {source: sum(r["source"] == source for r in rows)
                                    for source in ("judged", "random", "bm25")},
            "teacher": tinfo, "students": {f: {"temperature": s["temperature"], "sweep": s["sweep"],
                                              "nokd_train_s": s["nokd_train_s"]} for f, s in students.items()},
            "recall_queries": n_rel, "seconds": round(time.perf_counter() - started, 1)}


# --- the report ---------------------------------------------------------------------------------


def _f(x: Any, fmt: str = "{:.4f}") -> str:
    return "-" if x is None else fmt.format(x)


def table(report: dict[str, Any]) -> str:
    lines = [README_BEGIN, "", f"Measured {report['date']} on {report['machine']['cpu']} "
             f"({report['machine']['threads']} threads){' — smoke run' if report['smoke'] else ''}; "
             f"`python -m benchmarks.search`, {report['seconds'] / 60:.1f} minutes.", ""]
    for r in report["runs"]:
        lines += [f"**{r['regime']}** ({r['queries']['train']} training queries, "
                  f"{r['judged_training_pairs']} judged training pairs of {r['training_rows']} rows "
                  f"({r['training_candidates']['random']} random and {r['training_candidates']['bm25']} BM25 "
                  f"unjudged candidates); "
                  f"{r['queries']['test']} test queries, {r['test_pairs']} judged test pairs)", "",
                  "| model | NDCG@10 | MRR | Spearman | tau vs teacher | recall@100 | p50 ms / 100 cand. | "
                  "p95 ms | params |", "|---|---|---|---|---|---|---|---|---|"]
        for name in NAMES:
            m = r["models"][name]
            lines.append(f"| {name} | {_f(m['ndcg_at_10'])} | {_f(m['mrr'])} | {_f(m['spearman'])} | "
                         f"{_f(m.get('kendall_tau_vs_teacher'), '{:.3f}')} | {_f(m.get('recall_at_100'), '{:.3f}')} | "
                         f"{_f(m.get('p50_ms_100_candidates'), '{:.2f}')} | {_f(m.get('p95_ms_100_candidates'), '{:.2f}')} "
                         f"| {m['params']:,} |")
        met = ", ".join(f"{k} {_f(v['value'], '{:.3f}')} ({v['goal']}: {'met' if v['met'] else 'MISSED'})"
                        for k, v in r["targets"].items())
        lines += ["", f"Targets: {met}.", ""]
    return "\n".join(lines + [README_END])


def update_readme(readme: Path, text: str) -> None:
    content = readme.read_text()
    if README_BEGIN not in content:
        raise SystemExit(f"{readme} has no {README_BEGIN} ... {README_END} block to replace")
    start, end = content.index(README_BEGIN), content.index(README_END) + len(README_END)
    readme.write_text(content[:start] + text + content[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets-dir", default=os.environ.get("KD_DATASETS", "../shared/datasets"))
    p.add_argument("--out", default=None, help="JSON path (default: $KD_HOME/bench/search[-smoke].json)")
    p.add_argument("--regimes", nargs="*", default=["full", "scarce"], choices=["full", "scarce"])
    p.add_argument("--smoke", action="store_true", help="a few hundred queries, a tiny random encoder, 1 epoch")
    p.add_argument("--base-model", default=None, help="local HF directory of the teacher's encoder (default: MiniLM)")
    p.add_argument("--teacher-max-rows", type=int, default=None,
                   help="cap on the judged pairs the teacher trains on (default: every one)")
    p.add_argument("--teacher-epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--update-readme", action="store_true", help="rewrite the README's bench-search table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kd_tasks.home import kd_home
    from kd_tasks.models.baselines import BM25

    started = time.perf_counter()
    out = Path(args.out) if args.out else kd_home() / "bench" / ("search-smoke.json" if args.smoke else "search.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = out.parent / "cache"
    budget = SMOKE_BUDGET if args.smoke else FULL_BUDGET
    if args.teacher_max_rows is not None:
        budget = replace(budget, teacher_max_rows=args.teacher_max_rows)
    if args.teacher_epochs is not None:
        budget = replace(budget, teacher_epochs=args.teacher_epochs)
    base_model = args.base_model
    if args.smoke and base_model is None:
        from kd_tasks.models.hf_text import create_tiny_base_model

        base_model = str(cache / "tiny_base")
        if not (Path(base_model) / "config.json").is_file():
            create_tiny_base_model(base_model)
    source = Path(args.datasets_dir) / "homedepot_search_relevance" / "train.csv.gz"
    if not source.is_file():
        raise SystemExit(f"{source} not found: set KD_DATASETS (or --datasets-dir) to the folder holding "
                         "homedepot_search_relevance/")
    pairs, products = read_pairs(source, 400 if args.smoke else None)
    if args.smoke:  # the smoke run's catalogue: its pairs' products and as many others
        keep = sorted({p["product_id"] for p in pairs})
        others = [pid for pid in sorted(products, key=_h) if pid not in set(keep)][:len(keep)]
        products = {pid: products[pid] for pid in keep + others}
    splits = split(pairs)
    log.info("%d judged pairs, %d queries (%s), %d catalogue products", len(pairs),
             sum(len(v) for v in splits.values()), {k: len(v) for k, v in splits.items()}, len(products))
    catalogue_bm25 = BM25([products[pid] for pid in sorted(products)])
    runs = [run(regime, pairs, products, splits, budget, base_model, cache, args.seed, catalogue_bm25, {})
            for regime in args.regimes]
    report = {"date": dt.date.today().isoformat(), "smoke": args.smoke,
              "machine": {"cpu": cpu_model(), "threads": _threads()}, "budget": asdict(budget),
              "seconds": round(time.perf_counter() - started, 1), "runs": runs}
    out.write_text(json.dumps(report, indent=1, default=float))
    text = table(report)
    print(text)
    log.info("wrote %s", out)
    if args.update_readme:
        update_readme(Path(__file__).resolve().parent.parent / "README.md", text)
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    raise SystemExit(main())
