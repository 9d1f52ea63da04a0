"""Airflow-side building blocks shared by the kd_* DAG files: default args, Params, ds and warehouse
lookup, and ``nightly_tasks``, the task chain every nightly distillation DAG wires the same way.

Only light imports here: this module is loaded every time the DAG files are parsed.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
from typing import Any, Iterator

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import Asset, BaseOperatorLink, Param, task

from kd_tasks import names
from kd_tasks.config import param_schemas
from kd_tasks.use_cases import get_use_case
from kd_tasks.names import DATE_PATTERN, VERSION_PATTERN, InputError


def _alert_email() -> dict[str, Any]:
    """The SmtpNotifier arguments of ``KD_ALERT_EMAIL`` / ``KD_ALERT_FROM`` / ``KD_ALERT_SMTP_CONN_ID``
    (``to`` empty when no address is set)."""
    return {"to": [a.strip() for a in os.environ.get("KD_ALERT_EMAIL", "").split(",") if a.strip()],
            "from_email": os.environ.get("KD_ALERT_FROM") or None,
            "smtp_conn_id": os.environ.get("KD_ALERT_SMTP_CONN_ID", "smtp_default")}


def alert_notifiers() -> list[Any]:
    """Failure and retry notifiers, from the environment of the process that parses the DAG files:
    ``KD_ALERT_EMAIL`` (comma-separated addresses) through the SMTP connection ``KD_ALERT_SMTP_CONN_ID``
    (default ``smtp_default``; the sender is ``KD_ALERT_FROM``, else the connection's ``from_email``),
    and ``KD_ALERT_SLACK_CONN_ID`` (+ ``KD_ALERT_SLACK_CHANNEL``) through the Slack provider."""
    out: list[Any] = []
    email = _alert_email()
    if email["to"]:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        out.append(SmtpNotifier(**email))
    slack = os.environ.get("KD_ALERT_SLACK_CONN_ID")
    if slack:
        try:
            from airflow.providers.slack.notifications.slack import SlackNotifier
        except ImportError as exc:
            raise ImportError("KD_ALERT_SLACK_CONN_ID is set but the Slack provider is not installed: pip install "
                              "apache-airflow-providers-slack in the Airflow environment") from exc
        out.append(SlackNotifier(slack_conn_id=slack, channel=os.environ.get("KD_ALERT_SLACK_CHANNEL", "#kd-alerts"),
                                 text=":red_circle: {{ ti.dag_id }}.{{ ti.task_id }} {{ ti.state }} (try "
                                      "{{ ti.try_number }}), ds={{ params.ds or ds }}: {{ ti.log_url }}"))
    return out


def deadline_alert() -> Any:
    """``KD_NIGHTLY_DEADLINE_HOURS``: a nightly run not finished this many hours after its logical date
    (the start of the day it processes; 30 = 06:00 UTC the next morning for @daily) alerts the
    ``KD_ALERT_EMAIL`` addresses (an Airflow 3.1+ deadline alert, run by the triggerer). None when unset."""
    hours = os.environ.get("KD_NIGHTLY_DEADLINE_HOURS")
    email = _alert_email()
    if not hours:
        return None
    if not email["to"]:
        raise ValueError("KD_NIGHTLY_DEADLINE_HOURS is set but KD_ALERT_EMAIL is not: name who to tell")
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=dt.timedelta(hours=float(hours)),
        callback=AsyncCallback(SmtpNotifier, kwargs={
            **email,
            "subject": f"[kd] nightly run missed its deadline ({hours} h after its logical date)",
            # the triggerer renders it with the run as the REST API shows it (DAGRunResponse: dag_run_id)
            "html_content": "The nightly run {{ dag_run.dag_id }} {{ dag_run.dag_run_id }} (logical date "
                            "{{ dag_run.logical_date }}, state {{ dag_run.state }}) has not finished "
                            f"{hours} hours after its logical date."}))


def approval_notifiers() -> list[Any]:
    """Who hears that a promotion waits for approval: the ``KD_ALERT_EMAIL`` addresses."""
    email = _alert_email()
    if not email["to"]:
        return []
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return [SmtpNotifier(**email, subject="[kd] a promotion waits for your approval: {{ ti.dag_id }} {{ ti.run_id }}",
                         html_content="The task {{ ti.task_id }} of {{ ti.dag_id }} run {{ ti.run_id }} waits for "
                                      "Promote or Hold in Airflow's Required Actions: {{ ti.log_url }}")]


_NOTIFIERS = alert_notifiers()
DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
    "execution_timeout": dt.timedelta(hours=2),
    **({"on_failure_callback": _NOTIFIERS, "on_retry_callback": _NOTIFIERS} if _NOTIFIERS else {}),
}
HEAVY_POOL = "kd_heavy"  # teacher inference, training and latency measurement: create it with 1-2 slots
# The Celery queue of the teacher's tasks (soft labels, fine-tuning): GPU workers serve only this one.
# A deployment without such workers serves it from its ordinary workers (airflow celery worker -q default,teacher).
TEACHER_QUEUE = os.environ.get("KD_TEACHER_QUEUE", "teacher")


def object_store_credentials() -> None:
    """The object store's credentials, endpoint and region from the Airflow connection that
    ``$KD_HOME_CONN_ID`` names (so they come from Airflow's secrets backend, never from code or logs)."""
    from airflow.sdk import BaseHook

    from kd_tasks.home import configure_s3_from_home_connection

    configure_s3_from_home_connection(BaseHook.get_connection)


def ds_param(description: str) -> Param:
    """A partition date: a real calendar date (the pattern and JSON schema's date format), or null."""
    return Param(None, type=["null", "string"], pattern=DATE_PATTERN, format="date", description=description)


def version_param(description: str) -> Param:
    """A model version: a content hash of 12 hex digits, or null."""
    return Param(None, type=["null", "string"], pattern=VERSION_PATTERN, description=description)


@contextlib.contextmanager
def task_guard() -> Iterator[None]:
    """Around every task body: what Airflow's retries and signals need from a long-running task.

    - A deterministic input error (a bad name, value or config) fails the task at once: retrying the
      same input cannot succeed, and the retries would only delay the error by their retry delays.
    - SIGTERM (a task marked failed or success, a cancelled run, a worker's shutdown) stops the task
      within moments, wherever it is (teacher fine-tuning included). Airflow's own handler only calls
      ``on_kill``, and stays installed after the task: an ``airflow dags test`` waiting out a retry
      delay would then ignore SIGTERM, so after the task SIGTERM ends the process again.
    """
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()  # signals can only be set from there
    object_store_credentials()

    def terminate(signum, frame):
        from airflow.sdk.exceptions import AirflowTaskTerminated

        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise AirflowTaskTerminated(f"received signal {signum}: stopping the task")

    if main:
        signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except InputError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def soft_labels_asset(use_case: str) -> Asset:
    """Soft-label partitions of a use case; each event's extra names the ds and the teacher version."""
    return Asset(name=f"kd_{use_case}_soft_labels", uri=f"kd://{use_case}/lake/soft_labels")


def production_model_asset(use_case: str) -> Asset:
    """The promoted model of a use case; each event's extra names the version, path and teacher."""
    return Asset(name=f"kd_{use_case}_production_model", uri=f"kd://{use_case}/registry/production")


def exportable_use_cases() -> list[str]:
    """The use cases whose student family exports for serving (``kd_tasks.models.Family.exportable``)."""
    from kd_tasks.models import family
    from kd_tasks.use_cases import USE_CASES

    return sorted(name for name, use_case in USE_CASES.items() if family(use_case.student_family).exportable)


def distill_params(use_case: str = "product_category") -> dict[str, Param]:
    """Params a person changes by hand on a manual trigger; JSON-schema validated before a run exists.

    The use case's config fields declared as Params (``kd_tasks.config.param``) and its
    ``extract_params`` become Params with the declaration's values as defaults; then the run controls.
    """
    declared = {name: Param(schema.pop("default"), **schema)
                for name, schema in param_schemas(get_use_case(use_case)).items()}
    return {**declared,
        "dry_run": Param(False, type="boolean", description="Evaluate and gate, but never promote."),
        "force_promote": Param(False, type="boolean",
                               description="Promote whatever the gate says (needs force_reason; logged)."),
        "force_reason": Param("", type="string", description="Why a promotion is forced; written to the log."),
        "allow_backfill_promotion": Param(False, type="boolean",
                                          description="Let a backfill run move the production alias; by "
                                                      "default backfills only record candidates."),
        "approval": Param("when_needed", type="string", enum=["when_needed", "off"],
                          description="when_needed: a forced or borderline promotion waits in approve_promotion "
                                      "for a person (Airflow's Required Actions); off: never waits (no one to "
                                      "ask, e.g. airflow dags test)."),
        "approval_timeout_minutes": Param(APPROVAL_TIMEOUT_MINUTES, type="integer", minimum=1,
                                          description="Minutes a promotion waits for an answer; then it is "
                                                      "held (the default answer), logged as rejected."),
        "on_empty": Param("fail", type="string", enum=["fail", "skip"],
                          description="An empty extract window fails the run, or skips the rest of it."),
        "warehouse_conn_id": Param("", type="string",
                                   description="Airflow connection id of the warehouse; empty = $KD_WAREHOUSE "
                                               "or the embedded SQLite file under KD_HOME."),
        "ds": ds_param("Date to process (YYYY-MM-DD); overrides the logical date. Needed for runs "
                       "without a logical date."),
    }


def is_backfill(context: dict[str, Any]) -> bool:
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type)) == "backfill"


