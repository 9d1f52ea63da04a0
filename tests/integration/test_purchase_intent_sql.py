"""The purchase_intent feature SQL: hand-checked values, SQLite = PostgreSQL = MariaDB (the MySQL form of
the query), point-in-time correctness."""
import datetime as dt
import random

import pytest

from kd_tasks.use_cases.purchase_intent import PRIVILEGED as INTENT_PRIVILEGED, SERVING as INTENT_SERVING, USE_CASE as PURCHASE_INTENT
from kd_tasks.loaders.events import _event, load_events, select_days
from kd_tasks.storage import lake
from kd_tasks.storage.lake import day_index
from kd_tasks.stages.extract import extract_partition

DS = "2017-11-28"  # cutoff day with label_horizon_days = 1: history is 11-25..11-27, the label day 11-28


def extract(uri, home, ds=DS, **params):
    uc = PURCHASE_INTENT.with_overrides(extract_params=params) if params else PURCHASE_INTENT
    extract_partition(uc, ds, uri, home=home)
    rows = lake.read_extract(uc.name, ds, home=home).to_pylist()
    out = {r["candidate_id"]: r for r in rows}
    assert len(out) == len(rows), "candidate ids must be unique"
    return out


def ev(user, item, category, behavior, when):
    return _event(user, item, category, behavior, dt.datetime.fromisoformat(when), "test")


def test_features_and_label_of_a_hand_made_log(tmp_path):
    events = [
        ev("u1", "i1", "c1", "buy", "2017-11-20 09:00:00"),  # 8 days before the cutoff: 28-day window only
        ev("u1", "i1", "c1", "cart", "2017-11-26 12:00:00"),
        ev("u1", "i1", "c1", "pv", "2017-11-27 10:00:00"),
        ev("u1", "i1", "c1", "pv", "2017-11-27 11:00:00"),
        ev("u2", "i1", "c1", "pv", "2017-11-27 18:00:00"),
        ev("u1", "i1", "c1", "pv", "2017-11-28 08:00:00"),  # label day: privileged
        ev("u1", "i1", "c1", "buy", "2017-11-28 08:05:00"),  # the label
        ev("u1", "i2", "c1", "fav", "2017-11-28 09:00:00"),  # an impression with no history
        ev("u3", "i3", "c2", "pv", "2017-11-10 09:00:00"),  # older than candidate_days: not a candidate
        ev("u3", "i3", "c2", "pv", "2017-11-29 09:00:00"),  # after the label window: ignored
    ]
    uri = f"sqlite:///{tmp_path / 'wh.db'}"
    load_events(uri, events)
    rows = extract(uri, tmp_path / "home")
    cut = day_index(DS)
    assert set(rows) == {f"u1:i1@{cut}", f"u1:i2@{cut}", f"u2:i1@{cut}"}
    a = rows[f"u1:i1@{cut}"]
    assert {k: a[k] for k in ("ui_pv_7d", "ui_cart_7d", "ui_buy_7d", "ui_buy_28d", "ui_events_1d", "ui_events_28d",
                              "ui_recency_days", "u_events_7d", "u_buy_28d", "i_users_28d", "i_events_1d",
                              "uc_events_7d")} == {
        "ui_pv_7d": 2, "ui_cart_7d": 1, "ui_buy_7d": 0, "ui_buy_28d": 1, "ui_events_1d": 2, "ui_events_28d": 4,
        "ui_recency_days": 1, "u_events_7d": 3, "u_buy_28d": 1, "i_users_28d": 2, "i_events_1d": 3,
        "uc_events_7d": 3}
    assert (a["ui_pv_after"], a["u_browse_after"], a["u_buy_other_after"], a["bought"]) == (1, 2, 0, 1)
    b = rows[f"u1:i2@{cut}"]
    assert (b["ui_events_28d"], b["ui_recency_days"], b["uc_events_7d"], b["ui_fav_after"], b["bought"]) == (
        0, 29, 3, 1, 0)
    assert b["category_id"] == "c1" and rows[f"u2:i1@{cut}"]["bought"] == 0


@pytest.fixture(scope="module")
def few_taobao_days(taobao_events):
    return select_days(taobao_events, "2017-11-25", "2017-11-29")


def test_same_features_from_sqlite_postgres_and_mariadb(tmp_path, pg_uri, mariadb_uri, few_taobao_days):
    sqlite_uri = f"sqlite:///{tmp_path / 'wh.db'}"
    out = {}
    for name, uri in (("sqlite", sqlite_uri), ("postgresql", pg_uri), ("mariadb", mariadb_uri)):
        load_events(uri, few_taobao_days, replace=True)
        out[name] = extract(uri, tmp_path / name)
    lite = out["sqlite"]
    assert len(lite) > 10_000 and sum(r["bought"] for r in lite.values()) > 50
    cut = day_index(DS)
    assert all(k.endswith(f"@{cut}") and k.count(":") == 1 for k in lite)  # user:item@cutoff, never 0
    for name in ("postgresql", "mariadb"):
        assert out[name].keys() == lite.keys(), name
        assert out[name] == lite, name  # every serving feature, privileged feature and label, value for value
        assert all(type(out[name][k][c]) is type(lite[k][c]) for k in list(lite)[:50] for c in lite[k]), name


