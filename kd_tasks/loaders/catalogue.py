"""Product catalogues into the warehouse's ``products`` table: a user's CSV / Parquet file, the
Fashion Product Images data set, or rows from the synthetic generator. Every row is loaded or the
whole file is refused, with the offending rows named.

Files are read and loaded in batches (``LOAD_BATCH_ROWS``): each batch goes into a staging table with
plain batched inserts and is merged into ``products`` by one statement, all in one transaction, so a
refused file leaves the table as it was and memory stays bounded (the ids seen are kept, to name a
repeated one).
"""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..holdout import is_holdout
from ..names import InputError
from ..warehouse import Warehouse, connect, execute, execute_many, query_table

LOAD_BATCH_ROWS = 10_000


def create_tables(uri: Warehouse) -> None:
    with connect(uri) as conn:
        execute(conn, "warehouse/create_products.sql")


def batched(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def read_rows(path: Path, encoding: str = "utf-8") -> Iterator[dict[str, Any]]:
    """Rows of a CSV (optionally .gz) or Parquet file as dicts, read as they are consumed."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=LOAD_BATCH_ROWS):
            yield from batch.to_pylist()
        return
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding=encoding) as fh:
            reader = csv.DictReader(fh, delimiter="\t" if ".tsv" in name else ",")
            try:
                yield from reader
            except UnicodeDecodeError as exc:
                line = _first_undecodable_line(path, opener, encoding)
                raise InputError(
                    f"{path}: data row {line - 1} (line {line}) is not valid {encoding} ({exc.reason}); pass "
                    "the file's encoding, e.g. --encoding latin-1 or --encoding cp1252") from None
        return
    raise InputError(f"{path}: unsupported file type; give a .csv, .csv.gz, .tsv or .parquet file")


def _first_undecodable_line(path: Path, opener: Any, encoding: str) -> int:
    with opener(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return n
    return 0


def _derived_id(title: str, seen: dict[str, int]) -> str:
    """Stable id for a catalogue without an id column: hash of the title and its occurrence number."""
    k = seen.get(title, 0)
    seen[title] = k + 1
    return hashlib.sha1(f"{title}#{k}".encode()).hexdigest()[:16]


def listing_date(row_id: str, end_date: str, days: int) -> str:
    """Spread undated listings over ``days`` days ending at ``end_date``, by a stable hash of the id."""
    offset = int(hashlib.sha1(row_id.encode()).hexdigest(), 16) % days
    return (dt.date.fromisoformat(end_date) - dt.timedelta(days=offset)).isoformat()


OPTION = {"title": "--text-column", "label": "--label-column", "id": "--id-column", "date": "--date-column"}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")


def parse_listing_date(value: Any) -> str | None:
    """A listing date as YYYY-MM-DD, or None when ``value`` is not an ISO date (or date-time)."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    if not _ISO_DATE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        return None


def gold_kept(product_id: str, gold_fraction: float) -> bool:
    """Whether a row keeps its category when only ``gold_fraction`` of the rows do: stable per product
    id (the same rows on every load), in steps of 1%."""
    return gold_fraction >= 1.0 or is_holdout("gold:" + product_id, int(round(gold_fraction * 100)))


def refuse(source: str, problem: str, bad: list[tuple[int, Any]], fix: str) -> None:
    shown = ", ".join(f"row {n}: {v!r}" for n, v in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise InputError(f"{source}: {len(bad)} row(s) {problem} ({shown}{more}); nothing was loaded. {fix}")


def catalogue_rows(records: Iterable[Mapping[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """``iter_catalogue_rows`` as a list."""
    return list(iter_catalogue_rows(records, **kwargs))


def iter_catalogue_rows(records: Iterable[Mapping[str, Any]], *, source: str, text_column: str,
                        label_column: str, id_column: str | None = None, date_column: str | None = None,
                        end_date: str = "2024-01-31", days: int = 30,
                        gold_fraction: float = 1.0) -> Iterator[dict[str, Any]]:
    """Map a user's catalogue records onto the warehouse ``products`` rows, as they are read.

    Rows with an empty title are dropped (there is nothing to classify; ``skipped_titles`` counts
    them); rows with an empty category are kept with ``category = NULL`` (unlabelled rows still get
    soft labels). ``gold_fraction`` < 1 keeps the category on that share of rows only, chosen stably
    by product id (``gold_kept``): the scarce-label case, from a fully labelled file. Every row is loaded or the whole file is refused: an empty or repeated id, or a
    date that is not ISO ``YYYY-MM-DD[THH:MM:SS]``, names its first offending rows (data rows,
    counted from 1). The errors are raised after the last record: a loader that consumed the rows in
    one transaction rolls it back.
    """
    if not 0.0 <= gold_fraction <= 1.0:
        raise InputError(f"gold fraction {gold_fraction} is not a share: give a number from 0 to 1")
    seen: dict[str, int] = {}
    first_row: dict[str, int] = {}
    empty_ids, repeated, bad_dates = [], [], []
    n = 0
    for n, rec in enumerate(records, 1):
        if n == 1:
            columns = list(rec.keys())
            for role, col in (("title", text_column), ("label", label_column), ("id", id_column),
                              ("date", date_column)):
                if col is not None and col not in columns:
                    raise InputError(
                        f"{source}: the {role} column {col!r} is not in the file; its columns are {columns}. "
                        f"Pass the right name with {OPTION[role]}"
                    )
        title = (rec.get(text_column) or "").strip() if rec.get(text_column) is not None else ""
        if not title:
            continue
        label = rec.get(label_column)
        label = str(label).strip() if label is not None and str(label).strip() else None
        if id_column:
            raw_id = rec.get(id_column)
            row_id = "" if raw_id is None else str(raw_id).strip()
            if not row_id:
                empty_ids.append((n, raw_id))
                continue
            if row_id in first_row:
                repeated.append((n, f"{row_id} (first at row {first_row[row_id]})"))
                continue
            first_row[row_id] = n
        else:
            row_id = _derived_id(title, seen)
        if date_column:
            listed_on = parse_listing_date(rec.get(date_column)) if rec.get(date_column) not in (None, "") else None
            if listed_on is None:
                bad_dates.append((n, rec.get(date_column)))
                continue
        else:
            listed_on = listing_date(row_id, end_date, days)
        if label is not None and not gold_kept(row_id, gold_fraction):
            label = None
        yield {"product_id": row_id, "title": title, "category": label, "listed_on": listed_on, "source": source}
    if n == 0:
        raise InputError(f"{source}: the file has no rows")
    if empty_ids:
        refuse(source, f"have an empty {id_column!r}", empty_ids,
                "fill the ids, or leave out --id-column to derive ids from the titles")
    if repeated:
        refuse(source, f"repeat an id of {id_column!r}", repeated, "ids must be unique: fix the file or choose "
                "another --id-column")
    if bad_dates:
        refuse(source, f"have a {date_column!r} that is not an ISO date YYYY-MM-DD", bad_dates,
                "convert the column to YYYY-MM-DD (or YYYY-MM-DDTHH:MM:SS)")


def load_products(uri: Warehouse, rows: Iterable[Mapping[str, Any]], replace: bool = False,
                  clear_labels: bool = False, batch_rows: int = LOAD_BATCH_ROWS) -> int:
    """Upsert ``rows`` (any iterable: they are consumed in batches) into ``products``, optionally
    emptying it first, in one transaction; returns the row count.

    A reload never erases a gold label: a row whose category is empty keeps the category already
    stored, unless ``clear_labels``."""
    create_tables(uri)
    seen: set[str] = set()
    loaded = 0
    with connect(uri) as conn:
        execute(conn, "warehouse/create_products_staging.sql")
        execute(conn, "warehouse/clear_products_staging.sql")
        if replace:
            execute(conn, "warehouse/delete_products.sql")
        for batch in batched(rows, batch_rows):
            ids = {r["product_id"] for r in batch}
            if len(ids) != len(batch) or not seen.isdisjoint(ids):
                raise InputError("rows to load repeat a product_id; ids must be unique")
            seen |= ids
            execute_many(conn, "warehouse/insert_product_staging.sql",
                         [{k: r[k] for k in ("product_id", "title", "category", "listed_on", "source")}
                          for r in batch])
            execute(conn, "warehouse/merge_products.sql", {"clear_labels": 1 if clear_labels else 0})
            execute(conn, "warehouse/clear_products_staging.sql")
            loaded += len(batch)
    return loaded


def count_products(uri: Warehouse) -> dict[str, int]:
    """Rows and gold-labelled rows of the ``products`` table."""
    table = query_table(uri, "warehouse/count_products.sql", {})
    return {"rows": int(table.column("n_rows")[0].as_py()), "labelled": int(table.column("n_labelled")[0].as_py() or 0)}


def load_catalogue_file(uri: Warehouse, path: str | Path, encoding: str = "utf-8", **kwargs: Any) -> int:
    """Load a catalogue file in batches; a file with bad rows is refused whole (nothing loaded)."""
    path = Path(path)
    replace = kwargs.pop("replace", False)
    clear_labels = kwargs.pop("clear_labels", False)
    batch_rows = kwargs.pop("batch_rows", LOAD_BATCH_ROWS)
    rows = iter_catalogue_rows(read_rows(path, encoding), source=path.name, **kwargs)
    return load_products(uri, rows, replace=replace, clear_labels=clear_labels, batch_rows=batch_rows)


def read_fashion_styles(folder: str | Path) -> list[dict[str, Any]]:
    """The Fashion Product Images catalogue: ``styles.csv.gz`` joined by position with the titles."""
    folder = Path(folder)
    styles, titles = folder / "styles.csv.gz", folder / "styles_text.csv.gz"
    for p in (styles, titles):
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; point --folder at the fashion_product_styles data set")
    a, b = list(read_rows(styles)), list(read_rows(titles))
    if len(a) != len(b):
        raise ValueError(f"{folder}: styles has {len(a)} rows but titles has {len(b)}; the files must be row-aligned")
    return [{**x, **y} for x, y in zip(a, b)]
