"""Registry: compare-and-swap promotion, candidates, rollback, and a real race between processes."""
import json
import multiprocessing as mp

import pytest

from kd_tasks import registry
from kd_tasks.nightly import choose_action


def model_dir(tmp_path, name):
    d = tmp_path / "models" / name
    d.mkdir(parents=True)
    (d / "student.safetensors").write_bytes(name.encode())
    return d


def test_first_promotion_then_compare_and_swap(tmp_path):
    home = tmp_path / "home"
    assert registry.champion("uc", home) is None
    registry.promote("uc", model_dir(tmp_path, "v1"), "v1", {"run_id": "r1"}, expected_champion=None, home=home)
    assert registry.champion("uc", home)["version"] == "v1"
    registry.promote("uc", model_dir(tmp_path, "v2"), "v2", {"run_id": "r2"}, expected_champion="v1", home=home)
    assert registry.champion("uc", home)["version"] == "v2"
    with pytest.raises(registry.PromotionConflict, match="production moved to v2 while this run evaluated against v1"):
        registry.promote("uc", model_dir(tmp_path, "v3"), "v3", {"run_id": "r3"}, expected_champion="v1", home=home)
    assert registry.champion("uc", home)["version"] == "v2"
    assert (registry.registry_dir("uc", home) / "versions" / "v3" / "manifest.json").exists(), "kept, not lost"
    assert [e["outcome"] for e in registry.promotion_log("uc", home)] == ["promoted", "promoted", "lost_race"]


def test_candidate_never_moves_the_alias_and_rollback_does(tmp_path):
    home = tmp_path / "home"
    registry.promote("uc", model_dir(tmp_path, "v1"), "v1", {}, expected_champion=None, home=home)
    registry.record_candidate("uc", model_dir(tmp_path, "v2"), "v2", {"gate": {"decision": "promote"}}, home=home,
                              reason="backfill run")
    assert registry.champion("uc", home)["version"] == "v1"
    log = registry.promotion_log("uc", home)
    assert log[-1]["outcome"] == "candidate" and log[-1]["gate"] == {"decision": "promote"}
    registry.rollback("uc", "v2", "ops ticket 42", home=home)
    assert registry.champion("uc", home)["version"] == "v2"
    assert registry.promotion_log("uc", home)[-1] == {**registry.promotion_log("uc", home)[-1],
                                                     "outcome": "rolled_back", "reason": "ops ticket 42"}
    with pytest.raises(ValueError, match=r"no registered version 'v9'; known versions: \['v1', 'v2'\]"):
        registry.rollback("uc", "v9", "typo", home=home)


def _race(args):
    home, src, version = args
    try:
        registry.promote("uc", src, version, {"run_id": version}, expected_champion="v0", home=home)
        return "won"
    except registry.PromotionConflict:
        return "lost"


def test_concurrent_promotions_exactly_one_wins(tmp_path):
    home = tmp_path / "home"
    registry.promote("uc", model_dir(tmp_path, "v0"), "v0", {}, expected_champion=None, home=home)
    jobs = [(home, model_dir(tmp_path, f"c{i}"), f"c{i}") for i in range(6)]
    with mp.get_context("spawn").Pool(6) as pool:
        results = pool.map(_race, jobs)
    assert sorted(results) == ["lost"] * 5 + ["won"]
    winner = jobs[results.index("won")][2]
    assert registry.champion("uc", home)["version"] == winner
    outcomes = [e["outcome"] for e in registry.promotion_log("uc", home)]
    assert outcomes.count("promoted") == 2 and outcomes.count("lost_race") == 5
    alias = json.loads(registry.alias_path("uc", home).read_text())
    assert alias["previous"] == "v0"


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
