"""The scale benchmark's judgement of its measurements: the quality checks decide whether int8 and the
fused step count, and a run measured before its quality checks existed is judged again with them."""
import json

from benchmarks import scale


def _measured() -> dict:
    stage = {"use_case": "product_category", "engine": "sqlite", "dtype": "fp32", "batch": None}
    stages = [{**stage, "stage": name, "size": size, "rows": size, "wall_s": size / rate, "rows_per_s": rate,
               "peak_rss_mb": rss}
              for name, rate in (("extract", 100_000.0), ("train", 9_000.0))
              for size, rss in ((100_000, 400.0), (1_000_000, 500.0))]
    stages += [{"use_case": "purchase_intent", "stage": "extract", "engine": "sqlite", "size": days, "rows": days,
                "wall_s": 1.0, "rows_per_s": rate, "peak_rss_mb": 300.0} for days, rate in ((4, 50_000.0),
                                                                                           (8, 30_000.0))]
    return {"machine": {"cpu": "x86_64", "threads": 2, "load_avg": [0.5, 0.5, 0.5]},
            "measured_at": "2026-11-29 15:00 UTC", "sizes": [100_000, 1_000_000], "events_per_day": 1000,
            "stages": stages, "student_epochs": {"student_epoch_speedup": 2.0}, "celery": {"celery_2_vs_1_wall": 0.6},
            "teacher": {"softlabel_vs_bare": 0.95, "softlabel_speedup_sorted": 1.4, "softlabel_speedup_int8": 3.0,
                        "int8_factor": 2.1, "int8_top1_agreement": 0.998}}


def _checks(path, int8: float, fused: float):
    path.write_text(json.dumps({"date": "2026-11-29", "machine": {"cpu": "x86_64"},
                                "int8": {"student_kd_macro_f1_delta_max_abs": int8},
                                "distill_check": {"delta_max_abs": fused}}))
    return path


def test_int8_and_the_fused_step_count_only_under_their_quality_bars(tmp_path):
    missing = scale.judge(_measured(), tmp_path / "none.json")["targets"]
    assert missing["int8_student_quality_delta_max"]["met"] is None
    assert missing["softlabel_speedup"] == {"value": 1.4, "goal": ">= 1.5", "met": False}  # sorted alone
    assert missing["student_epoch_speedup"]["met"] is None  # fast, but its quality is not known

    passed = scale.judge(_measured(), _checks(tmp_path / "ok.json", 0.003, 0.001))["targets"]
    assert passed["softlabel_speedup"] == {"value": 3.0, "goal": ">= 1.5", "met": True}  # int8 counts
    assert passed["student_epoch_speedup"]["met"] is True and passed["student_quality_delta_max"]["met"] is True

    moved = scale.judge(_measured(), _checks(tmp_path / "moved.json", 0.007, 0.006))["targets"]
    assert moved["softlabel_speedup"]["value"] == 1.4 and moved["int8_student_quality_delta_max"]["met"] is False
    assert moved["student_epoch_speedup"]["met"] is False
    # the purchase-intent extract over 8 days against 4 counts for linearity (30k/50k rows/s)
    assert passed["linear_rows_per_s_1m_vs_100k"]["value"] == 0.6


def test_a_run_is_judged_again_with_quality_checks_recorded_after_it(tmp_path, kd_home, monkeypatch):
    monkeypatch.setattr(scale, "ROOT", tmp_path)  # the README it rewrites
    (tmp_path / "README.md").write_text(f"intro\n{scale.README_BEGIN}\nold\n{scale.README_END}\nafter\n")
    run = tmp_path / "scale.json"
    first = scale.judge(_measured(), tmp_path / "none.json")  # measured before the quality checks existed
    run.write_text(json.dumps(first))
    checks = _checks(tmp_path / "checks.json", 0.002, 0.001)
    assert scale.main(["--rejudge", str(run), "--quality-checks", str(checks), "--update-readme"]) == 0
    again = json.loads(run.read_text())
    assert again["stages"] == first["stages"] and again["measured_at"] == first["measured_at"]
    assert again["quality_checks"] == {"path": str(checks), "date": "2026-11-29", "machine": {"cpu": "x86_64"}}
    assert again["targets"]["softlabel_speedup"]["met"] is True
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("intro\n") and readme.endswith("after\n") and "old" not in readme
    assert "| softlabel_speedup | 3.0 | >= 1.5 | yes |" in readme
