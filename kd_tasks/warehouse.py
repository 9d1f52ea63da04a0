"""The warehouse: DB-API connections, SQL files from ``sql/``, and catalogue loaders.

Queries are written once with ``:name`` placeholders; ``bind`` rewrites the placeholders to the
driver's paramstyle (``?``-free named style for sqlite3, ``%(name)s`` for psycopg2). Values are always
bound by the driver, never formatted into the SQL text.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import hashlib
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def sql_path(name: str) -> Path:
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} does not exist; use cases name files relative to {SQL_DIR}")
    return path


def read_sql(name: str) -> str:
    return sql_path(name).read_text()


def sql_hash(name: str) -> str:
    """Content hash of a SQL file: recorded in every partition and model it feeds."""
    return hashlib.sha256(sql_path(name).read_bytes()).hexdigest()[:16]


def bind(sql: str, dialect: str) -> str:
    """Rewrite ``:name`` placeholders into the paramstyle of ``dialect``."""
    if dialect == "sqlite":
        return sql  # sqlite3 understands :name natively
    if dialect == "postgresql":
        return _PLACEHOLDER.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))
    raise ValueError(f"unsupported dialect {dialect!r}")


def dialect_of(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return "sqlite"
    if uri.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise ValueError(
        f"warehouse URI {uri!r} is not supported; use sqlite:///path/to/file.db or "
        "postgresql://user@host:port/db (or an Airflow connection id in the DAG params)"
    )


@contextlib.contextmanager
def connect(uri: str) -> Iterator[Any]:
    """A DB-API connection for ``uri``; commits on success, rolls back on error, always closes."""
    dialect = dialect_of(uri)
    if dialect == "sqlite":
        path = Path(uri[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
    else:
        import psycopg2

        conn = psycopg2.connect(uri.replace("postgres://", "postgresql://", 1))
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def execute(conn: Any, uri: str, name: str, params: Mapping[str, Any] | None = None) -> None:
    cur = conn.cursor()
    cur.execute(bind(read_sql(name), dialect_of(uri)), dict(params or {}))


def execute_many(conn: Any, uri: str, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    cur = conn.cursor()
    sql = bind(read_sql(name), dialect_of(uri))
    if dialect_of(uri) == "postgresql":
        from psycopg2.extras import execute_batch

        execute_batch(cur, sql, rows, page_size=2000)  # one round trip per page, not per row
    else:
        cur.executemany(sql, rows)


def query_table(uri: str, name: str, params: Mapping[str, Any]) -> pa.Table:
    """Run the query in ``sql/<name>`` with bound ``params``; the result as a pyarrow Table."""
    with connect(uri) as conn:
        cur = conn.cursor()
        cur.execute(bind(read_sql(name), dialect_of(uri)), dict(params))
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    return pa.table({c: _arrow_column([r[i] for r in rows]) for i, c in enumerate(columns)})


def _arrow_column(values: list[Any]) -> pa.Array:
    """Integers stay int64, other numbers become float64 (Decimal included), anything else text.

    The same query gives the same Arrow types on SQLite and PostgreSQL as long as it casts its
    numeric results (``cast(... as double precision)``).
    """
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.int64())
    if present and all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def create_tables(uri: str) -> None:
    with connect(uri) as conn:
        execute(conn, uri, "warehouse/create_products.sql")


# --------------------------------------------------------------------------- catalogue loading


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (optionally .gz) or Parquet file as dicts."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh, delimiter="\t" if ".tsv" in name else ","))
    raise ValueError(f"{path}: unsupported file type; give a .csv, .csv.gz, .tsv or .parquet file")


def _derived_id(title: str, seen: dict[str, int]) -> str:
    """Stable id for a catalogue without an id column: hash of the title and its occurrence number."""
    k = seen.get(title, 0)
    seen[title] = k + 1
    return hashlib.sha1(f"{title}#{k}".encode()).hexdigest()[:16]


def listing_date(row_id: str, end_date: str, days: int) -> str:
    """Spread undated listings over ``days`` days ending at ``end_date``, by a stable hash of the id."""
    offset = int(hashlib.sha1(row_id.encode()).hexdigest(), 16) % days
    return (dt.date.fromisoformat(end_date) - dt.timedelta(days=offset)).isoformat()


def catalogue_rows(records: Sequence[Mapping[str, Any]], *, source: str, text_column: str,
                   label_column: str, id_column: str | None = None, date_column: str | None = None,
                   end_date: str = "2024-01-31", days: int = 30) -> list[dict[str, Any]]:
    """Map a user's catalogue records onto the warehouse ``products`` rows.

    Rows with an empty title are dropped (there is nothing to classify); rows with an empty category
    are kept with ``category = NULL`` (unlabelled rows still get soft labels).
    """
    if not records:
        raise ValueError(f"{source}: the file has no rows")
    columns = list(records[0].keys())
    for role, col in (("title", text_column), ("label", label_column), ("id", id_column),
                      ("date", date_column)):
        if col is not None and col not in columns:
            raise ValueError(
                f"{source}: the {role} column {col!r} is not in the file; its columns are {columns}. "
                f"Pass the right name with --{role}-column"
            )
    seen: dict[str, int] = {}
    out = []
    for rec in records:
        title = (rec.get(text_column) or "").strip() if rec.get(text_column) is not None else ""
        if not title:
            continue
        label = rec.get(label_column)
        label = str(label).strip() if label is not None and str(label).strip() else None
        row_id = str(rec[id_column]).strip() if id_column else _derived_id(title, seen)
        if date_column and rec.get(date_column):
            listed_on = str(rec[date_column])[:10]
        else:
            listed_on = listing_date(row_id, end_date, days)
        out.append({"product_id": row_id, "title": title, "category": label,
                    "listed_on": listed_on, "source": source})
    return out


def load_products(uri: str, rows: Sequence[Mapping[str, Any]], replace: bool = False) -> int:
    """Upsert ``rows`` into ``products`` (optionally emptying it first); returns the row count."""
    create_tables(uri)
    with connect(uri) as conn:
        if replace:
            execute(conn, uri, "warehouse/delete_products.sql")
        execute_many(conn, uri, "warehouse/upsert_product.sql", rows)
    return len(rows)


def load_catalogue_file(uri: str, path: str | Path, **kwargs: Any) -> int:
    path = Path(path)
    replace = kwargs.pop("replace", False)
    rows = catalogue_rows(_read_rows(path), source=path.name, **kwargs)
    return load_products(uri, rows, replace=replace)


def read_fashion_styles(folder: str | Path) -> list[dict[str, Any]]:
    """The Fashion Product Images catalogue: ``styles.csv.gz`` joined by position with the titles."""
    folder = Path(folder)
    styles, titles = folder / "styles.csv.gz", folder / "styles_text.csv.gz"
    for p in (styles, titles):
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; point --folder at the fashion_product_styles data set")
    a, b = _read_rows(styles), _read_rows(titles)
    if len(a) != len(b):
        raise ValueError(f"{folder}: styles has {len(a)} rows but titles has {len(b)}; the files must be row-aligned")
    return [{**x, **y} for x, y in zip(a, b)]