def test_shifting_events_after_the_cutoff_never_changes_a_serving_feature(tmp_path, few_taobao_days):
    cut = day_index(DS)
    uri = f"sqlite:///{tmp_path / 'before.db'}"
    load_events(uri, few_taobao_days, replace=True)
    before = extract(uri, tmp_path / "a")

    rng = random.Random(0)
    moved = []
    for e in few_taobao_days:
        if e["day_index"] < cut:
            moved.append(e)
            continue
        if rng.random() < 0.3:
            continue  # dropped
        when = dt.datetime.fromisoformat(e["event_time"]) + dt.timedelta(hours=rng.randint(0, 60))
        moved.append(_event(e["user_id"], e["item_id"], e["category_id"], rng.choice(["pv", "buy", "cart"]), when,
                            "shifted"))
    shifted_uri = f"sqlite:///{tmp_path / 'after.db'}"
    load_events(shifted_uri, moved, replace=True)
    after = extract(shifted_uri, tmp_path / "b")

    common = before.keys() & after.keys()
    assert len(common) > 10_000
    changed_privileged = sum(any(before[k][c] != after[k][c] for c in INTENT_PRIVILEGED) for k in common)
    assert changed_privileged > 1000  # the shift did change what happened after the cutoff
    for k in common:
        for c in INTENT_SERVING:
            assert before[k][c] == after[k][c], f"{k}.{c} changed when only events after the cutoff moved"


def test_moving_one_event_across_the_cutoff_is_detected(tmp_path, few_taobao_days):
    """The check above can fail: an event moved from before the cutoff to after it changes features."""
    cut = day_index(DS)
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    load_events(uri, few_taobao_days, replace=True)
    before = extract(uri, tmp_path / "a")
    victim = next(e for e in few_taobao_days if e["day_index"] == cut - 1 and e["behavior"] == "pv")
    moved = [e if e is not victim else _event(e["user_id"], e["item_id"], e["category_id"], "pv",
                                             dt.datetime.fromisoformat(DS + " 10:00:00"), "moved")
             for e in few_taobao_days]
    uri2 = f"sqlite:///{tmp_path / 'b.db'}"
    load_events(uri2, moved, replace=True)
    after = extract(uri2, tmp_path / "b")
    key = f"{victim['user_id']}:{victim['item_id']}@{cut}"
    assert before[key]["ui_pv_7d"] == after[key]["ui_pv_7d"] + 1
    assert after[key]["ui_pv_after"] == before[key]["ui_pv_after"] + 1


def test_label_horizon_moves_the_cutoff_back(tmp_path, few_taobao_days):
    """A 3-day label window closing on ds: the cutoff is ds - 2 and labels cover ds-2..ds."""
    uri = f"sqlite:///{tmp_path / 'wh.db'}"
    load_events(uri, few_taobao_days, replace=True)
    rows = extract(uri, tmp_path / "h", ds="2017-11-29", label_horizon_days=3)
    assert {r["cutoff_day"] for r in rows.values()} == {day_index("2017-11-27")}
    buyers = {(e["user_id"], e["item_id"]) for e in few_taobao_days
              if e["behavior"] == "buy" and "2017-11-27" <= e["event_date"] <= "2017-11-29"}
    positives = {(r["user_id"], r["item_id"]) for r in rows.values() if r["bought"]}
    assert positives and positives <= buyers


def test_without_its_mysql_form_mariadb_would_build_ids_of_zero_and_the_extract_refuses(
        tmp_path, mariadb_uri, few_taobao_days, monkeypatch):
    """On MariaDB `||` is a logical OR: a port of the default form that only fixes its syntax errors (the
    casts) builds every candidate id as 0. The MySQL form uses concat(); were a form like that used, the
    duplicate-id check refuses the partition instead of training on it."""
    from kd_tasks import warehouse

    load_events(mariadb_uri, few_taobao_days[:3000], replace=True)
    read = warehouse.read_sql

    def syntax_only_port(name, dialect=None):
        return read(name).replace("as double precision)", "as double)").replace("as text)", "as char)")

    monkeypatch.setattr(warehouse, "read_sql", syntax_only_port)
    with pytest.raises(ValueError, match="returned duplicate candidate_id values"):
        extract_partition(PURCHASE_INTENT, DS, mariadb_uri, home=tmp_path / "home")
    assert not lake.extract_dir(PURCHASE_INTENT.name, DS, tmp_path / "home").exists()
