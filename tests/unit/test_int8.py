"""int8 labelling: the text teacher quantised by ONNX Runtime, built once per teacher version into the
worker's cache, labelling under its own identity, close to the fp32 teacher."""
import logging

import numpy as np
import pytest

from conftest import DS
from kd_tasks.config import ConfigError
from kd_tasks.models import runtime
from kd_tasks.nightly import resolve_use_case
from kd_tasks.stages.extract import extract_partition
from kd_tasks.stages.soft_labels import generate_soft_labels
from kd_tasks.storage import lake


def test_int8_runs_on_the_cpu_only():
    assert runtime.label_device("auto", "int8") == "cpu"
    assert runtime.check_dtype("int8", "cpu") == "int8"
    with pytest.raises(ConfigError, match="label_dtype=int8 runs on the CPU"):
        runtime.check_dtype("int8", "cuda:0")
    assert runtime.labelling("0123456789ab", "int8") == "0123456789ab-int8"
    with pytest.raises(ConfigError, match="label_dtype 'int4' is unknown"):
        resolve_use_case("product_category", {"label_dtype": "int4"})


def test_int8_labels_live_apart_and_agree_with_the_fp32_teacher(kd_home, tiny_teacher):
    fp32 = resolve_use_case("product_category", {"extract_lookback_days": 3, "shard_rows": 200})
    int8 = resolve_use_case("product_category", {"extract_lookback_days": 3, "shard_rows": 200,
                                                 "label_dtype": "int8", "label_threads": 1})
    extract_partition(fp32, DS, f"sqlite:///{kd_home / 'warehouse.db'}")
    plain = generate_soft_labels(fp32, DS)
    quantised = generate_soft_labels(int8, DS)
    assert quantised["labelling"] == plain["labelling"] + "-int8" and quantised["labelled"] == [DS]
    assert {(r["dtype"], r["device"], r["threads"]) for r in quantised["runs"]} == {("int8", "cpu", 1)}
    assert {r["runtime"].split()[0] for r in quantised["runs"]} == {"onnxruntime"}
    assert {r["runtime"] for r in plain["runs"]} == {"torch"}
    assert (kd_home / "cache" / "int8" / plain["teacher_version"] / "model.onnx").is_file()
    a = [lake.read_soft_labels("product_category", plain["labelling"], DS, k, "") for k in range(3)]
    b = [lake.read_soft_labels("product_category", quantised["labelling"], DS, k, "") for k in range(3)]
    for (ids_a, logits_a, _), (ids_b, logits_b, prov) in zip(a, b):
        assert ids_a.equals(ids_b)
        assert prov["labelling"].endswith("-int8") and prov["run"]["dtype"] == "int8"
        assert (logits_a.argmax(1) == logits_b.argmax(1)).mean() >= 0.98
        assert np.abs(logits_a - logits_b).max() < 0.1 * np.abs(logits_a).max()
    assert generate_soft_labels(int8, DS)["reused"] == [DS]


def test_int8_shards_of_another_recipe_are_relabelled(kd_home, tiny_teacher, monkeypatch):
    uc = resolve_use_case("product_category", {"extract_lookback_days": 3, "label_dtype": "int8",
                                               "label_threads": 1})
    extract_partition(uc, DS, f"sqlite:///{kd_home / 'warehouse.db'}")
    recipe = runtime.INT8_RECIPE
    monkeypatch.setattr(runtime, "INT8_RECIPE", "an earlier recipe")
    assert generate_soft_labels(uc, DS)["labelled"] == [DS]
    assert generate_soft_labels(uc, DS)["reused"] == [DS]
    monkeypatch.setattr(runtime, "INT8_RECIPE", recipe)
    assert generate_soft_labels(uc, DS)["labelled"] == [DS]  # same labelling name, other numbers: relabelled
    assert lake.read_soft_labels("product_category", runtime.labelling(tiny_teacher["version"], "int8"), DS, 0,
                                 "")[2]["recipe"] == runtime.INT8_RECIPE


def test_the_int8_model_is_built_once_and_a_damaged_one_rebuilt(tmp_path, tiny_base, caplog):
    from transformers import AutoModelForSequenceClassification

    from kd_tasks.models.int8 import Int8Forward, quantized_model

    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=3)
    path = quantized_model(model, "0123456789ab", tmp_path)
    built = path.stat().st_mtime_ns
    assert quantized_model(model, "0123456789ab", tmp_path) == path and path.stat().st_mtime_ns == built
    path.write_bytes(path.read_bytes()[:1000])  # a torn copy
    with caplog.at_level(logging.WARNING, logger="kd_tasks.models.int8"):
        again = quantized_model(model, "0123456789ab", tmp_path)
    assert "is damaged" in caplog.text and again.stat().st_size > 1000
    ids = np.array([[101, 2417, 3797, 102], [101, 2417, 102, 0]], np.int64)
    logits = Int8Forward(again, 1)(ids, (ids > 0).astype(np.int64))
    assert logits.shape == (2, 3) and np.isfinite(logits).all()
    assert [p.name for p in (tmp_path / "int8").iterdir()] == ["0123456789ab"]  # no temporary folder left




def test_an_export_that_does_not_reproduce_the_teacher_is_refused(tmp_path, tiny_base, monkeypatch):
    """The build runs the exported graph beside the torch model on a padded batch of another shape; a
    graph that gives other logits (here: another model's) is refused and nothing is published."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from kd_tasks.models import int8

    model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=3)
    torch.manual_seed(1)
    other = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=3)
    export = int8._export
    monkeypatch.setattr(int8, "_export", lambda _model, path: export(other, path))
    with pytest.raises(RuntimeError, match="does not reproduce the teacher's logits"):
        int8.quantized_model(model, "0123456789ab", tmp_path)
    assert not list((tmp_path / "int8").iterdir())
