"""Airflow-side helpers shared by the kd_* DAG files: default args, Params, ds and warehouse lookup.

Only light imports here: this module is loaded every time the DAG files are parsed.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, Param

from kd_tasks.config import STUDENT_SIZES, DistillConfig

DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
    "execution_timeout": dt.timedelta(hours=2),
}
_D = DistillConfig()
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
HEAVY_POOL = "kd_heavy"  # teacher inference, training and latency measurement: create it with 1-2 slots


def soft_labels_asset(use_case: str) -> Asset:
    """Soft-label partitions of a use case; each event's extra names the ds and the teacher version."""
    return Asset(name=f"kd_{use_case}_soft_labels", uri=f"kd://{use_case}/lake/soft_labels")


def production_model_asset(use_case: str) -> Asset:
    """The promoted model of a use case; each event's extra names the version, path and teacher."""
    return Asset(name=f"kd_{use_case}_production_model", uri=f"kd://{use_case}/registry/production")


def distill_params() -> dict[str, Param]:
    """Params a person changes by hand on a manual trigger; JSON-schema validated before a run exists."""
    return {
        "temperature": Param(_D.temperature, type="number", exclusiveMinimum=0, maximum=20,
                             description="Distillation temperature T (softens teacher and student)."),
        "alpha": Param(_D.alpha, type="number", minimum=0, maximum=1,
                       description="Weight of the T²-scaled KL term; 1 - alpha weights CE on gold rows."),
        "epochs": Param(_D.epochs, type="integer", minimum=1, maximum=100, description="Student training epochs."),
        "learning_rate": Param(_D.learning_rate, type="number", exclusiveMinimum=0, maximum=1,
                               description="AdamW learning rate of the student."),
        "seed": Param(_D.seed, type="integer", minimum=0, description="Seed: same seed + same data = same student."),
        "student_size": Param(_D.student_size, type="string", enum=sorted(STUDENT_SIZES),
                              description="Student capacity (hash buckets / embedding dim / hidden units)."),
        "lookback_days": Param(_D.lookback_days, type="integer", minimum=1, maximum=90,
                               description="Training window: soft-label partitions ds-lookback+1 .. ds."),
        "extract_lookback_days": Param(1, type="integer", minimum=1, maximum=366,
                                       description="Extract window: listings of ds-extract_lookback_days+1 .. ds "
                                                   "(raise it on a first run to pull history into one partition)."),
        "dry_run": Param(False, type="boolean", description="Evaluate and gate, but never promote."),
        "force_promote": Param(False, type="boolean",
                               description="Promote whatever the gate says (needs force_reason; logged)."),
        "force_reason": Param("", type="string", description="Why a promotion is forced; written to the log."),
        "allow_backfill_promotion": Param(False, type="boolean",
                                          description="Let a backfill run move the production alias; by "
                                                      "default backfills only record candidates."),
        "on_empty": Param("fail", type="string", enum=["fail", "skip"],
                          description="An empty extract window fails the run, or skips the rest of it."),
        "warehouse_conn_id": Param("", type="string",
                                   description="Airflow connection id of the warehouse; empty = $KD_WAREHOUSE "
                                               "or the embedded SQLite file under KD_HOME."),
        "ds": Param(None, type=["null", "string"], pattern=DATE_PATTERN,
                    description="Date to process (YYYY-MM-DD); overrides the logical date. Needed for runs "
                                "without a logical date."),
    }


def is_backfill(context: dict[str, Any]) -> bool:
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type)) == "backfill"


def run_ds(context: dict[str, Any]) -> str:
    """The partition date: the ``ds`` param, else the logical date, else the data interval start."""
    override = context["params"].get("ds")
    if override:
        return override
    for key in ("logical_date", "data_interval_start"):
        value = context.get(key)
        if value is not None:
            return value.date().isoformat()
    raise ValueError("this run has no logical date; trigger it with conf {\"ds\": \"YYYY-MM-DD\"}")


def warehouse_uri(context: dict[str, Any]) -> str:
    """URI of the warehouse: an Airflow connection when ``warehouse_conn_id`` is set, else the default."""
    conn_id = context["params"].get("warehouse_conn_id")
    if conn_id:
        from airflow.sdk import Connection

        return Connection.get(conn_id).get_uri()
    from kd_tasks.config import default_warehouse_uri

    return default_warehouse_uri()
