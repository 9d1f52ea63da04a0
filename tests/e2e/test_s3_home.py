"""``KD_HOME=s3://bucket/prefix`` against a real S3 API server on 127.0.0.1 (moto's): the conditional
writes the registry's compare-and-swap rests on and a lost race at the worst moment, then nights through
Airflow with the credentials from an Airflow connection, a backfill's candidate, rollback and export."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ACCEPT_WEAK, DS, ROOT, airflow_object_store_env, run_chain
from kd_tasks.storage import files, fs, registry

AIRFLOW = str(Path(sys.executable).parent / "airflow")
SECRET = "kd-S3-secret-7Qx2-never-shown"


def test_conditional_writes_on_the_s3_server(s3_home):
    """The compare-and-swap the registry builds on, step by step (the test server, moto, does not make
    two truly simultaneous conditional writes exclusive: `make bench-s3-cas` measures it, so racing
    processes are tested on the local home and the S3 race is interleaved by hand below)."""
    store = s3_home.store
    key = (s3_home / "alias.json").key
    first = store.put_if(key, b"first", None)  # If-None-Match: * creates it
    with pytest.raises(fs.PreconditionFailed, match="changed since it was read"):
        store.put_if(key, b"second creation", None)  # exists now
    second = store.put_if(key, b"second", first)  # If-Match on the ETag read
    with pytest.raises(fs.PreconditionFailed):
        store.put_if(key, b"stale writer", first)  # that ETag is gone
    assert store.get(key) == (b"second", second)


def test_a_promotion_whose_alias_moved_after_it_read_it_loses_on_s3(s3_home, tmp_path, monkeypatch):
    """Two promotions interleaved at the worst moment: A has read the alias and logged its intent when
    B moves the alias; A's conditional write is refused, A is logged as lost, B stays in production."""
    def model(name):
        d = tmp_path / name
        d.mkdir()
        (d / "student.safetensors").write_bytes(name.encode())
        return d, files.content_version(d)

    (a, va), (b, vb) = model("a"), model("b")
    real = files.fault_point

    def b_moves_first(point):
        if point == "intent_logged" and registry.alias_version("uc", s3_home) is None:
            monkeypatch.setattr(files, "fault_point", real)
            registry.promote("uc", b, vb, {"run_id": "b"}, expected_champion=None, home=s3_home)
        real(point)

    monkeypatch.setattr(files, "fault_point", b_moves_first)
    with pytest.raises(registry.PromotionConflict, match=f"production moved to {vb} while this run was moving it"):
        registry.promote("uc", a, va, {"run_id": "a"}, expected_champion=None, home=s3_home)
    assert registry.alias_version("uc", s3_home) == vb
    log = registry.promotion_log("uc", s3_home, intents=True)
    assert sorted(e["outcome"] for e in log) == ["intent", "intent", "intent_aborted", "lost_race", "promoted"]
    assert {e["version"] for e in log if e["outcome"] in ("lost_race", "intent_aborted")} == {va}
    assert sorted(registry.known_versions("uc", s3_home)) == sorted([va, vb])  # the loser is kept, not lost


def _everything(home) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(home)), p.read_bytes()) for p, _ in home.walk_files()]


@pytest.mark.slow
def test_nights_on_s3_promote_record_candidates_roll_back_and_export(airflow_db, s3_home, s3_endpoint, tiny_teacher,
                                                                     tmp_path, monkeypatch):
    from kd_tasks.stages.export import export_production
    from kd_tasks.use_cases import get_use_case

    teacher = tiny_teacher["version"]
    assert (s3_home / "teachers" / "product_category" / "kd_manifest.json").is_file()

    # a night through Airflow: credentials, endpoint and region come from an Airflow AWS connection only
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(airflow_object_store_env(s3_endpoint, SECRET))
    night = subprocess.run([AIRFLOW, "dags", "test", "kd_product_category_nightly", DS, "-c",
                            json.dumps({"extract_lookback_days": 3, **ACCEPT_WEAK})], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    out = night.stdout + night.stderr
    assert night.returncode == 0, "\n".join(line for line in out.splitlines()
                                            if "rror" in line or "Traceback" in line)[-6000:]
    champion = registry.alias_version("product_category")
    assert champion is not None
    log = registry.promotion_log("product_category")
    assert [e["outcome"] for e in log] == ["promoted"] and log[0]["version"] == champion
    assert registry.verify_version("product_category", champion) == registry.version_dir("product_category", champion)
    report = json.loads(next(p for p, _ in (s3_home / "runs" / "product_category").walk_files()
                             if p.name == "report.json").read_bytes())
    assert report["outcome"]["outcome"] == "promoted" and report["evaluation"]["teacher_version"] == teacher
    # the worker keeps the teacher it downloaded, keyed by its version, in its local cache
    assert (Path(os.environ["KD_LOCAL_DIR"]) / "cache" / "teachers" / teacher / "kd_manifest.json").is_file()

    # a backfill night records a candidate and leaves production where it is
    back = run_chain(ds="2024-01-09", run_id="backfill__2024-01-09", action={"is_backfill": True}, seed=3)
    assert back["evaluated"]["action"] == "candidate"
    assert registry.alias_version("product_category") == champion
    assert registry.promotion_log("product_category")[-1]["outcome"] == "candidate"

    # a later night promotes over it; rollback through the CLI puts the first champion back
    nxt = run_chain(ds="2024-01-11", run_id="next", seed=1)
    assert nxt["evaluated"]["action"] == "promote"
    second = registry.alias_version("product_category")
    assert second == nxt["distilled"]["student_version"] != champion
    cli = subprocess.run([sys.executable, "-m", "kd_tasks.cli", "rollback", "--use-case", "product_category",
                          "--version", champion, "--reason", "s3 rollback test"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert registry.alias_version("product_category") == champion
    assert [e["outcome"] for e in registry.promotion_log("product_category")] == [
        "promoted", "candidate", "promoted", "rolled_back"]

    exported = export_production(get_use_case("product_category"))
    assert exported["version"] == champion and exported["path"].startswith("s3://")
    assert fs.as_path(exported["path"]).is_file()
    files.verify(registry.export_dir("product_category", champion), "export", "")

    # nothing was left half written, and the secret is in no output, no local file and no object
    assert files.sweep(s3_home, stale_after_s=0) == []
    assert SECRET not in out
    local = [p for p in Path(os.environ["KD_LOCAL_DIR"]).rglob("*")
             if p.is_file() and SECRET.encode() in p.read_bytes()]
    airflow = [p for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*")
               if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert local == [] and airflow == []
    assert [rel for rel, data in _everything(s3_home) if SECRET.encode() in data] == []
