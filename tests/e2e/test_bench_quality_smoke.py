"""The quality benchmark's smoke variant: the same code as `make bench-quality`, one data set, tiny budget."""
import json

from benchmarks import datasets as bd
from benchmarks import quality


def test_smoke_benchmark_writes_the_documented_report(tmp_path, datasets_dir, kd_home):
    out = tmp_path / "bench" / "quality-smoke.json"
    assert quality.main(["--smoke", "--datasets-dir", str(datasets_dir), "--out", str(out),
                         "--families", "teacher_layers_transformer"]) == 0
    report = json.loads(out.read_text())
    assert report["machine"] and report["date"] and report["smoke"] is True
    assert [(r["dataset"], r["label"], r["regime"]) for r in report["runs"]] == [
        ("fashion_product_styles", "subCategory", "full"), ("fashion_product_styles", "subCategory", "scarce")]
    for r in report["runs"]:
        assert set(r["models"]) == {"teacher", "student_kd", "student_hard", "tfidf_lr", "teacher_ensemble",
                                    "student_kd_ensemble"}
        for name, m in r["models"].items():
            for key in ("accuracy", "macro_f1", "weighted_f1"):
                assert 0.0 <= m[key] <= 1.0, (name, key)
            for key in ("params", "bytes", "p50_ms_b1", "p95_ms_b1", "rows_per_s_b64"):
                assert m[key] > 0, (name, key)
            assert m["p95_ms_b1"] >= m["p50_ms_b1"]
        m = r["models"]
        assert r["retention"] == m["student_kd"]["macro_f1"] / m["teacher"]["macro_f1"]
        assert r["kd_gain"] == m["student_kd"]["macro_f1"] - m["student_hard"]["macro_f1"]
        assert r["params_ratio"] == m["teacher"]["params"] / m["student_kd"]["params"]
        assert r["latency_ratio"] == m["teacher"]["p50_ms_b1"] / m["student_kd"]["p50_ms_b1"]
        assert set(r["targets"]) >= {"retention", "params_ratio", "latency_ratio", "teacher_beats_baselines"}
        # the teacher against TF-IDF + LR and the gold-only student on the val split, with intervals
        verdict = r["teacher_vs_baselines"]
        assert set(verdict["baselines"]) == {"tfidf_lr", "student_gold_only"}
        assert verdict["validation_rows"] == r["rows"]["val"]
        assert r["targets"]["teacher_beats_baselines"]["met"] == (not verdict["weak"])
        for b in verdict["baselines"].values():
            assert b["interval"][0] <= b["teacher_minus"] <= b["interval"][1]
        # each student family as a point: the n-gram student and the one cut from the teacher
        assert set(r["families"]) == {"hashed_ngram_mlp", "teacher_layers_transformer"}
        for f in r["families"].values():
            assert f["params"] > 0 and f["p50_ms_b1"] > 0 and 0 <= f["retention"]
        assert r["families"]["hashed_ngram_mlp"]["retention"] == r["retention"]
        # the ensemble of the teacher and TF-IDF + LR: weights on the simplex, its own KD student
        ens = r["ensemble"]
        assert set(ens["weights"]) == {"teacher", "tfidf_lr"} and abs(sum(ens["weights"].values()) - 1) < 1e-9
        assert all(0.25 <= t <= 8 for t in ens["temperatures"].values())
        assert m["teacher_ensemble"]["params"] == m["teacher"]["params"] + m["tfidf_lr"]["params"]
        assert 0 <= m["student_kd_ensemble"]["top1_agreement"] <= 1
        # its teacher gate on cross-fitted logits, and its student against MiniLM's with an interval
        assert set(ens["teacher_vs_baselines"]["baselines"]) == {"tfidf_lr", "student_gold_only"}
        assert ens["val_macro_f1_cross_fitted"] == ens["teacher_vs_baselines"]["teacher"]
        c = ens["student_kd_ensemble_minus_student_kd"]
        assert c["low"] <= c["delta"] <= c["high"]
        assert abs(c["delta"] - (m["student_kd_ensemble"]["macro_f1"] - m["student_kd"]["macro_f1"])) < 1e-9
        assert 1 / r["rows"]["classes"] <= ens["soft_label_top_p"]["teacher_ensemble"] <= 1
        # the gate's decision with its interval
        gate = r["gate"]
        assert gate["decision"] in ("promote", "hold") and gate["candidate"] in ("student", "baseline")
        c = gate["baseline_vs_student"]
        assert c["low"] <= c["delta"] <= c["high"] and c["units"] == r["rows"]["test"]
        assert ("kd_gain" in r["targets"]) == (r["regime"] == "scarce")
    full, scarce = report["runs"]
    assert scarce["rows"]["pool_gold"] < 0.1 * scarce["rows"]["pool"]
    assert full["rows"]["pool_gold"] == full["rows"]["pool"]
    table = out.with_suffix(".md").read_text()
    assert "| fashion_product_styles | subCategory | scarce | student_kd |" in table

    # The cache: a second run reuses the teachers and soft labels and only retrains the students.
    cached = sorted(p.name for p in (out.parent / "cache").iterdir())
    assert quality.main(["--smoke", "--datasets-dir", str(datasets_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out.parent / "cache").iterdir()) == cached
    again = json.loads(out.read_text())
    assert again["runs"][0]["models"]["teacher"]["macro_f1"] == full["models"]["teacher"]["macro_f1"]


def test_split_protocol_is_seeded_and_has_the_documented_shares():
    ids = [str(i) for i in range(20000)]
    split = [bd.split_of(i, 0) for i in ids]
    assert split == [bd.split_of(i, 0) for i in ids]
    assert split != [bd.split_of(i, 1) for i in ids]
    share = {s: split.count(s) / len(ids) for s in ("test", "val", "pool")}
    assert abs(share["test"] - 0.2) < 0.01 and abs(share["val"] - 0.1) < 0.01
    pool = [i for i, s in zip(ids, split) if s == "pool"]
    scarce = sum(bd.keeps_gold(i, "scarce", 0) for i in pool) / len(pool)
    assert abs(scarce - 0.05) < 0.005
    assert all(bd.keeps_gold(i, "full", 0) for i in pool)


def test_readme_table_block_is_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-quality:start -->\nold\n<!-- bench-quality:end -->\nafter\n")
    quality.update_readme(readme, "| new |\n")
    assert readme.read_text() == "intro\n<!-- bench-quality:start -->\n| new |\n<!-- bench-quality:end -->\nafter\n"


def test_family_row_budget_is_a_seeded_sample_in_window_order():
    import numpy as np

    from kd_tasks.stages.window import Window

    n = 50
    w = Window([f"r{i}" for i in range(n)], [f"text {i}" for i in range(n)], ["a"] * n,
               np.arange(n * 2, dtype=np.float32).reshape(n, 2), ["a", "b"], np.zeros(n, bool), ["2026-01-01"])
    s = quality.sample_rows(w, 20, seed=0)
    assert len(s.ids) == 20 and s.ids == sorted(s.ids, key=lambda i: int(i[1:]))
    assert s.ids == quality.sample_rows(w, 20, seed=0).ids != quality.sample_rows(w, 20, seed=1).ids
    assert [s.texts[k] for k in range(20)] == [f"text {i[1:]}" for i in s.ids]
    assert (s.teacher_logits[:, 0] == [2 * int(i[1:]) for i in s.ids]).all()
    assert quality.sample_rows(w, 0) is w and quality.sample_rows(w, n) is w
