"""Where things live, from the environment: ``KD_HOME`` (local or on S3), this machine's local folder,
the worker cache and the default warehouse (the first three are ``storage.fs``'s, named here too)."""
from __future__ import annotations

import os

from .storage.fs import cache_dir, kd_home, local_dir

__all__ = ["cache_dir", "default_warehouse_uri", "kd_home", "local_dir"]


def default_warehouse_uri() -> str:
    """``$KD_WAREHOUSE`` if set, else the embedded SQLite file under ``local_dir()``."""
    return os.environ.get("KD_WAREHOUSE") or f"sqlite:///{local_dir() / 'warehouse.db'}"
