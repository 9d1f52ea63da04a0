"""The warehouse: SQLAlchemy engines and the SQL files of ``sql/``, bound and run. The loaders that
fill it live in ``kd_tasks.loaders``.

A warehouse is given as a SQLAlchemy URL (a string such as ``sqlite:///wh.db``,
``postgresql://user@host/db`` or ``mysql+pymysql://root@127.0.0.1/test``, or a ``URL``) or as an
``Engine`` (what the DAG layer gets from an Airflow connection's hook). Queries are written once with
``:name`` placeholders (SQLAlchemy's bind syntax); values are always bound by the driver, never
formatted into the SQL text.

**One SQL file, per-dialect forms where needed.** ``sql/<dir>/<name>.sql`` is what every engine runs,
unless a file ``<name>.<dialect>.sql`` sits beside it (``mysql`` serves MySQL and MariaDB: there
``||`` is a logical OR and ``cast(... as text)`` is a syntax error). ``sql_hash`` covers every form.

**Streamed.** ``stream_tables`` runs a query with a server-side cursor (PostgreSQL, MySQL/MariaDB;
SQLite's cursor is lazy by itself) and yields Arrow tables of at most ``batch_rows`` rows, so a window
of any size passes through bounded memory.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, Union

import pyarrow as pa

from .names import InputError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

Warehouse = Union[str, "URL", "Engine"]
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
# The SQL form each dialect reads first, then the next, then the default file.
DIALECT_FORMS = {"mariadb": ("mariadb", "mysql"), "mysql": ("mysql",)}
# Pure-Python drivers for a URL that names none (SQLAlchemy's defaults need C builds: mysqlclient).
DEFAULT_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql", "postgresql": "postgresql+psycopg"}
# Run once on every connection that queries: PostgreSQL's JIT spends more time compiling these
# analytical queries than it saves (8 of 12 s of a one-day purchase-intent extract).
SESSION_SETUP = {"postgresql": ("set jit = off",)}
STREAM_BATCH_ROWS = 50_000


# --------------------------------------------------------------------------- SQL files


def sql_forms(name: str) -> list[Path]:
    """The default file of ``name`` and every per-dialect form beside it."""
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} does not exist; use cases name files relative to {SQL_DIR}")
    return [path, *sorted(path.parent.glob(f"{path.stem}.*.sql"))]


def sql_path(name: str, dialect: str | None = None) -> Path:
    """The file ``dialect`` runs for ``name``: its own form if one exists, else the default."""
    default = sql_forms(name)[0]
    for form in DIALECT_FORMS.get(dialect or "", (dialect,) if dialect else ()):
        candidate = default.with_name(f"{default.stem}.{form}.sql")
        if candidate.is_file():
            return candidate
    return default


def read_sql(name: str, dialect: str | None = None) -> str:
    """The statement of ``name`` for ``dialect``, without its leading comment lines (so drivers that
    batch ``INSERT ... VALUES`` recognise it)."""
    lines = sql_path(name, dialect).read_text().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def sql_hash(name: str) -> str:
    """Content hash of a SQL file and its per-dialect forms: recorded in every partition and model it feeds."""
    h = hashlib.sha256()
    for i, path in enumerate(sql_forms(name)):
        if i:
            h.update(b"\x00" + path.name.encode() + b"\x00")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- engines


def redact(target: Any) -> str:
    """A warehouse URL (or engine) without its password (in the user-info part or a ``password=``
    query value): the only form of it that may be printed, logged, raised or stored."""
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        url = url.render_as_string(hide_password=True)
    out = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", str(url))
    return re.sub(r"(?i)((?:password|passwd|pwd)=)[^&;]*", r"\1***", out)


def to_url(target: Warehouse) -> "URL":
    """``target`` as a SQLAlchemy URL, with a pure-Python driver where the URL names none."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if hasattr(target, "dialect"):  # an Engine
        return target.url
    text = target if isinstance(target, str) else None
    if text is not None and text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://"):]
    try:
        url = make_url(text if text is not None else target)
    except ArgumentError:
        raise InputError(f"warehouse {redact(target)!r} is not a database URL; use e.g. sqlite:///path/to/file.db, "
                         "postgresql://user@host:5432/db or mysql+pymysql://user@host:3306/db (or an Airflow "
                         "connection id in the DAG params)") from None
    if url.drivername in DEFAULT_DRIVERS:
        url = url.set(drivername=DEFAULT_DRIVERS[url.drivername])
    return url


