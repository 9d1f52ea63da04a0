"""Nightly product-category distillation: warehouse SQL -> teacher soft labels -> student -> gate.

Each run processes one partition date ``ds`` (the logical date, i.e. the day whose data interval
just closed; or the ``ds`` param for runs without one): extract that day's listings, let the teacher
label every extract partition in the training window, distill a student (and a no-KD baseline),
evaluate them against the teacher and the champion on the fixed held-out slice, then promote
through the gate, hold, or — in a backfill — record a candidate without touching production.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag

from kd_common import DEFAULT_ARGS, deadline_alert, distill_params, nightly_tasks

USE_CASE = "product_category"


@dag(
    dag_id="kd_product_category_nightly",
    description="Distill the product-category teacher into a fast student every night, behind a quality gate.",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),  # early: backfills may reach far back
    catchup=False,
    max_active_runs=1,  # runs depend on earlier dates (training window, warm start): one at a time, in order
    default_args=DEFAULT_ARGS,
    deadline=deadline_alert(),  # KD_NIGHTLY_DEADLINE_HOURS (README, Alerts)
    params=distill_params(USE_CASE),
    tags=["kd", USE_CASE, "nightly"],
    doc_md=__doc__,
)
def kd_product_category_nightly():
    nightly_tasks(USE_CASE)


kd_product_category_nightly()
