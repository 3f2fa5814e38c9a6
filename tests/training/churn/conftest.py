"""Return-model fixtures: the tiny shop's log and fast params."""

from __future__ import annotations

import pytest

from feature_store.events import EventLog, event_log_from_frames
from retention.params import Params
from tests.training.churn.shop import fast_params, tiny_events


@pytest.fixture(scope="session")
def tiny_log() -> EventLog:
    """The tiny shop as an event log."""
    return event_log_from_frames(tiny_events())


@pytest.fixture
def params() -> Params:
    """Fast parameters."""
    return fast_params()
