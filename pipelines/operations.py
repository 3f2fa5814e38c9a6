"""How Airflow runs the platform's tasks: retries with backoff, timeouts, and an alert on failure.

Every task is idempotent (a rerun of an interval changes nothing), so any of them may be retried;
a rejected batch or campaign list raises `AirflowFailException`, which fails at once without
retries. The values come from params.yaml `operations`; the DAG files only pass `task_defaults()`
as their `default_args`. A task that fails for good calls `alert_on_failure`: one log line at
ERROR and, when `RETENTION_ALERT_WEBHOOK_URL` is set, a JSON POST to it (Slack-compatible `text`
plus the fields), so an operator hears of it without watching the UI.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from retention.params import load_params
from retention.settings import Settings

log = logging.getLogger("retention.alerts")
WEBHOOK_TIMEOUT_SECONDS = 5  # an unreachable webhook must not hold the worker


def task_defaults(kind: Literal["task", "training"] = "task") -> dict[str, Any]:
    """`default_args` of a DAG: retries with exponential backoff, execution timeout, failure alert.

    Args:
        kind: "training" tasks get `operations.training_timeout_minutes`, others `task_timeout_minutes`.
    """
    settings = Settings.from_env()
    operations = load_params(settings.params_path).operations
    minutes = operations.training_timeout_minutes if kind == "training" else operations.task_timeout_minutes
    return {
        "retries": operations.retries,
        "retry_delay": timedelta(seconds=operations.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3: each wait doubles
        "max_retry_delay": timedelta(seconds=operations.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=minutes),
        "on_failure_callback": alert_on_failure,
    }


def alert(fields: Mapping[str, Any], settings: Settings | None = None) -> bool:
    """Log an alert at ERROR and POST it to the configured webhook.

    Args:
        fields: what happened (JSON-ready); `summary` is the one line a person reads first.

    Returns:
        True when a webhook accepted it (2xx); False when none is set or it failed (logged, never raised:
        an alert must not turn a task's failure into a different one).
    """
    settings = settings or Settings.from_env()
    summary = str(fields.get("summary", "retention alert"))
    log.error(
        "ALERT %s %s", summary, json.dumps({k: v for k, v in fields.items() if k != "summary"}, default=str)
    )
    if not settings.alert_webhook_url:
        return False
    body = json.dumps({"text": summary, **fields}, default=str).encode()
    request = urllib.request.Request(
        settings.alert_webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310 (configured URL)
            return 200 <= response.status < 300
    except Exception as error:  # noqa: BLE001 (any transport error is only logged)
        log.warning("alert webhook failed: %s", error)
        return False


def alert_on_failure(context: Mapping[str, Any]) -> None:
    """Airflow's `on_failure_callback`: alert that a task failed (after its last retry)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id, task_id = getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?")
    error = context.get("exception")
    alert(
        {
            "summary": f"Airflow task {dag_id}.{task_id} failed: {type(error).__name__ if error else 'error'}",
            "dag_id": dag_id,
            "task_id": task_id,
            "run_id": getattr(ti, "run_id", None),
            "try_number": getattr(ti, "try_number", None),
            "error": str(error)[:2000] if error else None,
        }
    )
