"""The weekly retention loop on a simulated shop: time passes, customers respond, the platform learns.

One week is what the scheduled DAGs do over seven days, run in this process one after the other
(the same task functions the DAG files wire): the simulator generates the week, in which customers
respond to the offers of earlier campaigns; the week is extracted, validated and published and
the online features refreshed; campaigns whose horizon has passed get their outcomes and lifts;
the uplift model is trained and gated once enough randomised outcomes exist; and the week's
campaign is built, validated and published. While the cold-start rule applies the campaign
targets by risk with a larger exploration share; once the uplift model is champion it chooses
offers by expected incremental profit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.settings import Settings

log = logging.getLogger("retention.loop")


@dataclass
class WeekReport:
    """What one week did."""

    week: int
    start: datetime
    end: datetime
    seconds: float = 0.0
    measured: list[str] = field(default_factory=list)
    uplift: dict[str, Any] | None = None  # the uplift training and gate outcome, when it ran
    campaign: dict[str, Any] | None = None

    def line(self) -> str:
        """One line of the main job's output."""
        campaign = self.campaign or {}
        summary = campaign.get("summary") or {}
        parts = [
            f"week {self.week} ({self.start:%Y-%m-%d} .. {self.end:%Y-%m-%d})",
            f"campaign {campaign.get('campaign_id', '-')}: {summary.get('policy', '-')} policy, "
            f"{summary.get('arms', {}).get('treatment', 0)} contacted, "
            f"{summary.get('arms', {}).get('control', 0)} held out",
        ]
        if self.measured:
            parts.append(f"lift measured for {', '.join(self.measured)}")
        if self.uplift:
            parts.append(f"uplift model: {self.uplift.get('summary')}")
        return "; ".join(parts) + f" [{self.seconds:.0f}s]"


def extract_week(start: datetime, end: datetime, settings: Settings) -> None:
    """The extraction DAG's tasks for [start, end): stage, validate, publish, reviews, features, states."""
    from pipelines.campaigns.state_cache import task_refresh_states
    from pipelines.extract import task_extract, task_publish, task_validate
    from pipelines.features import task_refresh_online, task_score_reviews

    batch = task_extract(start, end, settings)
    task_validate(batch, settings)
    task_publish(batch, settings)
    task_score_reviews(end, settings)
    task_refresh_online(end, settings)
    task_refresh_states(end, settings)


def train_uplift(settings: Settings, before: datetime) -> dict[str, Any]:
    """Train and gate the uplift model when the campaign log supports it; says what happened."""
    from pipelines.training import task_gate, task_train
    from training.protocol import ProtocolError

    try:
        trained = task_train("uplift", settings, before=before)
    except ProtocolError as error:
        return {"summary": f"not trained yet ({error})"}
    decision = task_gate("uplift", trained["version"], settings)
    qini = trained["metrics"].get("qini")
    shown = f"{qini:.3f}" if isinstance(qini, float) else "n/a"
    return {
        **decision,
        "summary": f"version {trained['version']} qini={shown}: {decision['action']} ({decision['reason']})",
    }


def run_week(week: int, start: datetime, settings: Settings, simulate_week: Callable[[], Any]) -> WeekReport:
    """One simulated week of the loop (see the module docstring).

    A week whose campaign is already published is history and is left as it is: rebuilding it
    now would use today's champions (a registry alias has no past), change its offers and so
    every later week's data. A week interrupted before its campaign is run again; each of its
    steps is idempotent.
    """
    import pandas as pd

    from pipelines.campaigns.run import measure_lifts, run_campaign
    from pipelines.campaigns.select import campaign_id
    from pipelines.campaigns.store import CampaignNotFound, get_campaign
    from retention.context import platform_session

    started = time.perf_counter()
    end = start + timedelta(days=7)
    report = WeekReport(week, start, end)
    with platform_session(settings) as (_settings, params, engine), suppress(CampaignNotFound):
        report.campaign = get_campaign(engine, campaign_id(params.campaign.name, pd.Timestamp(end)))
    if report.campaign is not None:
        report.uplift = {"summary": "week already run: left as it is"}
        return report
    simulate_week()
    extract_week(start, end, settings)
    report.measured = measure_lifts(settings)
    report.uplift = train_uplift(settings, end)
    report.campaign = run_campaign(end, settings)
    report.seconds = time.perf_counter() - started
    return report
