"""Registry: compare-and-swap promotion, candidates, rollback, and a real race between processes."""
import json
import os
import time
import multiprocessing as mp
import re
import subprocess
import sys

import pytest

from kd_tasks.storage import files, registry
from kd_tasks.nightly import choose_action
from kd_tasks.storage.files import content_version
from conftest import put_tree
from kd_tasks.storage.fs import is_remote


V = {}  # short name -> content-hash version of that model


def model_dir(tmp_path, name):
    """A model folder whose version, like every real one, is the content hash of its files."""
    d = tmp_path / "models" / name
    d.mkdir(parents=True)
    (d / "student.safetensors").write_bytes(name.encode())
    V[name] = content_version(d)
    return d


def test_first_promotion_then_compare_and_swap(home, tmp_path):
    assert registry.champion("uc", home) is None
    registry.promote("uc", model_dir(tmp_path, "v1"), V["v1"], {"run_id": "r1"}, expected_champion=None, home=home)
    assert registry.champion("uc", home)["version"] == V["v1"]
    registry.promote("uc", model_dir(tmp_path, "v2"), V["v2"], {"run_id": "r2"}, expected_champion=V["v1"], home=home)
    assert registry.champion("uc", home)["version"] == V["v2"]
    with pytest.raises(registry.PromotionConflict,
                       match=f"production moved to {V['v2']} while this run evaluated against {V['v1']}"):
        registry.promote("uc", model_dir(tmp_path, "v3"), V["v3"], {"run_id": "r3"}, expected_champion=V["v1"],
                         home=home)
    assert registry.champion("uc", home)["version"] == V["v2"]
    assert (registry.registry_dir("uc", home) / "versions" / V["v3"] / "manifest.json").exists(), "kept, not lost"
    assert [e["outcome"] for e in registry.promotion_log("uc", home)] == ["promoted", "promoted", "lost_race"]
    assert [e["outcome"] for e in registry.promotion_log("uc", home, intents=True)] == [
        "intent", "promoted", "intent", "promoted", "lost_race"]


def test_a_retried_promotion_reports_already_promoted_and_logs_nothing_new(home, tmp_path):
    src = model_dir(tmp_path, "v1")
    first = registry.promote("uc", src, V["v1"], {"run_id": "r1"}, expected_champion=None, home=home)
    again = registry.promote("uc", src, V["v1"], {"run_id": "r1"}, expected_champion=None, home=home)
    assert first["already"] is False and again["already"] is True and again["version"] == V["v1"]
    assert [e["outcome"] for e in registry.promotion_log("uc", home)] == ["promoted"]


def test_candidate_never_moves_the_alias_and_rollback_does(home, tmp_path):
    registry.promote("uc", model_dir(tmp_path, "v1"), V["v1"], {}, expected_champion=None, home=home)
    registry.record_candidate("uc", model_dir(tmp_path, "v2"), V["v2"], {"gate": {"decision": "promote"}},
                              home=home, reason="backfill run")
    assert registry.champion("uc", home)["version"] == V["v1"]
    log = registry.promotion_log("uc", home)
    assert log[-1]["outcome"] == "candidate" and log[-1]["gate"] == {"decision": "promote"}
    registry.rollback("uc", V["v2"], "ops ticket 42", home=home)
    assert registry.champion("uc", home)["version"] == V["v2"]
    assert registry.promotion_log("uc", home)[-1] == {**registry.promotion_log("uc", home)[-1],
                                                     "outcome": "rolled_back", "reason": "ops ticket 42"}
    known = sorted([V["v1"], V["v2"]])
    with pytest.raises(ValueError, match=re.escape(f"no registered version '999999999999'; known versions: {known}")):
        registry.rollback("uc", "999999999999", "typo", home=home)


def _race(args):
    home, src, version = args
    try:
        registry.promote("uc", src, version, {"run_id": version}, expected_champion=V0, home=home)
        return "won"
    except registry.PromotionConflict:
        return "lost"


V0 = "c0ffee000000"


