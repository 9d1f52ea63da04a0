"""bench-search's training rows: each training query's judged pairs, random catalogue products and hard
negatives (BM25's near misses for the query that were not judged with it), every added row unjudged."""
from benchmarks import search
from kd_tasks.models.baselines import BM25

PRODUCTS = {
    "p1": "cordless drill 18v", "p2": "cordless drill battery", "p3": "hammer drill bit set",
    "p4": "drill press stand", "p5": "garden hose 50 ft", "p6": "hose nozzle brass", "p7": "expandable garden hose",
    "p8": "paint roller cover", "p9": "paint brush set", "p10": "exterior paint white",
}
PAIRS = [
    {"query": "cordless drill", "product_id": "p1", "title": PRODUCTS["p1"], "grade": 3.0},
    {"query": "garden hose", "product_id": "p5", "title": PRODUCTS["p5"], "grade": 2.67},
    {"query": "paint", "product_id": "p10", "title": PRODUCTS["p10"], "grade": 2.0},
]


def _rows(hard: int, pool: int = 3):
    budget = search.Budget(sampled=1, hard_negatives=hard, hard_pool=pool)
    bm25 = BM25([PRODUCTS[p] for p in sorted(PRODUCTS)])
    return search.training_rows(PAIRS, {"cordless drill", "garden hose", "paint"}, PRODUCTS, "full", budget, 0, bm25)


def test_hard_negatives_are_unjudged_lexical_near_misses_of_their_query():
    rows = _rows(hard=2)
    judged = [r for r in rows if r["grade"] is not None]
    assert [(r["query"], r["product_id"]) for r in judged] == [(p["query"], p["product_id"]) for p in PAIRS]
    pairs = [(r["query"], r["product_id"]) for r in rows]
    assert len(pairs) == len(set(pairs))  # no pair twice, no judged pair again as unjudged
    bm25 = BM25([PRODUCTS[p] for p in sorted(PRODUCTS)])
    for q in ("cordless drill", "garden hose"):
        near = set(bm25.top_k(q, 3))
        added = [r for r in rows if r["query"] == q and r["grade"] is None]
        hard = [r for r in added if r["title"] in near]
        # two of BM25's top 3 that are not the judged product (the random one may be a third)
        assert len(hard) >= 2, (q, added)
        assert all(r["title"] == PRODUCTS[r["product_id"]] for r in added)


def test_without_hard_negatives_only_random_products_are_added():
    with_hard, without = _rows(hard=2), _rows(hard=0)
    assert len(without) == len(PAIRS) + 3  # one random product per query
    assert len(with_hard) > len(without)
