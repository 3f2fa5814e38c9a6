"""Retention periods on SQLite and PostgreSQL: what is older than its period is deleted, what is newer is
kept, a second run deletes nothing, and params.yaml refuses a raw-event period shorter than the features'
look-back."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, insert, select

from pipelines.privacy.housekeeping import housekeep
from retention.db.models import Customer, Event, Product
from retention.db.platform import Campaign
from retention.db.warehouse import WAREHOUSE, Quarantine
from retention.params import ParamsError, load_params
from tests.conftest import ROOT

NOW = datetime(2029, 6, 1)
PERIODS = load_params(ROOT / "params.yaml").privacy


def _event(n: int, age_days: int) -> dict:
    ts = NOW - timedelta(days=age_days)
    return {
        "event_id": f"e{n}",
        "customer_id": "C1",
        "product_id": "P1",
        "event_type": "view",
        "ts": ts,
        "quantity": 1,
        "updated_at": ts,
    }


def _folder(path: Path, age_days: int) -> Path:
    path.mkdir(parents=True)
    for name in ("a.parquet", "b.json"):
        (path / name).write_text("x")
        stamp = (NOW - timedelta(days=age_days)).timestamp()
        os.utime(path / name, (stamp, stamp))
    return path


def _quarantine(n: int, age_days: int) -> dict:
    return {
        "batch_id": f"b{n}",
        "table_name": "events",
        "quarantined_at": NOW - timedelta(days=age_days),
        "n_rows": 1,
        "failed": [],
        "validation": {},
        "rows": "[]",
    }


def _campaign(campaign_id: str, exports: dict[str, str]) -> dict:
    return {
        "campaign_id": campaign_id,
        "name": "winback",
        "as_of": NOW,
        "horizon_days": 14,
        "published_at": NOW,
        "n_targets": 0,
        "n_control": 0,
        "control_share": 0.0,
        "segments": {},
        "model_versions": {},
        "params_hash": "p",
        "content_hash": "c",
        "funnel": {},
        "exports": exports,
        "summary": {},
    }


@pytest.fixture
def aged(engine: Engine, isolated_env: Path) -> tuple[Engine, Path]:
    """Rows and folders just past and just within each period."""
    old_events, old_quarantine = PERIODS.raw_events_days + 1, PERIODS.quarantine_days + 1
    events = [_event(1, old_events), _event(2, PERIODS.raw_events_days - 1)]
    with engine.begin() as connection:
        connection.execute(insert(Customer), [{"customer_id": "C1", "updated_at": NOW}])
        connection.execute(insert(Product), [{"product_id": "P1", "updated_at": NOW}])
        connection.execute(insert(Event), events)
        connection.execute(insert(WAREHOUSE["events"]), [{**e, "batch_id": "b"} for e in events])
        connection.execute(insert(Quarantine), [_quarantine(1, old_quarantine), _quarantine(2, 1)])
    home = isolated_env
    _folder(home / "staging" / "old-batch", PERIODS.staging_days + 1)
    _folder(home / "staging" / "new-batch", PERIODS.staging_days - 1)
    _folder(home / "staging" / "campaigns" / "old-campaign", PERIODS.staging_days + 1)
    _folder(home / "staging" / "campaigns" / "new-campaign", 0)
    old_export = _folder(home / "campaigns" / "winback-old", PERIODS.exports_days + 1)
    _folder(home / "campaigns" / "winback-new", PERIODS.exports_days - 1)
    with engine.begin() as connection:
        # paths as stored now (relative to the home) and as stored before (absolute)
        exports = {
            "winback-old": {"csv": "campaigns/winback-old/b.json", "parquet": str(old_export / "a.parquet")},
            "winback-new": {"csv": "campaigns/winback-new/b.json"},
        }
        connection.execute(insert(Campaign), [_campaign(c, paths) for c, paths in exports.items()])
    return engine, home


def test_housekeeping_deletes_what_is_past_its_period_and_keeps_the_rest(aged) -> None:  # noqa: ANN001
    engine, home = aged
    removed = housekeep(NOW)
    assert removed == {"events": 1, "wh_events": 1, "quarantine": 1, "staging": 2, "exports": 1}
    with engine.connect() as connection:
        assert connection.execute(select(Event.event_id)).scalars().all() == ["e2"]
        assert connection.execute(select(WAREHOUSE["events"].c.event_id)).scalars().all() == ["e2"]
        assert connection.execute(select(Quarantine.batch_id)).scalars().all() == ["b2"]
        exports = dict(connection.execute(select(Campaign.campaign_id, Campaign.exports)).all())
    # the deleted files' paths are gone, the kept file's stays
    assert exports == {"winback-old": {}, "winback-new": {"csv": "campaigns/winback-new/b.json"}}
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_dir())
    assert left == [
        "campaigns",
        "campaigns/winback-new",
        "staging",
        "staging/campaigns",
        "staging/campaigns/new-campaign",
        "staging/new-batch",
    ]
    # a second run of the same interval deletes nothing more
    assert housekeep(NOW) == {"events": 0, "wh_events": 0, "quarantine": 0, "staging": 0, "exports": 0}


def test_raw_events_must_outlive_the_features_look_back(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["privacy"]["raw_events_days"] = raw["features"]["history_days"] - 1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ParamsError, match="privacy.raw_events_days .* must be at least features.history_days"
    ):
        load_params(path)
