"""Nightly purchase-intent distillation with privileged features: behaviour logs -> student.

Each run processes one partition date ``ds``: the (user, item) candidates whose label window closes
on ``ds``. ``sql/purchase_intent/extract_candidates.sql`` computes their serving-time features from
events strictly before the cutoff, their privileged features from the label window (known only after
the fact) and the label (bought in the window). The teacher, a deep MLP on serving + privileged
features, writes soft labels; a small MLP on serving-time features only is distilled from them (binary
KD with a temperature) and gated on ROC-AUC retention and champion regression, through the same
stages as every nightly DAG. Backfill it over the real Taobao days or the Online Retail year; set
``label_horizon_days`` (1 for Taobao, 7 for Online Retail's "buys it again within 7 days") and
``candidate_days`` per data set.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag

from kd_common import DEFAULT_ARGS, deadline_alert, distill_params, nightly_tasks

USE_CASE = "purchase_intent"


@dag(
    dag_id="kd_purchase_intent_nightly",
    description="Distill the privileged-feature purchase-intent teacher into a serving-time student nightly.",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),  # early: backfills reach 2010 and 2017
    catchup=False,
    max_active_runs=1,  # runs depend on earlier dates (training window, warm start): one at a time, in order
    default_args=DEFAULT_ARGS,
    deadline=deadline_alert(),  # KD_NIGHTLY_DEADLINE_HOURS (README, Alerts)
    params=distill_params(USE_CASE),
    tags=["kd", USE_CASE, "nightly"],
    doc_md=__doc__,
)
def kd_purchase_intent_nightly():
    nightly_tasks(USE_CASE)


kd_purchase_intent_nightly()
