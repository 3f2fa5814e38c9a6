"""The campaign's cache of the champion recommender's materialised customer states, kept current.

The states themselves are `training/recommender/customer_states.py`; this module keeps one file of
them per registered version under the platform home. `shop_extract` refreshes them after each
published interval, recomputing only the customers whose last items changed, so a campaign finds
them current and ranks products for every target with one matrix multiply (`training/scoring.py`).
The campaign calls `current_states` too: states that do not match its history (another champion, a
backfill, a missed refresh) are refreshed there. Only states at or after the saved ones' as-of
replace the saved file, so a backfill never rolls the states back; the file of a replaced champion
is removed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from feature_store.events import EventLog
from retention.settings import Settings
from training.recommender.customer_states import CustomerStates, refresh_states

if TYPE_CHECKING:
    from training.recommender.sasrec import SASRecRecommender

log = logging.getLogger("retention.campaigns")
STATES_DIR = "customer_states"  # under the platform home


def history_fingerprint(model: SASRecRecommender, history: EventLog) -> tuple[int, str]:
    """(number, latest time) of the history's events that make the model's sequences."""
    config = model.sequence_config
    if config is None:
        raise RuntimeError("the recommender has no sequence config: fit or load it first")
    events = history.events
    used = events[events["event_type"].isin(list(config.event_types))]
    return len(used), ("" if used.empty else pd.Timestamp(used["ts"].max()).isoformat())


def states_path(settings: Settings, model_name: str, version: str) -> Path:
    """Where the states of one registered model version are kept."""
    return settings.home / STATES_DIR / f"{model_name}-v{version}.npz"


def current_states(
    settings: Settings,
    model: SASRecRecommender,
    model_name: str,
    version: str,
    history: EventLog,
    as_of: pd.Timestamp,
) -> CustomerStates:
    """The states of every customer in `history` (events before `as_of`) under one registered version.

    The saved states are returned as they are when they match the history's fingerprint; otherwise
    they are refreshed (only changed customers recomputed) and saved unless older than the saved ones.
    """
    model_key, path = f"{model_name}/{version}", states_path(settings, model_name, version)
    previous = _saved(path)
    events, last_event = history_fingerprint(model, history)
    if previous is not None and previous.is_current(model_key, events, last_event):
        return previous
    states, _ = refresh_states(
        model, model_key, model.history_sequences(history), as_of, events, last_event, previous
    )
    if previous is None or pd.Timestamp(previous.as_of) <= as_of:
        states.save(path)
        for stale in path.parent.glob(f"{model_name}-v*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)
    return states


def _saved(path: Path) -> CustomerStates | None:
    """The states saved at `path`; None when there are none or they cannot be read (then recomputed)."""
    if not path.exists():
        return None
    try:
        return CustomerStates.load(path)
    except (OSError, ValueError, KeyError) as error:
        log.warning("customer states at %s are unreadable (%s): recomputing them", path, error)
        return None


def task_refresh_states(as_of: datetime, settings: Settings | None = None) -> int:
    """Bring the champion recommender's states up to the warehouse before `as_of`; returns customers kept.

    Without a champion recommender there is nothing to materialise: it logs why and returns 0.
    """
    from mlflow import MlflowClient

    from feature_store.events import read_event_log
    from retention.clock import naive_utc
    from retention.context import platform_session
    from training.families import family
    from training.registry import CHAMPION, alias_version, load_native

    with platform_session(settings) as (settings, _, engine):
        name = family("recommender").registered_name
        client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        version = alias_version(client, name, CHAMPION)
        if version is None:
            log.info("%s has no champion yet: no customer states to refresh", name)
            return 0
        model = load_native(settings.mlflow_tracking_uri, name, version)
        when = pd.Timestamp(naive_utc(as_of))
        history = read_event_log(engine, "warehouse", before=when.to_pydatetime())
        states = current_states(settings, model, name, version, history, when)
        return len(states.customer_ids)
