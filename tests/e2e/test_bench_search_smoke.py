"""bench-search's smoke variant: the same code as `make bench-search` on 400 real Home Depot queries with
a tiny random encoder; the JSON has the documented shape and its derived figures agree with its models."""
import json

from benchmarks import search

NAMES = {"teacher", "two_tower_kd", "two_tower_nokd", "pair_kd", "pair_nokd", "bm25"}


def test_smoke_benchmark_writes_the_documented_report(tmp_path, datasets_dir, kd_home):
    out = tmp_path / "bench" / "search-smoke.json"
    assert search.main(["--smoke", "--datasets-dir", str(datasets_dir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["machine"]["cpu"] and report["budget"]["teacher_epochs"] == 1
    assert [(r["dataset"], r["regime"]) for r in report["runs"]] == [
        ("homedepot_search_relevance", "full"), ("homedepot_search_relevance", "scarce")]
    full, scarce = report["runs"]
    # split by query: the same queries in both regimes; scarce keeps the grades of about 10% of them
    assert full["queries"] == scarce["queries"] and full["queries"]["test"] > 30
    assert full["judged_training_pairs"] > 5 * scarce["judged_training_pairs"] > 0
    for r in report["runs"]:  # unjudged candidates per query: random products and BM25's near misses
        c = r["training_candidates"]
        assert sum(c.values()) == r["training_rows"] and c["random"] > 0 and c["bm25"] > 0
    for r in report["runs"]:
        assert set(r["models"]) == NAMES
        for name, m in r["models"].items():
            for key in ("ndcg_at_10", "mrr"):
                assert 0 < m[key] <= 1, (name, key)
            assert -1 <= m["spearman"] <= 1
            assert m["p95_ms_100_candidates"] >= m["p50_ms_100_candidates"] > 0, name
            if name != "teacher":
                assert -1 <= m["kendall_tau_vs_teacher"] <= 1
        for name in ("two_tower_kd", "two_tower_nokd", "bm25"):  # retrieval from the whole catalogue
            assert 0 <= r["models"][name]["recall_at_100"] <= 1
        assert r["models"]["pair_kd"]["recall_at_100"] is None
        m = r["models"]
        assert r["ndcg_retention"] == m["two_tower_kd"]["ndcg_at_10"] / m["teacher"]["ndcg_at_10"]
        assert r["latency_ratio"] == m["teacher"]["p50_ms_100_candidates"] / m["two_tower_kd"]["p50_ms_100_candidates"]
        assert r["targets"]["two_tower_ndcg_retention"]["met"] == (r["ndcg_retention"] >= 0.97)
        assert {"latency_ratio_two_tower", "two_tower_kd_beats_bm25", "pair_nokd_beats_bm25"} <= set(r["targets"])
        assert set(r["students"]) == {"two_tower", "pair"} and r["teacher"]["judged_train_pairs"] > 0
    assert {"kd_beats_nokd_two_tower", "kd_beats_nokd_pair"} <= set(scarce["targets"])
    assert "kd_beats_nokd_pair" not in full["targets"]
