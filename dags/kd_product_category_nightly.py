"""Nightly product-category distillation: warehouse SQL -> teacher soft labels -> student -> gate.

Each run processes one partition date ``ds`` (the logical date, i.e. the day whose data interval
just closed; or the ``ds`` param for runs without one): extract that day's listings, let the teacher
label every extract partition in the training window, distill a student (and a no-KD baseline),
evaluate them against the teacher and the champion on the fixed held-out slice, then promote
through the gate, hold, or — in a backfill — record a candidate without touching production.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag, task

from kd_common import (DEFAULT_ARGS, HEAVY_POOL, distill_params, is_backfill, production_model_asset, run_ds,
                       soft_labels_asset, warehouse_uri)

USE_CASE = "product_category"
SOFT_LABELS = soft_labels_asset(USE_CASE)
PRODUCTION_MODEL = production_model_asset(USE_CASE)


def _use_case(context):
    from kd_tasks.nightly import resolve_use_case

    return resolve_use_case(USE_CASE, context["params"])


@dag(
    dag_id="kd_product_category_nightly",
    description="Distill the product-category teacher into a fast student every night, behind a quality gate.",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),  # early: backfills may reach far back
    catchup=False,
    max_active_runs=1,  # runs depend on earlier dates (training window, warm start): one at a time, in order
    default_args=DEFAULT_ARGS,
    params=distill_params(),
    tags=["kd", "product_category", "nightly"],
    doc_md=__doc__,
)
def kd_product_category_nightly():
    @task
    def extract_products(**context) -> dict:
        from kd_tasks.extract import EmptyPartitionError
        from kd_tasks.nightly import extract

        try:
            return extract(_use_case(context), run_ds(context), warehouse_uri(context))
        except EmptyPartitionError as exc:
            if context["params"]["on_empty"] != "skip":
                raise
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(str(exc)) from exc

    @task(pool=HEAVY_POOL, outlets=[SOFT_LABELS], execution_timeout=dt.timedelta(hours=4))
    def generate_soft_labels(extracted: dict, **context) -> dict:
        from kd_tasks.nightly import soft_labels

        result = soft_labels(_use_case(context), run_ds(context))
        context["outlet_events"][SOFT_LABELS].extra = {
            "ds": run_ds(context), "teacher_version": result["teacher_version"], "labelled": result["labelled"]}
        return result

    @task(pool=HEAVY_POOL, execution_timeout=dt.timedelta(hours=4))
    def distill_student(labelled: dict, **context) -> dict:
        from kd_tasks.nightly import distill

        return distill(_use_case(context), run_ds(context), labelled, context["run_id"])

    @task(pool=HEAVY_POOL)
    def evaluate_student(distilled: dict, **context) -> dict:
        from kd_tasks.nightly import evaluate

        p = context["params"]
        return evaluate(_use_case(context), run_ds(context), distilled, p["dry_run"],
                        is_backfill=is_backfill(context), allow_backfill_promotion=p["allow_backfill_promotion"],
                        force_promote=p["force_promote"], force_reason=p["force_reason"])

    @task.branch
    def gate_student(evaluated: dict) -> str:
        return {"promote": "promote_student", "candidate": "record_candidate"}.get(evaluated["action"],
                                                                                   "hold_student")

    @task(outlets=[PRODUCTION_MODEL])
    def promote_student(distilled: dict, evaluated: dict, **context) -> dict:
        from kd_tasks.nightly import promote

        outcome = promote(_use_case(context), run_ds(context), distilled, context["run_id"],
                          reason=evaluated["action_reason"])
        if outcome["outcome"] == "promoted":
            context["outlet_events"][PRODUCTION_MODEL].extra = {
                "version": outcome["version"], "path": outcome["path"], "ds": run_ds(context),
                "teacher_version": distilled["teacher_version"]}
        return outcome

    @task
    def record_candidate(distilled: dict, evaluated: dict, **context) -> dict:
        from kd_tasks.nightly import record_candidate

        return record_candidate(_use_case(context), run_ds(context), distilled, context["run_id"],
                                evaluated["action_reason"])

    @task
    def hold_student(evaluated: dict, **context) -> dict:
        from kd_tasks.nightly import hold

        return hold(_use_case(context), evaluated)

    @task(trigger_rule="none_failed_min_one_success")
    def write_report(evaluated: dict, **context) -> str:
        from kd_tasks.nightly import write_report

        return write_report(_use_case(context), run_ds(context), context["run_id"], evaluated["run_dir"])

    distilled = distill_student(generate_soft_labels(extract_products()))
    evaluated = evaluate_student(distilled)
    outcomes = [promote_student(distilled, evaluated), record_candidate(distilled, evaluated),
                hold_student(evaluated)]
    gate_student(evaluated) >> outcomes >> write_report(evaluated)


kd_product_category_nightly()
