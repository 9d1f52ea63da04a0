"""Fault injection: a real stage in its own process is killed with SIGKILL at a named point (mid
partition write, mid version copy, between the alias move and the log append, mid teacher publish);
running it again must reach the state an uninterrupted run reaches, with nothing lost and nothing
left behind that a later run trips on. Every case runs on a local home and on an S3 home."""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from conftest import DS, ROOT, S3_BUCKET, S3_ENV, TINY_TEACHER_TRAIN
from kd_tasks.storage import files, registry
from kd_tasks.storage.fs import S3Path, is_remote
from kd_tasks import nightly
from kd_tasks.home import default_warehouse_uri
from kd_tasks.storage.teachers import MANIFEST

sys.path.insert(0, str(Path(__file__).parent))
import crash_driver  # noqa: E402

DRIVER = Path(__file__).parent / "crash_driver.py"


@pytest.fixture(scope="module", params=["local", "s3"])
def base_home(request, tmp_path_factory, fashion_records, tiny_base):
    """A KD_HOME with a warehouse, a tiny teacher, and a night distilled and evaluated up to promotion;
    on local disk, then on the S3 server (its warehouse in a local folder beside it)."""
    from kd_tasks.loaders import catalogue

    root = tmp_path_factory.mktemp("crash")
    saved = {k: os.environ.get(k) for k in ("KD_HOME", "KD_LOCAL_DIR", "AWS_ENDPOINT_URL_S3", *S3_ENV)}
    if request.param == "s3":
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL_S3=request.getfixturevalue("s3_endpoint"))
        home = S3Path(f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}/base")
    else:
        home = root / "base"
    os.environ["KD_HOME"] = str(home)
    os.environ["KD_LOCAL_DIR"] = str(root / "base-local")
    try:
        rows = catalogue.catalogue_rows(fashion_records[:600], source="fashion", text_column="productDisplayName",
                                        label_column="masterCategory", id_column="id", end_date=DS, days=3)
        for r in rows[::4]:
            r["category"] = None
        catalogue.load_products(default_warehouse_uri(), rows, replace=True)
        uc = nightly.resolve_use_case("product_category", crash_driver.PARAMS)
        nightly.bootstrap(uc, DS, default_warehouse_uri(), base_model=str(tiny_base), train=TINY_TEACHER_TRAIN)
        nightly.extract(uc, DS, default_warehouse_uri())
        distilled = nightly.distill(uc, DS, nightly.soft_labels(uc, DS, "night")["run_dir"])
        nightly.evaluate(uc, DS, distilled["run_dir"], False)
        yield home, distilled, root / "base-local"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _local(home):
    """The local folder (warehouse, cache) that goes with a home."""
    return LOCAL[str(home)]


LOCAL: dict[str, Path] = {}


def _fresh(base_home, tmp_path, name):
    base, distilled, base_local = base_home
    if is_remote(base):
        home = base.parent.parent / uuid.uuid4().hex[:12] / name
        s3 = base.store.fs
        for info in s3.get_file_info(pafs.FileSelector(base.key, recursive=True)):
            if info.type == pafs.FileType.File:
                s3.copy_file(info.path, home.key + info.path[len(base.key):])
    else:
        home = tmp_path / name
        shutil.copytree(base, home)
    LOCAL[str(home)] = tmp_path / f"{name}-local"
    shutil.copytree(base_local, LOCAL[str(home)])
    distilled = json.loads(json.dumps(distilled).replace(str(base), str(home)))
    return home, distilled


