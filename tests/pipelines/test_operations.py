"""Failed Airflow tasks alert: one ERROR log line, and a JSON POST to the configured webhook."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines.operations import alert, alert_on_failure, task_defaults
from retention.settings import ENV_ALERT_WEBHOOK, Settings


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        Receiver.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A real HTTP server on loopback whose URL is the alert webhook."""
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(ENV_ALERT_WEBHOOK, f"http://127.0.0.1:{server.server_port}/hooks/secret-path")
    yield Receiver.received
    server.shutdown()
    server.server_close()


def test_a_failed_task_is_logged_and_posted_to_the_webhook(
    webhook: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ti = SimpleNamespace(
        dag_id="shop_extract", task_id="publish", run_id="scheduled__2026-02-10", try_number=3
    )
    with caplog.at_level(logging.ERROR, logger="retention.alerts"):
        alert_on_failure({"ti": ti, "exception": RuntimeError("database is locked")})
    assert len(webhook) == 1
    posted = webhook[0]
    assert posted["text"] == "Airflow task shop_extract.publish failed: RuntimeError"
    assert (posted["dag_id"], posted["task_id"], posted["try_number"]) == ("shop_extract", "publish", 3)
    assert posted["error"] == "database is locked"
    assert any("ALERT Airflow task shop_extract.publish failed" in r.message for r in caplog.records)


def test_an_unreachable_webhook_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_ALERT_WEBHOOK, "http://127.0.0.1:1/closed")
    with caplog.at_level(logging.WARNING, logger="retention.alerts"):
        assert alert({"summary": "x"}) is False
    assert any("alert webhook failed" in r.message for r in caplog.records)


def test_without_a_webhook_the_alert_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="retention.alerts"):
        assert alert({"summary": "campaign list rejected", "campaign": "winback"}) is False
    assert [r.levelname for r in caplog.records] == ["ERROR"]


def test_the_webhook_path_is_not_shown_in_the_settings(webhook: list[dict[str, Any]]) -> None:
    shown = Settings.from_env().describe()[ENV_ALERT_WEBHOOK]
    assert shown == "http://127.0.0.1/***" and "secret-path" not in shown


def test_task_defaults_follow_params() -> None:
    from retention.params import load_params

    operations = load_params(Settings.from_env().params_path).operations
    training = task_defaults("training")
    assert training["execution_timeout"].total_seconds() == operations.training_timeout_minutes * 60
    assert task_defaults()["execution_timeout"].total_seconds() == operations.task_timeout_minutes * 60
    assert training["retries"] == operations.retries and training["on_failure_callback"] is alert_on_failure
