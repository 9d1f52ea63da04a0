"""The warehouse: DB-API connections and the SQL files of ``sql/``, bound and run. The loaders that
fill it live in ``kd_tasks.loaders``.

Queries are written once with ``:name`` placeholders; ``bind`` rewrites the placeholders to the
driver's paramstyle (``?``-free named style for sqlite3, ``%(name)s`` for psycopg2). Values are always
bound by the driver, never formatted into the SQL text.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa

from .names import InputError

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


def redact(uri: str) -> str:
    """``uri`` without its password (in the user-info part or a ``password=`` query value): the only
    form of a warehouse URI that may be printed, logged, raised or stored."""
    out = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", str(uri))
    return re.sub(r"(?i)((?:password|passwd|pwd)=)[^&;]*", r"\1***", out)


def dialect_of(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return "sqlite"
    if uri.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise InputError(
        f"warehouse URI {redact(uri)!r} is not supported; use sqlite:///path/to/file.db or "
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