def run_ds(context: dict[str, Any]) -> str:
    """The partition date: the ``ds`` param, else the logical date, else the data interval start."""
    override = context["params"].get("ds")
    if override:
        return names.ds(override)
    for key in ("logical_date", "data_interval_start"):
        value = context.get(key)
        if value is not None:
            return value.date().isoformat()
    raise ValueError("this run has no logical date; trigger it with conf {\"ds\": \"YYYY-MM-DD\"}")


def warehouse_uri(context: dict[str, Any]) -> Any:
    """The warehouse of a run: with ``warehouse_conn_id``, the SQLAlchemy engine of that Airflow
    connection's hook (its provider builds the URL, with the driver, from the connection's fields and
    extras; secrets stay in Airflow); else ``$KD_WAREHOUSE`` or the embedded SQLite file."""
    conn_id = context["params"].get("warehouse_conn_id")
    if conn_id:
        return warehouse_engine(conn_id)
    from kd_tasks.home import default_warehouse_uri

    return default_warehouse_uri()


# Connection types whose provider is not installed here but whose database SQLAlchemy reaches through
# a pure-Python driver (the MySQL provider needs mysqlclient, a C build): the URL is built from the
# connection's fields, exactly as the provider's hook would.
_DRIVERS_WITHOUT_PROVIDER = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def warehouse_engine(conn_id: str) -> Any:
    """A SQLAlchemy engine for the Airflow connection ``conn_id``, from its hook
    (``get_sqlalchemy_engine``)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(names.conn_id(conn_id))
    try:
        hook = conn.get_hook()
    except Exception as exc:  # the provider of this connection type is not installed
        driver = _DRIVERS_WITHOUT_PROVIDER.get(conn.conn_type or "")
        if driver is None:
            raise InputError(f"connection {conn_id!r} (type {conn.conn_type!r}) has no hook here ({exc}); install "
                             "its Airflow provider (e.g. apache-airflow-providers-postgres)") from None
        from sqlalchemy import create_engine
        from sqlalchemy.engine import URL

        return create_engine(URL.create(driver, username=conn.login or None, password=conn.password or None,
                                        host=conn.host or None, port=conn.port or None,
                                        database=conn.schema or None))
    if not hasattr(hook, "get_sqlalchemy_engine"):
        raise InputError(f"connection {conn_id!r} (type {conn.conn_type!r}) is not a SQL database connection")
    return hook.get_sqlalchemy_engine()


def mlflow_tracking_uri() -> str | None:
    """The MLflow tracking URI from the Airflow Variable ``kd_mlflow_tracking_uri`` (None: the
    environment's ``KD_MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_URI``, else SQLite under the local
    directory; ``off``: no mirror)."""
    from airflow.sdk import Variable

    return Variable.get("kd_mlflow_tracking_uri", default=None)


APPROVAL_TIMEOUT_MINUTES = 12 * 60  # a night's promotion waits at most this long for a person, then holds


class PromotionApproval(HITLBranchOperator):
    """``approve_promotion``: between the gate and the promotion. A promotion that needs no approval
    (the gate passed cleanly, or the ``approval`` Param is ``off``) goes straight to ``promote_student``;
    a forced or borderline one waits for a person to choose Promote (-> ``promote_student``) or Hold
    (-> ``reject_promotion``) in Airflow's Required Actions (or its REST API), and holds by default
    when ``approval_timeout_minutes`` pass without an answer. The answer (who, what, when, or the
    timeout) is this task's XCom ``approval``, written to the promotion log by the next task."""

    PROMOTE, HOLD = "Promote", "Hold"

    def __init__(self, *, use_case: str, **kwargs: Any) -> None:
        super().__init__(subject=f"Promote tonight's {use_case} model?", options=[self.PROMOTE, self.HOLD],
                         defaults=[self.HOLD], multiple=False, notifiers=approval_notifiers(),
                         options_mapping={self.PROMOTE: "promote_student", self.HOLD: "reject_promotion"},
                         # execution_timeout bounds the work before and after the wait; the wait itself is
                         # response_timeout's (set from the run's Param when it starts waiting)
                         execution_timeout=dt.timedelta(minutes=10),
                         response_timeout=dt.timedelta(minutes=APPROVAL_TIMEOUT_MINUTES),
                         **kwargs)
        self.use_case = use_case

    def execute(self, context: Any) -> Any:
        evaluated = context["ti"].xcom_pull(task_ids="evaluate_student")
        if not evaluated.get("approval"):
            self.log.info("no approval needed (%s): promoting", evaluated["action_reason"])
            return self.do_branch(context, ["promote_student"])
        minutes = context["params"]["approval_timeout_minutes"]
        self.response_timeout = dt.timedelta(minutes=minutes)
        self.subject = f"Promote {self.use_case} ds={run_ds(context)}? It is {evaluated['approval'].split(':')[0]}"
        self.body = (f"**Why you are asked:** {evaluated['approval']}\n\n"
                     f"**Gate:** {evaluated['decision']} ({evaluated['reason']})\n\n"
                     f"**Run:** `{context['run_id']}`, report `{evaluated['run_dir']}/report.json` once written.\n\n"
                     f"*Promote* moves production to tonight's candidate; *Hold* keeps the champion and logs the "
                     f"candidate as rejected. With no answer in {minutes} minutes the night holds.")
        self.log.info("waiting up to %d minutes for a person: %s", minutes, evaluated["approval"])
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            user = event.get("responded_by_user") or {}
            context["ti"].xcom_push(key="approval", value={
                "chosen": (event.get("chosen_options") or ["?"])[0], "by": user.get("name") or user.get("id"),
                "at": str(event.get("responded_at")), "timed_out": bool(event.get("timedout")),
                "timeout": f"{context['params']['approval_timeout_minutes']} min"})
        return super().execute_complete(context, event)


