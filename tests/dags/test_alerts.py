"""Alerts: a failed task mails the configured addresses through Airflow's SMTP notifier (a real SMTP
server, aiosmtpd, on 127.0.0.1); the nightly deadline alert is declared from the environment."""
from __future__ import annotations

import datetime as dt
import email
import json
import socket
import sys
import time
from email import policy

import pytest

from conftest import ROOT

NIGHTLY = "kd_product_category_nightly"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_dagbag(monkeypatch):
    """The DAG files parsed again (kd_common reads the alert settings when it is imported)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delitem(sys.modules, "kd_common", raising=False)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content,
                                                                                    policy=policy.default)))
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def test_a_failed_task_mails_the_configured_addresses(airflow_db, kd_home, monkeypatch, smtp_server):
    port, inbox = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_KD_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "kd-nightly@example.com"}}))
    monkeypatch.setenv("KD_ALERT_EMAIL", "oncall@example.com, ml-platform@example.com")
    monkeypatch.setenv("KD_ALERT_SMTP_CONN_ID", "kd_smtp")
    # a warehouse URL no dialect reads: extract fails on its first try (a deterministic error, no retry)
    monkeypatch.setenv("KD_WAREHOUSE", "mongodb://kd:s3cr3t-pw@127.0.0.1/wh")
    dag = _fresh_dagbag(monkeypatch).dags[NIGHTLY]
    assert dag.get_task("extract_products").on_failure_callback
    assert dag.get_task("extract_products").on_retry_callback  # a retry is told the same way
    dag.test(logical_date=dt.datetime(2031, 3, 1, tzinfo=dt.timezone.utc))
    deadline = time.monotonic() + 30
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.2)
    assert inbox.messages, "no alert reached the SMTP server"
    to, msg = inbox.messages[0]
    assert sorted(to) == ["ml-platform@example.com", "oncall@example.com"]
    assert msg["From"] == "kd-nightly@example.com"
    subject, body = str(msg["Subject"]), msg.get_body(("html", "plain")).get_content()
    assert NIGHTLY in subject and "extract_products" in subject and "failed" in subject.lower()
    assert "s3cr3t-pw" not in subject + body


def test_the_nightly_deadline_is_declared_from_the_environment(monkeypatch):
    from airflow.sdk.definitions.deadline import DeadlineAlert

    monkeypatch.delenv("KD_NIGHTLY_DEADLINE_HOURS", raising=False)
    assert not _fresh_dagbag(monkeypatch).dags[NIGHTLY].deadline
    monkeypatch.setenv("KD_NIGHTLY_DEADLINE_HOURS", "30")
    monkeypatch.setenv("KD_ALERT_EMAIL", "oncall@example.com")
    bag = _fresh_dagbag(monkeypatch)
    for dag_id in (NIGHTLY, "kd_purchase_intent_nightly", "kd_search_relevance_nightly"):
        alerts = bag.dags[dag_id].deadline
        alerts = alerts if isinstance(alerts, list) else [alerts]
        assert len(alerts) == 1 and isinstance(alerts[0], DeadlineAlert)
        assert alerts[0].interval == dt.timedelta(hours=30)
        assert alerts[0].callback.kwargs["to"] == ["oncall@example.com"]
    # a deadline with no one to tell is refused when the DAG files are parsed, with the fix in the message
    monkeypatch.delenv("KD_ALERT_EMAIL")
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delitem(sys.modules, "kd_common", raising=False)
    errors = DagBag(dag_folder=str(ROOT / "dags")).import_errors
    assert errors and all("KD_ALERT_EMAIL is not" in e for e in errors.values())