def test_concurrent_promotions_exactly_one_wins(tmp_path):
    """Six processes race on a local home (the flock). On S3 the swap is a conditional write; the test
    server does not make simultaneous conditional writes exclusive (see test_s3_home), so the S3 race is
    tested there, interleaved at the worst moment."""
    home = tmp_path / "home"
    src = model_dir(tmp_path, "v0")
    assert V["v0"] != V0
    registry.promote("uc", src, V["v0"], {}, expected_champion=None, home=home)
    # the racers expect V0: point the alias there by rolling back onto a registered copy named V0
    put_tree(tmp_path / "models" / "v0", registry.registry_dir("uc", home) / "versions" / V0)
    jobs = [(home, model_dir(tmp_path, f"c{i}"), V[f"c{i}"]) for i in range(6)]
    registry._write_alias("uc", home, {"version": V0, "promoted_at": "", "previous": None})
    with mp.get_context("spawn").Pool(6) as pool:
        results = pool.map(_race, jobs)
    assert sorted(results) == ["lost"] * 5 + ["won"]
    winner = jobs[results.index("won")][2]
    assert registry.alias_version("uc", home) == winner
    outcomes = [e["outcome"] for e in registry.promotion_log("uc", home)]
    assert outcomes.count("promoted") == 2 and outcomes.count("lost_race") == 5
    alias = json.loads(registry.alias_path("uc", home).read_text())
    assert alias["previous"] == V0


ACTIONS = [
    # decision, kwargs, action
    ("promote", {}, "promote"),
    ("hold", {}, "hold"),
    ("promote", {"is_backfill": True}, "candidate"),
    ("hold", {"is_backfill": True}, "candidate"),
    ("promote", {"is_backfill": True, "allow_backfill_promotion": True}, "promote"),
    ("hold", {"is_backfill": True, "allow_backfill_promotion": True}, "hold"),
    ("hold", {"force_promote": True, "force_reason": "hotfix for ticket 7"}, "promote"),
]


@pytest.mark.parametrize("decision,kwargs,action", ACTIONS)
def test_choose_action(decision, kwargs, action):
    got, why = choose_action(decision, "because", **kwargs)
    assert got == action
    if kwargs.get("force_promote"):
        assert "hotfix for ticket 7" in why and "gate said hold" in why


def test_force_promote_needs_a_reason():
    with pytest.raises(ValueError, match="force_promote=true needs a force_reason"):
        choose_action("hold", "x", force_promote=True, force_reason="  ")


@pytest.fixture
def two_promotions(home, tmp_path):
    registry.promote("uc", model_dir(tmp_path, "v1"), V["v1"], {"run_id": "r1"}, expected_champion=None, home=home)
    registry.promote("uc", model_dir(tmp_path, "v2"), V["v2"], {"run_id": "r2"}, expected_champion=V["v1"], home=home)
    return home


def test_a_torn_last_log_line_is_dropped_and_the_log_stays_readable(two_promotions, tmp_path):
    home = two_promotions
    if is_remote(home):  # one object per entry: a damaged entry is skipped, the rest stays readable
        (registry.log_dir("uc", home) / "01000000000000000000-000000000000-promoted.json").write_bytes(b'{"outco')
    else:
        with open(registry.log_path("uc", home), "ab") as fh:
            fh.write(b'{"outcome": "promo')  # a writer died mid-append
    assert [e["outcome"] for e in registry.promotion_log("uc", home)] == ["promoted", "promoted"]
    registry.promote("uc", model_dir(tmp_path, "v3"), V["v3"], {}, expected_champion=V["v2"], home=home)
    assert [e["outcome"] for e in registry.promotion_log("uc", home)] == ["promoted"] * 3
    if not is_remote(home):
        assert all(json.loads(line) for line in registry.log_path("uc", home).read_text().splitlines())


@pytest.mark.parametrize("damage", [b"", b'{"version": "4ef5', b"\xff\xfe garbage", b'{"version": "../../x"}'])
def test_a_damaged_alias_is_rewritten_from_the_log(two_promotions, damage):
    home = two_promotions
    registry.alias_path("uc", home).write_bytes(damage)
    assert registry.champion("uc", home)["version"] == V["v2"]
    assert json.loads(registry.alias_path("uc", home).read_text())["version"] == V["v2"]


