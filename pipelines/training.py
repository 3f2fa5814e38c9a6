"""Training tasks of the training DAG: fit, evaluate, track and register a model; gate it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from retention.clock import naive_utc
from retention.context import platform_session
from retention.settings import Settings

log = logging.getLogger(__name__)


def task_train(
    family: str, settings: Settings | None = None, before: datetime | None = None
) -> dict[str, Any]:
    """Train a model family's model (`training.families`) on every validated warehouse row.

    Idempotent: when the same data, parameters and code were already trained and registered, that
    run is returned and nothing new is trained or registered.

    Returns:
        run_id, registered_name, version, metrics, as_of, reused (for XCom: small and JSON).
    """
    from training.train import train_model

    with platform_session(settings) as (settings, params, engine):
        bound = naive_utc(before) if before is not None else None
        result = train_model(engine, settings, params, family, source="warehouse", before=bound)
    summary = asdict(result)
    return {**summary, "as_of": str(result.as_of), "folder": str(result.folder)}


def task_train_or_skip(family: str, before: datetime | None = None) -> dict[str, Any]:
    """`task_train` for a DAG task: data that cannot support the model (e.g. an order-total log
    with one placeholder product has no recommendation task) skips the task, and its gate, with
    the reason instead of failing the run."""
    from airflow.sdk.exceptions import AirflowSkipException

    from training.protocol import ProtocolError

    try:
        return task_train(family, before=before)
    except ProtocolError as error:
        raise AirflowSkipException(f"{family} model not trained on this data: {error}") from error


def task_gate(family: str, version: str, settings: Settings | None = None) -> dict[str, Any]:
    """Run the promotion gate on a registered version (idempotent: a decided version keeps its decision).

    Returns:
        The decision (JSON-ready): action, reason, champion before and after, both sides' metrics.
    """
    from training.gate import run_gate
    from training.registry import decision_dict

    with platform_session(settings) as (settings, params, engine):
        decision = run_gate(engine, settings, params, family, version)
    log.info("%s version %s: %s (%s)", decision.registered_name, version, decision.action, decision.reason)
    return decision_dict(decision)
