"""Damaged files the pipeline wrote: each is detected when read, and healed or refused with the file
named and the fix. Bytes are flipped in, or cut from, real files of a real night, on a local home and
on an S3 home (whole nights, promotions included, on the S3 server)."""
import json

import pytest

from conftest import ACCEPT_WEAK, DS, run_chain
from kd_tasks.storage import files, lake, registry
from kd_tasks.home import default_warehouse_uri
from kd_tasks.nightly import extract, resolve_use_case
from kd_tasks.storage.fs import as_path
from kd_tasks.storage.teachers import MANIFEST, TeacherError


def flip(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])


@pytest.fixture
def night(home, tiny_teacher):
    first = run_chain(run_id="first")
    assert first["evaluated"]["action"] == "promote"
    return first


def test_changed_soft_label_pages_are_relabelled_and_train_the_same_student(night):
    soft = lake.soft_label_path("product_category", night["labelled"]["teacher_version"], DS)
    flip(soft, 0.3)
    again = run_chain(run_id="again")
    assert again["labelled"]["healed"] == [DS] and again["labelled"]["labelled"] == [DS]
    from kd_tasks.stages.report import format_report

    text = format_report(json.loads(as_path(again["report"]).read_text()))
    assert f"relabelled because their partitions failed verification: {DS}" in text
    assert again["distilled"]["student_version"] == night["distilled"]["student_version"]
    lake.check_partition(soft, "soft-label", "")  # sound again


def test_a_truncated_extract_of_an_earlier_day_is_refused_with_the_file_and_the_fix(night):
    uc = resolve_use_case("product_category", {"extract_lookback_days": 3, **ACCEPT_WEAK})
    extract(uc, "2024-01-09", default_warehouse_uri())
    earlier = lake.extract_path("product_category", "2024-01-09")
    truncate(earlier)
    with pytest.raises(files.IntegrityError, match=f"extract partition {earlier} has .* bytes but was written with "
                                                   ".*re-extract it: run the nightly DAG of product_category for "
                                                   "ds=2024-01-09 again"):
        run_chain(run_id="after")


def test_a_damaged_champion_does_not_block_the_next_night(night):
    champion = registry.alias_version("product_category")
    flip(registry.version_dir("product_category", champion) / "student.safetensors", 0.9)
    nxt = run_chain(ds="2024-01-11", run_id="next", seed=1)
    report = json.loads(as_path(nxt["report"]).read_text())
    assert "error" in report["evaluation"]["models"]["champion"]
    check = next(c for c in report["gate"]["checks"] if c["name"] == "champion_regression")
    assert check["passed"] and "is damaged and was not compared" in check["detail"]
    assert report["outcome"]["outcome"] == "promoted"
    assert registry.champion("product_category")["version"] == nxt["distilled"]["student_version"]


def test_a_truncated_teacher_manifest_is_named_and_the_bootstrap_heals_it(night, tiny_base):
    from conftest import TINY_TEACHER_TRAIN
    from kd_tasks.nightly import bootstrap

    uc = resolve_use_case("product_category")
    manifest = uc.resolved_teacher_dir() / MANIFEST
    truncate(manifest, 0.4)
    with pytest.raises(TeacherError, match=f"teacher manifest {manifest} is damaged .*kd_teacher_bootstrap"):
        run_chain(run_id="after")
    out = bootstrap(uc, DS, default_warehouse_uri(), base_model=str(tiny_base), train=TINY_TEACHER_TRAIN)
    assert out["trained"] is True
    assert run_chain(run_id="healed")["labelled"]["teacher_version"] == out["version"]


def test_changed_student_weights_in_the_run_directory_are_never_registered(home, tiny_teacher):
    from kd_tasks import nightly

    uc = resolve_use_case("product_category", {"extract_lookback_days": 3, **ACCEPT_WEAK})
    nightly.extract(uc, DS, default_warehouse_uri())
    distilled = nightly.distill(uc, DS, nightly.soft_labels(uc, DS, "run")["run_dir"])
    flip(as_path(distilled["run_dir"]) / "student" / "student.safetensors", 0.8)
    with pytest.raises(files.IntegrityError, match="student.*hash to .* not to version .*clear the distill_student"):
        nightly.evaluate(uc, DS, distilled["run_dir"], False)
    assert registry.alias_version("product_category") is None


def test_one_damaged_report_does_not_break_the_report_command(night, capsys):
    from kd_tasks.cli import main

    run_chain(ds="2024-01-11", run_id="next")
    truncate(as_path(night["report"]))
    assert main(["report", "--ds", "2024-01-11"]) == 0
    out = capsys.readouterr()
    assert "use case product_category  ds=2024-01-11" in out.out and "skipped: run report" in out.err
    assert main(["report", "--ds", DS]) == 1
