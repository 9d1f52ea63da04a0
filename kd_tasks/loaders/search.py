"""Search logs into the warehouse: (query, product) pairs with optional human relevance grades, and
the products they name, from any CSV / Parquet file (the Home Depot search-relevance pairs, a shop's
own search log). Every row is loaded, or skipped and reported, or the whole file is refused with the
offending rows named; nothing is dropped silently.

- A row without a query or a product title cannot be scored: it is skipped, counted and its first
  rows named in the load's summary (``skipped``).
- A grade that is not a number, or lies outside ``grade_range``, refuses the file; an empty grade is
  an unjudged pair (the teacher scores it, as it scores pairs from search logs).
- A product id given with another title than in its first row keeps its first title (a renamed
  listing); the load's summary counts those rows (``retitled``). A (query, product) pair given twice
  refuses the file.
- Without a date column, a pair's night is derived from a stable hash of its query over ``days``
  days ending at ``end_date``: all of a query's pairs fall on the same night (the query is the use
  case's grouping key), and the same file always gives the same nights.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..names import InputError
from ..warehouse import Warehouse, connect, execute, execute_many, query_table
from .catalogue import LOAD_BATCH_ROWS, read_rows, refuse, batched, listing_date, parse_listing_date

OPTION = {"query": "--query-column", "title": "--text-column", "grade": "--grade-column",
          "description": "--description-column", "product id": "--product-id-column", "date": "--date-column"}


def _clean(value: Any) -> str:
    """A cell as text without surrounding blanks; inner spacing is kept (raw queries differ by it)."""
    return "" if value is None else str(value).strip()


def _product_id(title: str) -> str:
    """A stable product id for a log without a product id column: a hash of the title."""
    return "t" + hashlib.sha1(title.encode()).hexdigest()[:16]


def _pair_id(query: str, product_id: str) -> str:
    return hashlib.sha1(f"{query}\x1f{product_id}".encode()).hexdigest()[:20]


def query_night(query: str, end_date: str, days: int) -> str:
    """The night of an undated query's pairs: a stable hash of the query over ``days`` days."""
    return listing_date("q:" + query, end_date, days)


class SearchRows:
    """The pairs and products of a search-log file as they are read (``pairs()`` consumes the file;
    ``products`` and ``summary`` are complete after it)."""

    def __init__(self, records: Iterable[Mapping[str, Any]], *, source: str, query_column: str, text_column: str,
                 grade_column: str | None = None, description_column: str | None = None,
                 product_id_column: str | None = None, date_column: str | None = None,
                 grade_range: tuple[float, float] | None = None, end_date: str = "2024-01-31", days: int = 30):
        self.records, self.source = records, source
        self.columns = {"query": query_column, "title": text_column, "grade": grade_column,
                        "description": description_column, "product id": product_id_column, "date": date_column}
        self.grade_range, self.end_date, self.days = grade_range, end_date, days
        self.products: dict[str, dict[str, Any]] = {}
        self.summary: dict[str, Any] = {"rows": 0, "pairs": 0, "judged": 0, "skipped": {}}

    def pairs(self) -> Iterator[dict[str, Any]]:
        c = self.columns
        first_title: dict[str, tuple[int, str]] = {}
        seen_pairs: dict[str, int] = {}
        skipped: dict[str, list[int]] = {}
        bad_grades, retitled, repeats, bad_dates = [], [], [], []
        n = 0
        for n, rec in enumerate(self.records, 1):
            if n == 1:
                found = list(rec.keys())
                for role, col in c.items():
                    if col is not None and col not in found:
                        raise InputError(f"{self.source}: the {role} column {col!r} is not in the file; its columns "
                                         f"are {found}. Pass the right name with {OPTION[role]}")
            query, title = _clean(rec.get(c["query"])), _clean(rec.get(c["title"]))
            if not query or not title:
                skipped.setdefault("without a query" if not query else "without a product title", []).append(n)
                continue
            grade = None
            if c["grade"] is not None and _clean(rec.get(c["grade"])):
                try:
                    grade = float(_clean(rec.get(c["grade"])))
                except ValueError:
                    grade = math.nan
                lo, hi = self.grade_range or (-math.inf, math.inf)
                if not math.isfinite(grade) or not lo <= grade <= hi:
                    bad_grades.append((n, rec.get(c["grade"])))
                    continue
            product_id = _clean(rec.get(c["product id"])) if c["product id"] else _product_id(title)
            if not product_id:
                skipped.setdefault("without a product id", []).append(n)
                continue
            known = first_title.get(product_id)
            if known is None:
                first_title[product_id] = (n, title)
                description = _clean(rec.get(c["description"])) if c["description"] else ""
                self.products[product_id] = {"product_id": product_id, "title": title,
                                             "description": description or None, "source": self.source}
            elif known[1] != title:
                retitled.append(n)
            pair_id = _pair_id(query, product_id)
            if pair_id in seen_pairs:
                repeats.append((n, f"{query!r} with {product_id} (first at row {seen_pairs[pair_id]})"))
                continue
            seen_pairs[pair_id] = n
            if c["date"]:
                night = parse_listing_date(rec.get(c["date"])) if _clean(rec.get(c["date"])) else None
                if night is None:
                    bad_dates.append((n, rec.get(c["date"])))
                    continue
            else:
                night = query_night(query, self.end_date, self.days)
            self.summary["pairs"] += 1
            self.summary["judged"] += grade is not None
            yield {"pair_id": pair_id, "query": query, "product_id": product_id, "grade": grade,
                   "searched_on": night, "source": self.source}
        self.summary["rows"] = n
        self.summary["skipped"] = {why: {"rows": len(rows), "first_rows": rows[:5]} for why, rows in skipped.items()}
        self.summary["retitled"] = {"rows": len(retitled), "first_rows": retitled[:5]}
        if n == 0:
            raise InputError(f"{self.source}: the file has no rows")
        span = "" if self.grade_range is None else f" in [{self.grade_range[0]:g}, {self.grade_range[1]:g}]"
        if bad_grades:
            refuse(self.source, f"have a {c['grade']!r} that is not a number{span}", bad_grades,
                    "fix the grades, leave unjudged pairs empty, or pass the scale with --grade-range")
        if repeats:
            refuse(self.source, "repeat a (query, product) pair", repeats, "keep one row per pair (average repeated "
                    "judgements into one grade)")
        if bad_dates:
            refuse(self.source, f"have a {c['date']!r} that is not an ISO date YYYY-MM-DD", bad_dates,
                    "convert the column to YYYY-MM-DD (or YYYY-MM-DDTHH:MM:SS)")