def test_a_damaged_alias_without_a_log_names_the_fix_and_rollback_recovers(two_promotions):
    home = two_promotions
    files.remove_tree(registry.log_dir("uc", home) if is_remote(home) else registry.log_path("uc", home))
    registry.alias_path("uc", home).write_text('{"vers')
    with pytest.raises(files.IntegrityError, match=r"production alias .*production.json is damaged.*"
                                                   r"kd_tasks.cli rollback --use-case uc --version VERSION"):
        registry.champion("uc", home)
    registry.rollback("uc", V["v1"], "alias was damaged", home=home)
    assert registry.champion("uc", home)["version"] == V["v1"]
    assert registry.promotion_log("uc", home)[-1]["outcome"] == "rolled_back"


def test_a_changed_model_file_is_detected_and_a_new_promotion_replaces_it(two_promotions, tmp_path):
    home = two_promotions
    weights = registry.version_dir("uc", V["v2"], home) / "student.safetensors"
    weights.write_bytes(b"v2 but changed")
    with pytest.raises(files.IntegrityError, match=f"{weights} .*(hash|bytes).*rollback"):
        registry.champion("uc", home)
    registry.rollback("uc", V["v1"], "v2 damaged", home=home)  # the documented recovery works
    # registering the same content again heals the damaged copy
    registry.promote("uc", tmp_path / "models" / "v2", V["v2"], {}, expected_champion=V["v1"], home=home)
    assert registry.champion("uc", home)["version"] == V["v2"]


@pytest.mark.parametrize("use_case,version", [("uc", "../versions/" + "a" * 12), ("uc", "a" * 11 + "/"),
                                              ("../uc", "a" * 12), ("uc/../other", "a" * 12), ("", "a" * 12)])
def test_names_from_outside_never_leave_the_registry(tmp_path, use_case, version):
    home = tmp_path / "home"
    with pytest.raises(ValueError, match="is not valid"):
        registry.rollback(use_case, version, "x", home=home)
    assert not home.exists() or not any(p for p in tmp_path.rglob("*") if p.name == "aliases")


def test_leftovers_of_killed_writes_are_not_versions_and_are_swept(two_promotions):
    home = two_promotions
    if is_remote(home):
        return _remote_leftovers_are_not_versions_and_are_swept(home)
    versions = registry.registry_dir("uc", home) / "versions"
    legacy = versions / f".{V['v1']}.tmp-{'ab' * 16}"  # named as before temp names carried a PID
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    dead = files.temp_path(versions / V["v1"]).with_name(
        files.temp_path(versions / V["v1"]).name.replace(f"-{os.getpid()}-", f"-{dead_pid.pid}-"))
    alive = files.temp_path(versions / V["v2"])  # this process is still writing it: kept
    for d in (legacy, dead, alive):
        d.mkdir()
        (d / "student.safetensors").write_bytes(b"half")
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    assert registry.known_versions("uc", home) == sorted([V["v1"], V["v2"]])
    assert sorted(files.sweep(home)) == sorted([legacy, dead])
    assert alive.exists() and not dead.exists() and not legacy.exists()


def _remote_leftovers_are_not_versions_and_are_swept(home):
    """On S3 a killed publish leaves its marker and some files under the final name, no manifest."""
    versions = registry.registry_dir("uc", home) / "versions"
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    half = "d" * 12
    dead = files.temp_path(versions / half)
    dead = dead.with_name(dead.name.replace(f"-{os.getpid()}-", f"-{dead_pid.pid}-"))
    alive = files.temp_path(versions / ("e" * 12))  # this process is still writing it: kept
    for marker, name in ((dead, half), (alive, "e" * 12)):
        marker.write_bytes(b"")
        (versions / name / "student.safetensors").write_bytes(b"half")
    assert registry.known_versions("uc", home) == sorted([V["v1"], V["v2"]])
    with pytest.raises(files.IntegrityError, match="manifest"):
        registry.verify_version("uc", half, home)
    assert files.sweep(home) == [dead]
    assert not dead.exists() and not (versions / half).exists()
    assert alive.exists() and (versions / ("e" * 12) / "student.safetensors").exists()
    assert registry.known_versions("uc", home) == sorted([V["v1"], V["v2"]])