def _crash(home, stage, args, fault):
    env = {**os.environ, "KD_HOME": str(home), "KD_LOCAL_DIR": str(_local(home)), files.FAULT_ENV: fault,
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(DRIVER), stage, json.dumps(args)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == -9, f"{stage} was not killed at {fault}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


def _state(home):
    """What a user relies on: every partition's rows, the registry's versions, alias and moves, the
    teacher's version; plus any hidden leftover (none may remain)."""
    every = ([(str(p.relative_to(home)), p) for p, _ in home.walk_files()] if is_remote(home)
             else [(str(p.relative_to(home)), p) for p in home.rglob("*")])
    state = {"leftovers": sorted(rel for rel, p in every if any(part.startswith(".") for part in rel.split("/"))
                                 and p.name != ".lock")}
    for rel, p in sorted(every):
        if rel.startswith("lake/") and rel.endswith(".parquet"):
            table = pq.read_table(pa.BufferReader(p.read_bytes()))
            state[rel] = table.replace_schema_metadata(None).to_pylist()
    state["versions"] = registry.known_versions("product_category", home)
    for v in state["versions"]:
        registry.verify_version("product_category", v, home)
    state["production"] = registry.alias_version("product_category", home)
    state["moves"] = [(e["outcome"], e["version"]) for e in registry.promotion_log("product_category", home)
                      if e["outcome"] in ("promoted", "rolled_back")]
    state["teacher"] = json.loads((home / "teachers" / "product_category" / MANIFEST).read_bytes())["version"]
    return state


def _in(home, fn, *args):
    old = {k: os.environ.get(k) for k in ("KD_HOME", "KD_LOCAL_DIR")}
    os.environ.update(KD_HOME=str(home), KD_LOCAL_DIR=str(_local(home)))
    try:
        return fn(*args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


CASES = [
    ("extract", "shards_written"),  # every shard is written in the temporary folder, the manifest is not
    ("extract", "partition_swap"),  # the complete folder is about to replace the old one
    ("soft_labels", "before_replace:part-0.parquet"),
    ("soft_labels", "partition_written"),
    ("promote", "version_copied"),  # mid version copy
    ("promote", "intent_logged"),  # the intent is logged, the alias has not moved
    ("promote", "alias_moved"),  # between the alias move and the log append
]


@pytest.mark.parametrize("stage,fault", CASES, ids=[f"{s}@{f.split(':')[0]}" for s, f in CASES])
def test_a_killed_stage_run_again_reaches_the_uninterrupted_state(base_home, tmp_path, monkeypatch, stage, fault):
    monkeypatch.setenv("KD_HOME", str(tmp_path))
    reference, ref_distilled = _fresh(base_home, tmp_path, "reference")
    crashed, distilled = _fresh(base_home, tmp_path, "crashed")
    for home in (reference, crashed):
        if stage == "soft_labels":  # the teacher labels the window afresh
            files.remove_tree(home / "lake" / "product_category" / "soft_labels")
        if stage == "extract":
            files.remove_tree(home / "lake" / "product_category" / "extract" / f"ds={DS}")
    args = {"ds": DS, "run_id": "night"}
    expected = _in(reference, crash_driver.run, stage, {**args, "distilled": ref_distilled})
    _crash(crashed, stage, {**args, "distilled": distilled}, fault)
    again = _in(crashed, crash_driver.run, stage, {**args, "distilled": distilled})
    assert _state(crashed) == _state(reference)
    if stage == "promote":  # the retry reports the outcome the uninterrupted run reported
        assert again["outcome"] == expected["outcome"] == "promoted" and again["version"] == expected["version"]
        if fault == "alias_moved":
            assert again["already"] is True
            assert registry.promotion_log("product_category", crashed)[-1]["repaired"] is True


@pytest.mark.parametrize("fault", ["teacher_written", "teacher_swap"])
def test_a_teacher_publish_killed_midway_leaves_a_teacher_at_its_path(base_home, tmp_path, monkeypatch, fault,
                                                                      tiny_base):
    monkeypatch.setenv("KD_HOME", str(tmp_path))
    reference, _ = _fresh(base_home, tmp_path, "reference")
    crashed, _ = _fresh(base_home, tmp_path, "crashed")
    retrain = {"ds": DS, "base_model": str(tiny_base), "force": True, "train": {**TINY_TEACHER_TRAIN, "seed": 1}}
    expected = _in(reference, crash_driver.run, "bootstrap", retrain)
    _crash(crashed, "bootstrap", retrain, fault)
    if fault == "teacher_swap" and is_remote(crashed):  # killed before the manifest's upload: no teacher there
        assert not (crashed / "teachers" / "product_category" / MANIFEST).exists()
    elif fault == "teacher_swap":  # killed between the two renames: nothing at the teacher's path
        assert not (crashed / "teachers" / "product_category").exists()
    # the next stage that needs the teacher finds one (the new one if it was complete), a retrain the same
    again = _in(crashed, crash_driver.run, "bootstrap", {**retrain, "force": fault == "teacher_written"})
    assert again["version"] == expected["version"]
    assert _state(crashed) == _state(reference)
