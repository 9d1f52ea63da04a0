"""Behaviour-log readers on the real files: the documented drops, the real days."""
from collections import Counter

import pytest

from kd_tasks.storage.lake import day_index
from kd_tasks.loaders.events import product_type, read_online_retail, read_taobao


def test_taobao_drops_the_truncated_row_and_the_rows_outside_the_window(datasets_dir):
    rows, dropped = read_taobao(datasets_dir / "taobao_userbehavior_sample" / "UserBehavior_head.csv.gz")
    assert dropped == {"incomplete": 1, "outside_window": 35, "unknown_behavior": 0}
    assert len(rows) == 84_475 - 35
    per_day = Counter(r["event_date"] for r in rows)
    # PROVENANCE.md's table, Asia/Shanghai days
    assert per_day == {"2017-11-25": 8697, "2017-11-26": 8788, "2017-11-27": 8335, "2017-11-28": 8867,
                       "2017-11-29": 8785, "2017-11-30": 8616, "2017-12-01": 9455, "2017-12-02": 11520,
                       "2017-12-03": 11377}
    first = rows[0]
    assert (first["user_id"], first["item_id"], first["behavior"]) == ("1", "2268318", "pv")
    assert first["event_time"] == "2017-11-25 01:21:10"  # 1511544070 is 2017-11-24 17:21:10 UTC
    assert first["day_index"] == day_index("2017-11-25")


def test_online_retail_keeps_customer_purchases_only(datasets_dir):
    rows, dropped = read_online_retail(datasets_dir / "online_retail_uci" / "online_retail.parquet")
    assert dropped["no_customer"] == 135_080  # the published count of missing CustomerID
    assert dropped["cancellation"] > 0 and all(r["behavior"] == "buy" for r in rows)
    assert len(rows) + sum(dropped.values()) == 541_909
    days = sorted({r["event_date"] for r in rows})
    assert days[0] == "2010-12-01" and days[-1] == "2011-12-09"
    assert rows[0]["category_id"] == "HOLDER"  # WHITE HANGING HEART T-LIGHT HOLDER


@pytest.mark.parametrize("desc,expected", [("WHITE HANGING HEART T-LIGHT HOLDER", "HOLDER"),
                                           ("SET 7 BABUSHKA NESTING BOXES", "BOXES"), (None, "UNKNOWN")])
def test_product_type_is_the_last_word(desc, expected):
    assert product_type(desc) == expected
