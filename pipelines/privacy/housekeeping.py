"""Retention periods: delete raw events, quarantined batches, staged files and exports past their age.

The periods are the `privacy` section of params.yaml. Ages count back from `now`, the housekeeping
DAG's data interval end (not the wall clock), so a rerun of the same interval deletes the same
things, and a second run deletes nothing more:
- raw events: source `events` and warehouse `wh_events` rows whose event time is older than
  `raw_events_days` (at least the features' look-back, checked by params.yaml's schema);
- quarantine: `platform_quarantine` rows quarantined more than `quarantine_days` ago;
- staging: batch folders under `staging/` and campaign builds under `staging/campaigns/` whose
  newest file is older than `staging_days`;
- exports: campaign export folders under `campaigns/` whose newest file is older than
  `exports_days`; the campaign's `exports` paths then name only files that still exist.
The database deletes are one transaction.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, select, update

from retention.clock import naive_utc
from retention.context import platform_session
from retention.db.models import Event
from retention.db.platform import Campaign
from retention.db.warehouse import WAREHOUSE, Quarantine
from retention.paths import home_path
from retention.settings import Settings

log = logging.getLogger("retention.privacy")
CAMPAIGNS = "campaigns"  # campaign builds under staging/, exports under the home


def _newest_mtime(folder: Path) -> datetime | None:
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return datetime.fromtimestamp(max(times), UTC).replace(tzinfo=None) if times else None


def _units(root: Path, skip: str | None = None) -> Iterator[Path]:
    if root.is_dir():
        yield from (p for p in sorted(root.iterdir()) if p.is_dir() and p.name != skip)


def remove_old_folders(folders: Iterator[Path], cutoff: datetime) -> int:
    """Delete each folder whose newest file was written before `cutoff` (empty ones too); returns how many."""
    removed = 0
    for folder in folders:
        newest = _newest_mtime(folder)
        if newest is None or newest < cutoff:
            shutil.rmtree(folder, ignore_errors=False)
            removed += 1
    return removed


def _prune_export_paths(engine: Engine, home: Path) -> None:
    table = Campaign.__table__
    with engine.begin() as connection:
        for row in connection.execute(select(table.c.campaign_id, table.c.exports)).all():
            stored = row.exports or {}
            kept = {fmt: path for fmt, path in stored.items() if home_path(home, path).exists()}
            if kept != stored:
                connection.execute(
                    update(table).where(table.c.campaign_id == row.campaign_id).values(exports=kept)
                )


def housekeep(now: datetime, settings: Settings | None = None) -> dict[str, int]:
    """Enforce the retention periods as of `now` (see the module docstring).

    Args:
        now: the moment ages count back from (naive UTC, or aware: converted).
        settings: where the platform lives (default: the environment).

    Returns:
        What was deleted: rows per table, folders for staging and exports.
    """
    now = naive_utc(now)
    with platform_session(settings) as (settings, params, engine):
        periods = params.privacy
        events_cutoff = now - timedelta(days=periods.raw_events_days)
        quarantine_cutoff = now - timedelta(days=periods.quarantine_days)
        with engine.begin() as connection:
            removed = {
                "events": connection.execute(delete(Event).where(Event.ts < events_cutoff)).rowcount,
                "wh_events": connection.execute(
                    delete(WAREHOUSE["events"]).where(WAREHOUSE["events"].c.ts < events_cutoff)
                ).rowcount,
                "quarantine": connection.execute(
                    delete(Quarantine).where(Quarantine.quarantined_at < quarantine_cutoff)
                ).rowcount,
            }
        staging = settings.staging_dir
        staged = remove_old_folders(
            _units(staging, skip=CAMPAIGNS), now - timedelta(days=periods.staging_days)
        )
        removed["staging"] = staged + remove_old_folders(
            _units(staging / CAMPAIGNS), now - timedelta(days=periods.staging_days)
        )
        removed["exports"] = remove_old_folders(
            _units(settings.home / CAMPAIGNS), now - timedelta(days=periods.exports_days)
        )
        if removed["exports"]:
            _prune_export_paths(engine, settings.home)
    log.info("housekeeping as of %s: removed %s", now, removed)
    return removed
