"""Where things live, from the environment: ``KD_HOME`` and the default warehouse."""
from __future__ import annotations

import os
from pathlib import Path

from .names import ConfigError


def kd_home() -> Path:
    """Root of everything the pipeline writes: ``$KD_HOME`` (a path or ``file://`` URI), default ``./var``."""
    raw = os.environ.get("KD_HOME", "var")
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    elif "://" in raw:
        raise ConfigError(
            f"KD_HOME={raw!r}: only local paths and file:// URIs are supported; "
            "mount the object store or set KD_HOME to a local directory"
        )
    return Path(raw).resolve()


def cache_dir() -> Path:
    """This worker's cache of things derived from content-versioned inputs (an int8 teacher):
    ``$KD_CACHE_DIR``, default ``KD_HOME/cache``. Safe to delete; rebuilt on use."""
    raw = os.environ.get("KD_CACHE_DIR")
    return Path(raw).resolve() if raw else kd_home() / "cache"


def default_warehouse_uri() -> str:
    """``$KD_WAREHOUSE`` if set, else the embedded SQLite file under KD_HOME."""
    return os.environ.get("KD_WAREHOUSE") or f"sqlite:///{kd_home() / 'warehouse.db'}"
