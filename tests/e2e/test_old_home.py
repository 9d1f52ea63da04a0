"""A KD_HOME written before manifests, intents and featuriser versions keeps working: the previous
release's own code writes a night into it, then today's code reads, verifies, adopts and extends it."""
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import DS, ROOT, TINY_TEACHER_TRAIN, run_chain
from kd_tasks.storage import files, lake, registry
from kd_tasks.models import load_student

PREVIOUS_RELEASE = "6ae359f"  # the last commit before manifests

OLD_NIGHT = """
import sys
sys.path.insert(0, {code!r}); sys.path.insert(1, {tests!r})
from kd_tasks import warehouse
from kd_tasks.config import default_warehouse_uri
rows = warehouse.catalogue_rows(warehouse.read_fashion_styles({fashion!r})[:600], source="fashion",
                                text_column="productDisplayName", label_column="masterCategory", id_column="id",
                                end_date={ds!r}, days=3)
for r in rows[::4]:
    r["category"] = None
warehouse.load_products(default_warehouse_uri(), rows, replace=True)
from kd_tasks.nightly import bootstrap, resolve_use_case
bootstrap(resolve_use_case("product_category"), {ds!r}, default_warehouse_uri(), base_model={base!r}, train={train!r})
from conftest import run_chain
print(run_chain())
"""


@pytest.fixture
def old_home(kd_home, tmp_path, tiny_base, datasets_dir):
    code = tmp_path / "previous_release"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "kd_tasks", "sql"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.fail(f"commit {PREVIOUS_RELEASE} is not in this clone ({archive.stderr.decode()[:200]}); "
                    "clone with full history")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(code)
    tests = tmp_path / "previous_tests"
    tests.mkdir()
    conftest = subprocess.run(["git", "-C", str(ROOT), "show", f"{PREVIOUS_RELEASE}:tests/conftest.py"],
                              capture_output=True, check=True).stdout
    (tests / "conftest.py").write_bytes(conftest)
    script = OLD_NIGHT.format(code=str(code), tests=str(tests), fashion=str(datasets_dir / "fashion_product_styles"),
                              ds=DS, base=str(tiny_base),  # that release has no patience
                              train={k: v for k, v in TINY_TEACHER_TRAIN.items() if k != "patience"})
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "KD_HOME": str(kd_home)},
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not list(kd_home.rglob(files.FILES_MANIFEST)), "the previous release wrote no manifests"
    return kd_home


def test_an_old_home_is_verified_adopted_and_extended(old_home, capsys):
    from kd_tasks.cli import main

    old = registry.champion("product_category")  # verified by its content hash, then given a manifest
    assert files.has_manifest(old["path"])
    old_student = load_student(old["path"])
    assert old_student.featurizer == 1
    assert main(["report", "--ds", DS]) == 0 and "promoted version" in capsys.readouterr().out

    nxt = run_chain(ds="2024-01-11", run_id="today")  # today's code on yesterday's lake and registry
    report = json.loads(open(nxt["report"]).read())
    assert report["evaluation"]["champion_version"] == old["version"]
    assert "error" not in report["evaluation"]["models"]["champion"]
    assert report["evaluation"]["models"]["champion"]["macro_f1"] is not None
    extract = lake.extract_path("product_category", DS)
    assert files.has_manifest(extract.parent), "an old partition read today gets its manifest"
    assert load_student(old["path"]).logits(["Nike Men Black Running Shoes"]).tolist() == \
        old_student.logits(["Nike Men Black Running Shoes"]).tolist()
    assert main(["rollback", "--version", old["version"], "--reason", "back to the old champion"]) == 0
    assert registry.alias_version("product_category") == old["version"]
    outcomes = [e["outcome"] for e in registry.promotion_log("product_category")]
    assert outcomes[0] == "promoted" and outcomes[-1] == "rolled_back"
