"""Where things live, from the environment: ``KD_HOME`` (local or on S3), this machine's local folder,
the worker cache and the default warehouse (the first three are ``storage.fs``'s, named here too)."""
from __future__ import annotations

import os
from typing import Any, Callable

from . import names
from .storage.fs import cache_dir, configure_s3, kd_home, local_dir

__all__ = ["cache_dir", "configure_s3_from_home_connection", "default_warehouse_uri", "kd_home", "local_dir"]


def default_warehouse_uri() -> str:
    """``$KD_WAREHOUSE`` if set, else the embedded SQLite file under ``local_dir()``."""
    return os.environ.get("KD_WAREHOUSE") or f"sqlite:///{local_dir() / 'warehouse.db'}"


HOME_CONN_ENV = "KD_HOME_CONN_ID"  # names the Airflow connection (type aws) of an s3:// KD_HOME


def configure_s3_from_home_connection(get_connection: Callable[[str], Any]) -> None:
    """With ``$KD_HOME_CONN_ID`` set, ``configure_s3`` from that Airflow AWS connection, fetched with
    ``get_connection`` (a task's ``BaseHook.get_connection``, a server's
    ``Connection.get_connection_from_secrets``): login = access key id, password = secret access key,
    extra ``endpoint_url`` (or ``service_config.s3.endpoint_url``), ``region_name``,
    ``aws_session_token``. Without it, AWS's usual chain applies (environment, profile, instance role)."""
    conn_id = os.environ.get(HOME_CONN_ENV)
    if not conn_id:
        return
    conn = get_connection(names.conn_id(conn_id))
    extra = conn.extra_dejson or {}
    configure_s3(access_key=conn.login or None, secret_key=conn.password or None,
                 session_token=extra.get("aws_session_token") or None,
                 endpoint_url=extra.get("endpoint_url") or (extra.get("service_config") or {}).get("s3", {}).get(
                     "endpoint_url") or None,
                 region=extra.get("region_name") or None)
