"""Bad input gets an error that names the fix; the champion and existing partitions stay untouched."""
import json

import numpy as np
import pyarrow as pa
import pytest

from conftest import DS, run_chain
from kd_tasks.storage import lake, registry
from kd_tasks.use_cases.product_category import USE_CASE as PRODUCT_CATEGORY
from kd_tasks.stages.extract import EmptyPartitionError, extract_partition
from kd_tasks.nightly import resolve_use_case
from kd_tasks.stages.soft_labels import NaNLogitsError, generate_soft_labels
from kd_tasks.storage.teachers import MANIFEST, TeacherError


def snapshot(home):
    """Every file under lake/ and registry/ with its bytes."""
    return {str(p.relative_to(home)): p.read_bytes() for sub in ("lake", "registry")
            for p in sorted((home / sub).rglob("*")) if p.is_file()}


@pytest.fixture
def with_champion(kd_home, tiny_teacher):
    first = run_chain()
    assert registry.champion("product_category") is not None, first
    return kd_home


def test_empty_window_fails_with_the_fix_and_writes_nothing(fashion_warehouse, kd_home):
    with pytest.raises(EmptyPartitionError, match=r"no rows .* window 2023-05-01\.\.2023-05-01.*on_empty='skip'"):
        extract_partition(PRODUCT_CATEGORY, "2023-05-01", fashion_warehouse)
    assert not lake.extract_dir("product_category", "2023-05-01").exists()


def test_query_without_the_label_column(fashion_warehouse, kd_home):
    uc = PRODUCT_CATEGORY.with_overrides(label_column="department")
    with pytest.raises(ValueError, match=r"needs \['department'\]; fix the query or the use case"):
        extract_partition(uc, DS, fashion_warehouse)


def test_teacher_without_weights(with_champion):
    before = snapshot(with_champion)
    teacher_dir = resolve_use_case("product_category").resolved_teacher_dir()
    (teacher_dir / "model.safetensors").unlink()
    with pytest.raises(TeacherError, match="has no weights .*run the kd_teacher_bootstrap DAG"):
        run_chain(run_id="after_breakage")
    assert snapshot(with_champion) == before


def test_missing_teacher(fashion_warehouse, kd_home):
    extract_partition(PRODUCT_CATEGORY, DS, fashion_warehouse)
    with pytest.raises(TeacherError, match="no teacher at .*kd_teacher_bootstrap"):
        generate_soft_labels(PRODUCT_CATEGORY, DS)


def test_corrupt_teacher_is_detected_by_its_version_hash(with_champion):
    teacher_dir = resolve_use_case("product_category").resolved_teacher_dir()
    with open(teacher_dir / "config.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(TeacherError, match="hash to .* but its manifest says .*corrupt"):
        run_chain(run_id="after_breakage")


def test_nan_logits_in_a_soft_label_partition(with_champion):
    uc = resolve_use_case("product_category")
    version = json.loads((uc.resolved_teacher_dir() / MANIFEST).read_text())["version"]
    path = lake.soft_label_path("product_category", version, DS)
    table = lake.read_partition(path, "soft-label", "")
    logits = table.column("logits").combine_chunks()
    values = logits.flatten().to_numpy().copy()
    values[3] = np.nan
    bad = table.set_column(2, "logits", pa.FixedSizeListArray.from_arrays(pa.array(values), logits.type.list_size))
    lake.write_partition(bad, path, lake.read_provenance(path))
    champion_before = registry.champion("product_category")
    with pytest.raises(NaNLogitsError, match=f"1 of .* rows have NaN/inf logits; delete that file and rerun "
                                             f"generate_soft_labels for ds={DS}"):
        run_chain(run_id="after_breakage")
    assert registry.champion("product_category") == champion_before


def test_teacher_emitting_nan_writes_no_partition(kd_home, tiny_teacher):
    import torch
    from safetensors.torch import load_file, save_file

    uc = resolve_use_case("product_category", {"extract_lookback_days": 3})
    teacher_dir = uc.resolved_teacher_dir()
    weights = load_file(teacher_dir / "model.safetensors")
    name = next(k for k in weights if k.startswith("classifier") and k.endswith("bias"))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, teacher_dir / "model.safetensors", metadata={"format": "pt"})
    manifest = json.loads((teacher_dir / MANIFEST).read_text())
    from kd_tasks.storage.files import content_version

    manifest["version"] = content_version(teacher_dir)  # a consistent but broken teacher
    (teacher_dir / MANIFEST).write_text(json.dumps(manifest))
    extract_partition(uc, DS, f"sqlite:///{kd_home / 'warehouse.db'}")
    with pytest.raises(NaNLogitsError, match="teacher weights are corrupt; re-run kd_teacher_bootstrap"):
        generate_soft_labels(uc, DS)
    assert not lake.soft_label_path("product_category", manifest["version"], DS).exists()


