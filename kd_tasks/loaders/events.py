"""Behaviour logs for the purchase_intent use case: readers for real logs and the ``events`` loader.

Every source becomes rows of ``(user_id, item_id, category_id, behavior, event_time, event_date,
day_index, source)`` where ``behavior`` is one of pv / cart / fav / buy and ``event_date`` is the
shop's local calendar day (the nightly partition). ``day_index`` is that day as days since
1970-01-01, so the feature SQL can do date arithmetic the same way on SQLite and PostgreSQL.
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import warehouse
from ..storage.lake import day_index

log = logging.getLogger(__name__)

BEHAVIORS = ("pv", "cart", "fav", "buy")
# Taobao UserBehavior: the documented window, and the shop's time zone (Asia/Shanghai has no DST).
TAOBAO_FIRST_DAY, TAOBAO_LAST_DAY = "2017-11-25", "2017-12-03"
TAOBAO_UTC_OFFSET = dt.timedelta(hours=8)
_WORD = re.compile(r"[A-Z]+")


def _event(user: str, item: str, category: str, behavior: str, when: dt.datetime, source: str) -> dict[str, Any]:
    day = when.date().isoformat()
    return {"user_id": user, "item_id": item, "category_id": category, "behavior": behavior,
            "event_time": when.strftime("%Y-%m-%d %H:%M:%S"), "event_date": day,
            "day_index": day_index(day), "source": source}


def read_taobao(path: str | Path, first_day: str = TAOBAO_FIRST_DAY,
                last_day: str = TAOBAO_LAST_DAY) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Events of a Taobao UserBehavior CSV (no header: user, item, category, behavior, unix seconds).

    Drops rows without a timestamp (the sample's last line is cut mid-row) and rows outside
    ``first_day..last_day`` (local time), and says how many of each it dropped.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; point --file at UserBehavior.csv(.gz)")
    opener = gzip.open if path.name.endswith(".gz") else open
    rows, dropped = [], {"incomplete": 0, "outside_window": 0, "unknown_behavior": 0}
    with opener(path, "rt", newline="") as fh:
        for rec in csv.reader(fh):
            if len(rec) < 5 or not rec[4].strip():
                dropped["incomplete"] += 1
                continue
            user, item, category, behavior, ts = (x.strip() for x in rec[:5])
            if behavior not in BEHAVIORS:
                dropped["unknown_behavior"] += 1
                continue
            when = dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).replace(tzinfo=None) + TAOBAO_UTC_OFFSET
            if not first_day <= when.date().isoformat() <= last_day:
                dropped["outside_window"] += 1
                continue
            rows.append(_event(user, item, category, behavior, when, "taobao_userbehavior"))
    return rows, dropped


def product_type(description: str | None) -> str:
    """A category for an Online Retail product: the last word of its description ("...T-LIGHT HOLDER" -> HOLDER)."""
    words = _WORD.findall((description or "").upper())
    return words[-1] if words else "UNKNOWN"


def read_online_retail(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Purchases of the UCI Online Retail data set as ``buy`` events.

    Drops lines without a CustomerID (no user to predict for) and cancellations / returns
    (InvoiceNo starting with "C" or Quantity <= 0). The category of a product is its type noun,
    the last word of its description (the data set has no category column).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; point --file at online_retail.parquet")
    table = pq.read_table(path, columns=["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                                         "CustomerID"])
    descriptions: dict[str, str] = {}
    rows, dropped = [], {"no_customer": 0, "cancellation": 0}
    cols = [table.column(c).to_pylist() for c in table.column_names]
    for invoice, code, desc, qty, when, customer in zip(*cols):
        if customer is None:
            dropped["no_customer"] += 1
            continue
        if str(invoice).startswith("C") or qty is None or qty <= 0:
            dropped["cancellation"] += 1
            continue
        code = str(code).strip().upper()
        if desc and code not in descriptions:
            descriptions[code] = desc
        rows.append((str(int(customer)), code, dt.datetime.fromisoformat(str(when))))
    return ([_event(u, i, product_type(descriptions.get(i)), "buy", w, "online_retail") for u, i, w in rows],
            dropped)


def load_events(uri: warehouse.Warehouse, rows: Iterable[Mapping[str, Any]], replace: bool = False,
                batch_rows: int = 10_000) -> dict[str, Any]:
    """Write events (any iterable: consumed in batches, in one transaction) into the warehouse. The
    days present in ``rows`` are replaced, each before its first batch, so a reload is idempotent."""
    from .catalogue import batched

    cleared: set[int] = set()
    dates: set[str] = set()
    n = 0
    with warehouse.connect(uri) as conn:
        warehouse.execute(conn, "warehouse/create_events.sql")
        warehouse.execute(conn, "warehouse/create_events_index.sql")
        if replace:
            warehouse.execute(conn, "warehouse/delete_events.sql")
        for batch in batched(rows, batch_rows):
            for day in sorted({r["day_index"] for r in batch} - cleared):
                if not replace:
                    warehouse.execute(conn, "warehouse/delete_events_in_range.sql", {"first_day": day, "last_day": day})
                cleared.add(day)
            warehouse.execute_many(conn, "warehouse/insert_event.sql", batch)
            dates.update(r["event_date"] for r in batch)
            n += len(batch)
        if not n:
            raise ValueError("no events to load: the file had no usable rows (see the dropped counts)")
    dates_sorted = sorted(dates)
    log.info("loaded %d events over %d days (%s..%s) into %s", n, len(dates), dates_sorted[0], dates_sorted[-1],
             warehouse.redact(uri))
    return {"events": n, "days": len(dates), "first_day": dates_sorted[0], "last_day": dates_sorted[-1]}


def select_days(rows: Iterable[Mapping[str, Any]], first_day: str | None = None,
                last_day: str | None = None) -> list[Mapping[str, Any]]:
    """Events whose ``event_date`` is within ``first_day..last_day`` (either bound optional)."""
    return [r for r in rows if (first_day is None or r["event_date"] >= first_day)
            and (last_day is None or r["event_date"] <= last_day)]
