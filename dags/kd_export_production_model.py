"""Export each promoted student for serving, for every use case whose student family exports.

Scheduled on the production-model assets that ``promote_student`` updates (any of them): each
promotion triggers an export of that version to ``registry/<use_case>/exports/<version>/``,
smoke-tested against the registry copy on the held-out rows of its data window. A product-category
student becomes ``student.pt2`` (torch.export); a search-relevance two-tower student its query tower
(``query_tower.pt2``) and the vectors of its window's products (``item_vectors.npy``).
"""
from __future__ import annotations

import datetime as dt
import functools
import operator

from airflow.sdk import Param, dag, task

from kd_common import DEFAULT_ARGS, exportable_use_cases, production_model_asset, task_guard, version_param

EXPORTABLE = exportable_use_cases()
PRODUCTION_MODELS = {production_model_asset(name).name: name for name in EXPORTABLE}


@dag(
    dag_id="kd_export_production_model",
    description="Export each promoted student (torch.export; a two-tower's query tower and item vectors) and "
                "smoke-test it.",
    schedule=functools.reduce(operator.or_, [production_model_asset(name) for name in EXPORTABLE]),
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"use_case": Param("product_category", type="string", enum=EXPORTABLE,
                              description="Use case to export on a manual run (an asset-triggered run exports the "
                                          "use cases whose promotions triggered it)."),
            "version": version_param("Version to export on a manual run (12 hex digits); default: the "
                                     "triggering event's version, else production.")},
    tags=["kd", "export"],
    doc_md=__doc__,
)
def kd_export_production_model():
    @task
    def export_production_model(**context) -> dict:
        with task_guard():
            from kd_tasks.stages.export import export_production
            from kd_tasks.use_cases import get_use_case

            # the last promotion of each use case that triggered this run (events come oldest first)
            requests: dict[str, str | None] = {}
            for events in (context.get("triggering_asset_events") or {}).values():
                for event in events:
                    use_case = PRODUCTION_MODELS.get(event.asset.name)
                    if use_case is not None:
                        requests[use_case] = (event.extra or {}).get("version", requests.get(use_case))
            if not requests:  # a manual run
                requests = {context["params"]["use_case"]: context["params"].get("version")}
            return {name: export_production(get_use_case(name), version=version) for name, version in requests.items()}

    export_production_model()


kd_export_production_model()
