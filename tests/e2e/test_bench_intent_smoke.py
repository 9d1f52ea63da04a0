"""The purchase-intent benchmark's smoke variant: the code of `make bench-intent` on four Taobao days."""
import json

from benchmarks import intent


def test_smoke_benchmark_writes_the_documented_json(tmp_path, datasets_dir, kd_home):
    out = tmp_path / "intent-smoke.json"
    assert intent.main(["--smoke", "--datasets", str(datasets_dir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["machine"]["cpus"] >= 1
    assert [(r["dataset"], r["regime"]) for r in report["runs"]] == [
        ("taobao_userbehavior_sample", "history"), ("taobao_userbehavior_sample", "nightly")]
    for r in report["runs"]:
        m = r["models"]
        assert set(m) == {"teacher", "student_kd", "student_hard", "popularity", "teacher_serving_only"}
        for name in ("teacher", "student_kd", "student_hard", "popularity"):
            assert 0.0 <= m[name]["auc"] <= 1.0 and 0.0 < m[name]["pr_auc"] <= 1.0, name
            assert m[name]["p50_ms_b1"] > 0, name
        for name in ("teacher", "student_kd", "student_hard"):
            assert m[name]["logloss"] > 0 and 0 <= m[name]["ece"] <= 1, name
        assert m["teacher"]["params"] > 50 * m["student_kd"]["params"] == 50 * m["student_hard"]["params"]
        assert m["popularity"]["params"] == 0 and m["popularity"]["logloss"] is None
        # test days come after every training day; the nightly students see the newest partition only
        assert r["test_days"][0] > r["teacher_train_days"][1] >= r["student_train_days"][1]
        assert r["test_positives"] > 10
        assert r["kd_gain_auc"] == m["student_kd"]["auc"] - m["student_hard"]["auc"]
        assert r["targets"]["kd_gain_auc"] == 0.005
    history, nightly = report["runs"]
    assert nightly["student_train_rows"] < history["student_train_rows"]
    # privileged features: the teacher ranks the test day's buyers far better than any serving-time model
    assert history["models"]["teacher"]["auc"] > history["models"]["teacher_serving_only"]["auc"] + 0.03
