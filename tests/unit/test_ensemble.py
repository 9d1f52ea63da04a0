"""A teacher ensemble is a declaration: members trained on the same gold rows, calibrated and weighed
on the validation rows, one set of soft labels whose provenance names every member's version."""
import json

import numpy as np

from conftest import DS, TINY_TEACHER_TRAIN
from kd_tasks.models import load_teacher
from kd_tasks.models.ensemble import (calibrate_and_weigh, combine, cross_fitted, fit_temperature, fold_of,
                                     log_softmax, weight_grid)
from kd_tasks.models.training import Validation
from kd_tasks.nightly import bootstrap, resolve_use_case
from kd_tasks.stages.extract import extract_partition
from kd_tasks.stages.soft_labels import generate_soft_labels
from kd_tasks.storage import files, lake


def test_ensemble_teacher_trains_weighs_and_records_its_members(kd_home, fashion_warehouse, tiny_base):
    uc = resolve_use_case("product_category", {"extract_lookback_days": 3}).with_overrides(
        teacher_family="minilm_tfidf_ensemble")
    out = bootstrap(uc, DS, fashion_warehouse, base_model=str(tiny_base), train=TINY_TEACHER_TRAIN)
    assert out["published"] and set(out["verdict"]["baselines"]) == {"tfidf_lr", "student_gold_only"}
    teacher = load_teacher(uc.resolved_teacher_dir())
    directory = uc.resolved_teacher_dir()
    spec = json.loads((directory / "ensemble.json").read_text())
    assert [m["family"] for m in spec["members"]] == ["hf_sequence_classifier", "tfidf_lr"]
    assert abs(sum(m["weight"] for m in spec["members"]) - 1) < 1e-9
    for m in spec["members"]:  # each member is a teacher directory of its own, named by its content
        assert files.content_version(directory / m["dir"]) == m["version"]
        assert 0.25 <= m["temperature"] <= 8
    manifest = json.loads((directory / "kd_manifest.json").read_text())
    assert manifest["validation"]["members"].keys() == {"hf_sequence_classifier", "tfidf_lr"}
    assert manifest["validation"]["best"] >= max(manifest["validation"]["members"].values()) - 1e-9
    # the teacher gate scored the ensemble on rows that did not choose its weights (cross-fitted)
    assert out["verdict"]["teacher"] == manifest["validation"]["cross_fitted"]

    # the ensemble's logits are the weighted sum of its members' calibrated log-probabilities
    texts = ["Nike Men Black Running Shoes", "Titan Women Analog Watch", "Lavie Women Brown Handbag"]
    parts = [log_softmax(t.logits(texts) / m["temperature"]) for m, t in zip(spec["members"], teacher.teachers)]
    expected = sum(m["weight"] * p for m, p in zip(spec["members"], parts))
    assert np.allclose(teacher.logits(texts), expected, atol=1e-5)

    # one set of soft labels, its provenance naming the ensemble and every member's version
    extract_partition(uc, DS, fashion_warehouse)
    generate_soft_labels(uc, DS)
    provenance = lake.read_provenance(lake.soft_label_path(uc.name, teacher.version, DS))
    assert provenance["teacher_version"] == teacher.version
    assert provenance["teacher_members"] == {m["family"]: m["version"] for m in spec["members"]}


def test_temperature_and_weight_grid():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 2000)
    sharp = np.eye(4)[gold] * 6 + rng.normal(0, 3, (2000, 4))  # over-confident logits: T > 1 calibrates them
    assert fit_temperature(sharp, gold) > 1
    assert fit_temperature(sharp / 10, gold) < 1
    grid = weight_grid(2)
    assert len(grid) == 21 and (0.0, 1.0) in grid and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert len(weight_grid(3)) == 66


def test_cross_fitted_logits_score_each_fold_with_settings_fitted_on_the_others():
    rng = np.random.default_rng(3)
    n, classes = 90, 3
    gold = rng.integers(0, classes, n)
    names = [str(c) for c in range(classes)]
    check = Validation(None, [str(g) for g in gold], names, "multiclass", "macro_f1")
    noise = [rng.normal(0, 1, (n, classes)) for _ in range(2)]  # members that know nothing
    honest = cross_fitted(noise, check, gold)
    fold = fold_of(check)
    assert set(fold) == {0, 1, 2, 3, 4}
    for k in range(5):  # each fold's rows: the settings fitted on the other folds' rows only
        fit, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        sub = Validation(None, [str(g) for g in gold[fit]], names, "multiclass", "macro_f1")
        temps, weights, _ = calibrate_and_weigh([z[fit] for z in noise], sub, gold[fit])
        assert np.allclose(honest[held], combine([log_softmax(z[held] / t) for z, t in zip(noise, temps)], weights))
    # weights chosen on the rows flatter noise; the cross-fitted score does not
    _, _, in_sample = calibrate_and_weigh(noise, check, gold)
    assert in_sample > check.score(honest) + 0.02
