"""Nightly product-category distillation: warehouse SQL -> teacher soft labels -> student -> gate.

Each run processes one partition date ``ds`` (the logical date, i.e. the day whose data interval
just closed): extract that day's listings, let the teacher label every extract partition in the
training window, distill a student (and a no-KD baseline), evaluate all of them against the teacher
and the champion on the fixed held-out slice, then promote through the gate or hold.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, dag, task

from kd_common import DEFAULT_ARGS, distill_params, run_ds, warehouse_uri

USE_CASE = "product_category"


def _use_case(context):
    from kd_tasks.nightly import resolve_use_case

    return resolve_use_case(USE_CASE, context["params"])


@dag(
    dag_id="kd_product_category_nightly",
    description="Distill the product-category teacher into a fast student every night, behind a quality gate.",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),  # early: backfills may reach far back
    catchup=False,
    max_active_runs=1,  # each night warm-starts from the previous night's champion
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

    @task(execution_timeout=dt.timedelta(hours=4))
    def generate_soft_labels(extracted: dict, **context) -> dict:
        from kd_tasks.nightly import soft_labels

        return soft_labels(_use_case(context), run_ds(context))

    @task(execution_timeout=dt.timedelta(hours=4))
    def distill_student(labelled: dict, **context) -> dict:
        from kd_tasks.nightly import distill

        return distill(_use_case(context), run_ds(context), labelled["teacher_version"], context["run_id"])

    @task
    def evaluate_student(distilled: dict, **context) -> dict:
        from kd_tasks.nightly import evaluate

        return evaluate(_use_case(context), run_ds(context), distilled, context["params"]["dry_run"])

    @task.branch
    def gate_student(evaluated: dict) -> str:
        return "promote_student" if evaluated["decision"] == "promote" else "hold_student"

    @task
    def promote_student(distilled: dict, **context) -> dict:
        from kd_tasks.nightly import promote

        return promote(_use_case(context), run_ds(context), distilled, context["run_id"])

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
    branch = gate_student(evaluated)
    branch >> [promote_student(distilled), hold_student(evaluated)] >> write_report(evaluated)


kd_product_category_nightly()