def test_unlabelled_window_cannot_bootstrap_a_teacher(kd_home):
    from kd_tasks.loaders import catalogue
    from kd_tasks.nightly import bootstrap

    uri = f"sqlite:///{kd_home / 'wh.db'}"
    catalogue.load_products(uri, [{"product_id": "1", "title": "Red Shirt", "category": None,
                                   "listed_on": DS, "source": "t"}])
    with pytest.raises(ValueError, match="no gold-labelled rows in .* load labelled data"):
        bootstrap(PRODUCT_CATEGORY, DS, uri)
    assert not (kd_home / "teachers").exists()


def test_a_day_without_behaviour_events_is_an_empty_partition(kd_home):
    import datetime as dt

    from kd_tasks.use_cases.purchase_intent import USE_CASE as PURCHASE_INTENT
    from kd_tasks.loaders.events import _event, load_events
    from kd_tasks.stages.extract import EmptyPartitionError, extract_partition

    uri = f"sqlite:///{kd_home / 'wh.db'}"
    load_events(uri, [_event("u", "i", "c", "pv", dt.datetime(2017, 11, 25, 10), "t")])
    with pytest.raises(EmptyPartitionError, match="no rows for purchase_intent in window 2017-12-20..2017-12-20"):
        extract_partition(PURCHASE_INTENT, "2017-12-20", uri)
    assert not (kd_home / "lake" / "purchase_intent" / "extract").exists()


def test_labels_of_two_dtypes_never_meet_in_one_window(kd_home, tiny_teacher):
    """bf16 labels live under their own labelling; a plan made for fp32 refuses to label after the dtype
    changed, and collecting refuses results of another labelling."""
    from kd_tasks.stages.soft_labels import collect, label_shard, plan_shards
    from kd_tasks.storage.files import IntegrityError

    fp32 = resolve_use_case("product_category", {"extract_lookback_days": 3, "shard_rows": 200})
    bf16 = resolve_use_case("product_category", {"extract_lookback_days": 3, "shard_rows": 200,
                                                 "label_dtype": "bf16"})
    extract_partition(fp32, DS, f"sqlite:///{kd_home / 'warehouse.db'}")
    plan = plan_shards(fp32, DS)
    assert [p["shard"] for p in plan["shards"]] == [0, 1, 2] and "-" not in plan["labelling"]
    with pytest.raises(IntegrityError, match="the teacher or label_dtype changed during the run"):
        label_shard(bf16, DS, 0, plan["labelling"])
    done = generate_soft_labels(bf16, DS)
    assert done["labelling"] == plan["labelling"] + "-bf16" and done["labelled"] == [DS]
    assert {r["dtype"] for r in done["runs"]} == {"bf16"}
    assert not lake.soft_label_dir("product_category", plan["labelling"], DS).exists()  # fp32 untouched
    bf16_results = [label_shard(bf16, DS, k, done["labelling"]) for k in range(3)]
    assert {r["status"] for r in bf16_results} == {"reused"}
    with pytest.raises(IntegrityError, match="never mixes labellings"):
        collect(plan, bf16_results)
    with pytest.raises(IntegrityError, match="soft labels missing for shards"):
        collect(plan, [])


def test_duplicate_ids_are_found_across_shards_and_a_hash_collision_refuses_nothing():
    """The extract's uniqueness check holds 64-bit hashes, not a hash table of every id; equal hashes
    are confirmed on the ids themselves (in CPython hash(-1) == hash(-2))."""
    import pyarrow as pa

    from kd_tasks.stages.extract import DuplicateIds

    check = DuplicateIds()
    check.add(pa.array(["a", "b", "c"]))
    check.add(pa.chunked_array([pa.array(["d", "b"]), pa.array(["e", "a"])]))
    assert check.found() == ["b", "a"]
    assert hash(-1) == hash(-2)
    colliding = DuplicateIds()
    colliding.add(pa.array([-1, 5], pa.int64()))
    colliding.add(pa.array([-2, 6], pa.int64()))
    assert colliding.found() == []
    assert DuplicateIds().found() == []
