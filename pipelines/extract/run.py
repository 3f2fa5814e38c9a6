"""Entry points of the extraction DAG's tasks and of `retention extract`: one interval, three steps."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from pipelines.extract.batch import Interval, extract
from pipelines.extract.publish import publish
from pipelines.extract.validate import validate
from retention.clock import naive_utc
from retention.context import platform_session
from retention.quality import QualityService
from retention.settings import Settings

log = logging.getLogger(__name__)


def initial_load_start(requested: str | None, interval_start: datetime) -> datetime:
    """The start of the extracted window: `requested` (an initial load's first day) or the interval's.

    Raises:
        ValueError: `requested` is not a YYYY-MM-DD date or lies after the interval's start.
    """
    if not requested:
        return interval_start
    start = datetime.fromisoformat(requested).replace(tzinfo=interval_start.tzinfo)
    if start > interval_start:
        raise ValueError(f"initial load start {requested} is after the interval start {interval_start}")
    return start


def task_extract(start: datetime, end: datetime, settings: Settings | None = None) -> str:
    """Stage the interval's batch; returns the batch folder (an XCom-friendly string)."""
    with platform_session(settings) as (settings, params, engine):
        interval = Interval(naive_utc(start), naive_utc(end))
        batch_dir = extract(engine, interval, params.extract, settings.staging_dir)
    log.info("extracted batch %s into %s", interval.batch_id, batch_dir)
    return str(batch_dir)


def task_validate(batch_dir: str, settings: Settings | None = None) -> dict:
    """Validate a staged batch (raises BatchRejected after quarantining it); returns the outcome."""
    with platform_session(settings) as (settings, params, engine):
        outcome = validate(engine, Path(batch_dir), params.extract, QualityService(settings.gx_dir))
    for warning in outcome.warnings:
        log.warning("batch %s: %s", outcome.batch_id, warning)
    return asdict(outcome)


def task_publish(batch_dir: str, settings: Settings | None = None) -> dict[str, int]:
    """Publish a validated batch; returns rows new or changed per warehouse table."""
    with platform_session(settings) as (_, _, engine):
        changed = publish(engine, Path(batch_dir))
    log.info("published %s: %s", Path(batch_dir).name, changed)
    return changed


def run_interval(start: datetime, end: datetime, settings: Settings | None = None) -> dict[str, int]:
    """Extract, validate and publish one interval (the CLI's `retention extract`)."""
    batch_dir = task_extract(start, end, settings)
    task_validate(batch_dir, settings)
    return task_publish(batch_dir, settings)
