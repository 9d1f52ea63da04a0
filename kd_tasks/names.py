"""Names that arrive from outside (DAG Params, CLI flags, run conf, manifest fields) and become parts
of paths: each is checked against its grammar before it touches the file system, and every path built
from one is checked to be a direct child of the folder it belongs to.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

# A model or teacher version is a content hash: 12 lower-case hex digits (``teacher.content_version``).
VERSION_PATTERN = r"^[0-9a-f]{12}$"
CONN_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,250}$"
# A labelling: the teacher version, plus how it ran where that changes the numbers (fp32 adds nothing).
LABELLING_PATTERN = r"^[0-9a-f]{12}(-(bf16|fp16|int8))?$"
# A use case name is a lower-case identifier (and must be declared in config.USE_CASES to be run).
USE_CASE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# A partition date: YYYY-MM-DD with a month 01-12 and a day 01-31 (the calendar is checked by parse_ds).
DATE_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


class InputError(ValueError):
    """A value from outside is invalid. Deterministic: retrying the same input cannot succeed."""


class ConfigError(InputError):
    """A configuration value is unknown or out of range."""


def _check(value: object, pattern: str, what: str, example: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise InputError(f"{what} {value!r} is not valid: it must match {pattern} (e.g. {example!r})")
    return value


def version(value: object, what: str = "version") -> str:
    return _check(value, VERSION_PATTERN, what, "3f2a9c01b7de")


def conn_id(value: object) -> str:
    """An Airflow connection id (letters, digits, ``_ . -``)."""
    return _check(value, CONN_ID_PATTERN, "connection id", "warehouse_pg")


def labelling(value: object) -> str:
    return _check(value, LABELLING_PATTERN, "labelling", "3f2a9c01b7de or 3f2a9c01b7de-bf16")


def use_case_name(value: object) -> str:
    return _check(value, USE_CASE_PATTERN, "use case", "product_category")


def ds(value: object) -> str:
    """A real calendar date YYYY-MM-DD (``2024-13-45`` and ``2024-02-30`` are refused)."""
    try:
        if not isinstance(value, str) or not re.fullmatch(DATE_PATTERN, value):
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"ds {value!r} is not a calendar date YYYY-MM-DD (e.g. '2024-01-10')") from None
    return value


def child(parent: Path, name: str) -> Path:
    """``parent / name``, refusing any ``name`` that would not be a direct child of ``parent``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise InputError(f"{name!r} is not a plain name inside {parent}")
    path = parent / name
    if path.parent.resolve() != parent.resolve() or path.resolve().parent != parent.resolve():
        raise InputError(f"{name!r} would leave {parent}")
    return path