def create_tables(uri: Warehouse) -> None:
    with connect(uri) as conn:
        execute(conn, "warehouse/create_search_products.sql")
        execute(conn, "warehouse/create_search_pairs.sql")


def load_search(uri: Warehouse, rows: SearchRows, replace: bool = False, clear_labels: bool = False,
                batch_rows: int = LOAD_BATCH_ROWS) -> dict[str, Any]:
    """Upsert the pairs of ``rows`` in batches, then their products, in one transaction (a refused file
    leaves the tables as they were); returns ``rows.summary``. A reload never erases a grade (an empty
    one keeps what is stored) unless ``clear_labels``."""
    create_tables(uri)
    with connect(uri) as conn:
        if replace:
            execute(conn, "warehouse/delete_search_pairs.sql")
            execute(conn, "warehouse/delete_search_products.sql")
        for batch in batched(rows.pairs(), batch_rows):
            execute_many(conn, "warehouse/upsert_search_pair.sql", batch)
            if clear_labels:
                execute_many(conn, "warehouse/set_search_grade.sql",
                             [{"pair_id": r["pair_id"], "grade": r["grade"]} for r in batch])
        for batch in batched(rows.products.values(), batch_rows):
            execute_many(conn, "warehouse/upsert_search_product.sql", batch)
    rows.summary["products"] = len(rows.products)
    return rows.summary


def load_search_file(uri: Warehouse, path: str | Path, encoding: str = "utf-8", replace: bool = False,
                     clear_labels: bool = False, **columns: Any) -> dict[str, Any]:
    """Load a search-log file (CSV, optionally gzipped, or Parquet); ``columns`` are ``SearchRows``'
    options (query_column, text_column, grade_column, ...)."""
    path = Path(path)
    return load_search(uri, SearchRows(read_rows(path, encoding), source=path.name, **columns), replace=replace,
                       clear_labels=clear_labels)


def count_search(uri: Warehouse) -> dict[str, int]:
    """Pairs, judged pairs, queries and products the warehouse holds."""
    table = query_table(uri, "warehouse/count_search.sql", {})
    return {k[2:]: int(table.column(k)[0].as_py() or 0) for k in ("n_pairs", "n_judged", "n_queries", "n_products")}
