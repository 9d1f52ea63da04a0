"""Airflow plugin: each night's HTML report, served by the api-server behind Airflow's login.

``GET /kd-reports/<dag_id>/<run_id>`` answers the page that the run's ``write_report`` task wrote
beside its ``report.json`` (the task's XCom names the file, on a local ``KD_HOME`` or an object store),
for a user allowed to read that DAG's runs (the UI's session cookie or an API token). The
``write_report`` task carries the "Night report" extra link to it (``kd_common.NightReportLink``).

Set ``AIRFLOW__CORE__PLUGINS_FOLDER`` to this folder on the api-server (the Makefile and the test
stack do); it needs the ``KD_HOME`` (and, on S3, ``KD_HOME_CONN_ID``) of the workers.
"""
from __future__ import annotations

import json

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.models.connection import Connection
from airflow.models.xcom import XComModel
from airflow.plugins_manager import AirflowPlugin

from kd_tasks.names import InputError
from kd_tasks.stages.html_report import PAGE_ROUTE, read_page
from kd_tasks.home import configure_s3_from_home_connection

REPORT_TASK = "write_report"  # the nightly task whose return value is the night's report.json

app = FastAPI(title="Nightly distillation reports")


@app.get("/{dag_id}/{run_id}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def night_report(dag_id: str, run_id: str, session: SessionDep) -> HTMLResponse:
    """The HTML report of run ``run_id`` of ``dag_id``."""
    value = session.scalar(select(XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == REPORT_TASK,
        XComModel.map_index == -1, XComModel.key == "return_value"))
    if value is None:
        raise HTTPException(404, f"run {run_id!r} of {dag_id!r} has no report: its {REPORT_TASK} task has not "
                                 "succeeded (yet)")
    try:
        report_path = json.loads(value)  # the column holds the JSON text of the task's return value
    except (TypeError, ValueError):
        report_path = value
    configure_s3_from_home_connection(Connection.get_connection_from_secrets)  # as the tasks take them
    try:
        return HTMLResponse(read_page(str(report_path)))
    except (InputError, FileNotFoundError) as exc:
        raise HTTPException(404, str(exc)) from exc


class KdReportsPlugin(AirflowPlugin):
    name = "kd_reports"
    fastapi_apps = [{"app": app, "url_prefix": PAGE_ROUTE, "name": "Nightly distillation reports"}]