def dialect_of(target: Warehouse) -> str:
    """The SQL dialect of a warehouse (``sqlite``, ``postgresql``, ``mysql``, ``mariadb``, ...)."""
    if hasattr(target, "dialect"):
        return target.dialect.name
    url = to_url(target)
    try:
        url.get_dialect()
    except Exception:  # NoSuchModuleError, or the driver is not installed
        raise InputError(f"warehouse {redact(target)!r}: SQLAlchemy has no dialect or driver for "
                         f"{url.drivername!r}; install its driver, or use sqlite:///..., postgresql://... or "
                         "mysql+pymysql://...") from None
    return url.get_backend_name()


@contextlib.contextmanager
def engine(target: Warehouse) -> Iterator["Engine"]:
    """An engine for ``target``: the given one, or one made here (no pool: each use opens and closes its
    connection) and disposed after."""
    if hasattr(target, "dialect"):
        yield target
        return
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    dialect = dialect_of(target)  # a clear error for an unknown scheme
    url = to_url(target)
    if dialect == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(url, poolclass=NullPool)
    try:
        yield eng
    finally:
        eng.dispose()


@contextlib.contextmanager
def connect(target: Warehouse) -> Iterator["Connection"]:
    """A connection in a transaction: committed on success, rolled back on error, always closed."""
    with engine(target) as eng, eng.begin() as conn:
        for statement in SESSION_SETUP.get(conn.dialect.name, ()):
            conn.exec_driver_sql(statement)
        yield conn


def _form(dialect: Any) -> str:
    """The SQL form a connected dialect reads (``mariadb`` for MariaDB reached through a mysql:// URL)."""
    return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name


def _statement(conn: "Connection", name: str) -> Any:
    from sqlalchemy import text

    return text(read_sql(name, _form(conn.dialect)))


def execute(conn: "Connection", name: str, params: Mapping[str, Any] | None = None) -> None:
    conn.execute(_statement(conn, name), dict(params or {}))


def execute_many(conn: "Connection", name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One statement for many rows (the driver batches them: psycopg pipelines, PyMySQL writes
    multi-row INSERTs)."""
    if rows:
        conn.execute(_statement(conn, name), [dict(r) for r in rows])


# --------------------------------------------------------------------------- queries as Arrow


def stream_tables(target: Warehouse, name: str, params: Mapping[str, Any],
                  batch_rows: int = STREAM_BATCH_ROWS) -> Iterator[pa.Table]:
    """Run ``sql/<name>`` with bound ``params`` through a server-side cursor; yield the rows as Arrow
    tables of at most ``batch_rows`` rows (at least one table, maybe empty, so the columns are known)."""
    with connect(target) as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
            _statement(conn, name), dict(params))
        columns = list(result.keys())
        sent = False
        for rows in result.partitions(batch_rows):
            sent = True
            yield rows_to_table(columns, rows)
        if not sent:
            yield rows_to_table(columns, [])


def query_table(target: Warehouse, name: str, params: Mapping[str, Any]) -> pa.Table:
    """The whole result of ``sql/<name>`` as one Arrow table (for small results: counts, gold rows)."""
    return concat(list(stream_tables(target, name, params)))


def rows_to_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows of a result as an Arrow table: integers int64, other numbers float64 (decimals included),
    anything else text, so every engine gives the same types for the same query. A column with no
    value in these rows has the null type until ``concat`` meets its values (or makes it text)."""
    data = list(zip(*rows)) if rows else [()] * len(columns)
    return pa.table({c: _arrow_column(list(values)) for c, values in zip(columns, data)})


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Batches of one result as one table; columns that stayed empty become text."""
    table = pa.concat_tables(tables, promote_options="permissive")
    nulls = [i for i, f in enumerate(table.schema) if pa.types.is_null(f.type)]
    for i in nulls:
        table = table.set_column(i, table.schema.field(i).name, table.column(i).cast(pa.string()))
    return table


_NUMERIC = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)


def _arrow_column(values: list[Any]) -> pa.Array:
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds: text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
    kind = arr.type
    if pa.types.is_null(kind) or pa.types.is_string(kind):
        return arr
    if pa.types.is_integer(kind) and not pa.types.is_boolean(kind):
        return arr.cast(pa.int64())
    if any(check(kind) for check in _NUMERIC):
        return arr.cast(pa.float64())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())
