"""Export the product-category production student for serving whenever a new one is promoted.

Scheduled on the production-model asset that ``promote_student`` updates: each promotion triggers an
export of that version to ``registry/product_category/exports/<version>/student.pt2`` (torch.export),
smoke-tested against the registry copy on the held-out rows of its data window (same predictions).
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from kd_common import DEFAULT_ARGS, task_guard, production_model_asset, version_param

USE_CASE = "product_category"
PRODUCTION_MODEL = production_model_asset(USE_CASE)


@dag(
    dag_id="kd_export_production_model",
    description="Export each promoted product-category student (torch.export) and smoke-test it.",
    schedule=[PRODUCTION_MODEL],
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"version": version_param("Version to export on a manual run (12 hex digits); default: the "
                                     "triggering event's version, else production.")},
    tags=["kd", "product_category", "export"],
    doc_md=__doc__,
)
def kd_export_production_model():
    @task
    def export_production_model(**context) -> dict:
        with task_guard():
            from kd_tasks.stages.export import export_production
            from kd_tasks.use_cases import get_use_case

            version = context["params"].get("version")
            for events in (context.get("triggering_asset_events") or {}).values():
                for event in events:  # oldest first: the last promotion wins
                    version = (event.extra or {}).get("version", version)
            return export_production(get_use_case(USE_CASE), version=version)

    export_production_model()


kd_export_production_model()