class NightReportLink(BaseOperatorLink):
    """"Night report", an extra link of ``write_report``: the night's HTML page, served by the
    api-server through the project's plugin (``plugins/kd_reports.py``, behind Airflow's login). The
    worker computes it when the task ends and Airflow keeps it in XCom, so it needs ``[api] base_url``
    on the workers (without it the link is relative to the UI's host)."""

    name = "Night report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from urllib.parse import quote

        from airflow.sdk.configuration import conf

        from kd_tasks.stages.html_report import PAGE_ROUTE

        base = (conf.get("api", "base_url", fallback=None) or "").rstrip("/")
        return f"{base}{PAGE_ROUTE}/{quote(ti_key.dag_id, safe='')}/{quote(ti_key.run_id, safe='')}"


def _approval(context: dict[str, Any]) -> dict[str, Any] | None:
    """The person's answer recorded by ``approve_promotion`` (None when none was needed)."""
    return context["ti"].xcom_pull(task_ids="approve_promotion", key="approval")


def nightly_tasks(use_case: str) -> None:
    """The nightly chain inside a ``@dag``: extract -> plan soft labels -> label each (day, shard) as a
    mapped task on the teacher queue -> collect -> distill -> evaluate -> gate -> approve (a person, when
    forced or borderline) -> promote | reject; or record candidate | hold -> report -> mirror to MLflow.
    Every task is a few lines around ``kd_tasks.nightly``; only the use case's name differs between DAGs
    (its declaration names the extract task)."""
    soft_labels_out, production_out = soft_labels_asset(use_case), production_model_asset(use_case)

    def resolved(context):
        from kd_tasks.nightly import resolve_use_case

        return resolve_use_case(use_case, context["params"])

    @task(task_id=get_use_case(use_case).extract_task_id)
    def extract_rows(**context) -> dict:
        with task_guard():
            from kd_tasks.stages.extract import EmptyPartitionError
            from kd_tasks.nightly import extract

            try:
                return extract(resolved(context), run_ds(context), warehouse_uri(context))
            except EmptyPartitionError as exc:
                if context["params"]["on_empty"] != "skip":
                    raise
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(str(exc)) from exc

    @task
    def plan_soft_labels(extracted: dict, **context) -> list:
        with task_guard():
            from kd_tasks.nightly import plan_soft_labels

            return plan_soft_labels(resolved(context), run_ds(context), context["run_id"])

    @task(queue=TEACHER_QUEUE, pool=HEAVY_POOL, execution_timeout=dt.timedelta(hours=4),
          map_index_template="{{ shard_label }}")
    def generate_soft_labels(piece: dict, **context) -> dict:
        from airflow.sdk import get_current_context

        get_current_context()["shard_label"] = f"ds={piece['day']} shard {piece['shard']}"  # the UI's map index
        with task_guard():
            from kd_tasks.nightly import label_shard

            return label_shard(resolved(context), piece)

    @task(outlets=[soft_labels_out])
    def collect_soft_labels(pieces: list, results: list, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import collect_soft_labels

            # one slice request: iterating the lazy sequence probes past its end, which Airflow logs as
            # an error ("XCom not found") in a night that is fine
            result = collect_soft_labels(pieces[0]["run_dir"], results[:])
            context["outlet_events"][soft_labels_out].extra = {
                "ds": run_ds(context), "teacher_version": result["teacher_version"],
                "labelling": result["labelling"], "labelled": result["labelled"]}
            return {k: v for k, v in result.items() if k != "runs"}

    @task(pool=HEAVY_POOL, execution_timeout=dt.timedelta(hours=4))
    def distill_student(labelled: dict, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import distill

            return distill(resolved(context), run_ds(context), labelled["run_dir"])

    @task(pool=HEAVY_POOL)
    def evaluate_student(distilled: dict, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import evaluate

            p = context["params"]
            return evaluate(resolved(context), run_ds(context), distilled["run_dir"], p["dry_run"],
                            approval=p["approval"], is_backfill=is_backfill(context),
                            allow_backfill_promotion=p["allow_backfill_promotion"],
                            force_promote=p["force_promote"], force_reason=p["force_reason"])

    @task.branch
    def gate_student(evaluated: dict) -> str:
        return {"promote": "approve_promotion", "candidate": "record_candidate"}.get(evaluated["action"],
                                                                                     "hold_student")

    @task(outlets=[production_out])
    def promote_student(evaluated: dict, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import promote

            outcome = promote(resolved(context), run_ds(context), evaluated["run_dir"], context["run_id"],
                              reason=evaluated["action_reason"], approval=_approval(context))
            if outcome["outcome"] == "promoted":
                context["outlet_events"][production_out].extra = {
                    "version": outcome["version"], "path": outcome["path"], "ds": run_ds(context),
                    "teacher_version": outcome["teacher_version"]}
            return outcome

    @task
    def record_candidate(evaluated: dict, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import record_candidate

            return record_candidate(resolved(context), run_ds(context), evaluated["run_dir"], context["run_id"],
                                    evaluated["action_reason"])

    @task
    def reject_promotion(evaluated: dict, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import reject

            return reject(resolved(context), run_ds(context), evaluated["run_dir"], context["run_id"],
                          _approval(context))

    @task
    def hold_student(evaluated: dict, **context) -> dict:
        with task_guard():
            from kd_tasks.nightly import hold

            return hold(resolved(context), evaluated["run_dir"], evaluated["reason"])

    @task(trigger_rule="none_failed_min_one_success")
    def write_report(evaluated: dict, **context) -> str:
        with task_guard():
            from kd_tasks.nightly import write_report

            return write_report(resolved(context), run_ds(context), context["run_id"], evaluated["run_dir"])

    @task(retries=3, retry_delay=dt.timedelta(minutes=2), retry_exponential_backoff=True)
    def mirror_to_mlflow(report_path: str, **context) -> dict:
        """After the promotion, never before it: an MLflow outage fails (and retries) this task alone."""
        with task_guard():
            from kd_tasks.nightly import mirror

            return mirror(resolved(context), report_path, uri=mlflow_tracking_uri())

    pieces = plan_soft_labels(extract_rows())
    distilled = distill_student(collect_soft_labels(pieces, generate_soft_labels.expand(piece=pieces)))
    evaluated = evaluate_student(distilled)
    approve = PromotionApproval(task_id="approve_promotion", use_case=use_case)
    decided = [promote_student(evaluated), reject_promotion(evaluated)]
    others = [record_candidate(evaluated), hold_student(evaluated)]
    report = write_report(evaluated)
    report.operator.operator_extra_links = (NightReportLink(),)
    gate_student(evaluated) >> [approve, *others]
    approve >> decided
    [*decided, *others] >> report
    mirror_to_mlflow(report)
