"""Nightly search-relevance distillation: search pairs -> cross-encoder scores -> two-tower student.

Each run processes one partition date ``ds``: that night's (query, product) pairs, judged or not, plus
sampled catalogue products per query (``sql/search_relevance/extract_pairs.sql``). The cross-encoder
teacher scores every pair; a two-tower student is distilled from the scores of the training window
(pointwise, listwise and InfoNCE terms, plus the human grade where a pair was judged), evaluated per
query on NDCG@10 against the teacher and the champion on the held-out queries, and promoted through
the same gate, backfill and registry rules as every nightly DAG.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag

from kd_common import DEFAULT_ARGS, deadline_alert, distill_params, nightly_tasks

USE_CASE = "search_relevance"


@dag(
    dag_id="kd_search_relevance_nightly",
    description="Distill the search cross-encoder into a two-tower student every night, behind a quality gate.",
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
def kd_search_relevance_nightly():
    nightly_tasks(USE_CASE)


kd_search_relevance_nightly()
