"""Point-in-time inputs and survival targets of the return model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store.events import EventLog, event_log_from_frames
from retention.params import load_params
from tests.training.churn.shop import AS_OF, ROOT, tiny_events
from training.churn.dataset import (
    EXTRA_FEATURES,
    build_examples,
    customer_inputs,
    flatten_inputs,
    next_purchase_days,
    training_cutoffs,
    unflatten_inputs,
)


def _with_future(log: EventLog) -> EventLog:
    """The same log plus purchases and views at and after as-of (by a known and a new customer)."""
    future = pd.DataFrame(
        {
            "customer_id": ["c000", "c001", "zz9", "c002"],
            "product_id": ["p1", "p2", "p1", "p1"],
            "event_type": ["purchase", "purchase", "purchase", "view"],
            "ts": [AS_OF, AS_OF + pd.Timedelta(days=3), AS_OF + pd.Timedelta(days=9), AS_OF],
            "quantity": [5, 1, 1, 1],
            "price": [99.0, 1.0, 1.0, np.nan],
            "order_id": ["f1", "f2", "f3", None],
        }
    )
    return event_log_from_frames(pd.concat([log.events.drop(columns="event_id"), future], ignore_index=True))


def test_next_purchase_days_ignores_purchases_at_or_after_the_censoring_time(tiny_log: EventLog) -> None:
    # given
    cutoff = AS_OF - pd.Timedelta(days=20)
    ids = np.array(["c000", "c001", "zz9"], dtype=object)
    # when
    days = next_purchase_days(_with_future(tiny_log).events, ids, cutoff, AS_OF)
    # then: equal to the days computed without the future rows
    np.testing.assert_array_equal(days, next_purchase_days(tiny_log.events, ids, cutoff, AS_OF))
    assert (days[np.isfinite(days)] < 20).all()


def test_customer_inputs_ignore_rows_at_or_after_as_of(tiny_log: EventLog) -> None:
    # given
    params = load_params(ROOT / "params.yaml").features
    # when
    before = customer_inputs(tiny_log.frames(), AS_OF, params, 8)
    after = customer_inputs(_with_future(tiny_log).frames(), AS_OF, params, 8)
    # then
    pd.testing.assert_frame_equal(flatten_inputs(before), flatten_inputs(after))
    assert set(EXTRA_FEATURES) <= set(before.tabular.columns)
    assert list(before.customer_id) == sorted(before.customer_id)


def test_flat_inputs_round_trip(tiny_log: EventLog) -> None:
    # given
    inputs = customer_inputs(tiny_log.frames(), AS_OF, load_params(ROOT / "params.yaml").features, 5)
    # when
    back = unflatten_inputs(flatten_inputs(inputs), list(inputs.tabular.columns), 5)
    # then
    pd.testing.assert_frame_equal(back.tabular, inputs.tabular)
    for name, values in inputs.sequence.items():
        np.testing.assert_array_equal(back.sequence[name], values)
    assert (inputs.sequence["event_type"][:, -1] > 0).all()  # the newest slot is the last, never padding


def test_examples_read_nothing_at_or_after_as_of(tiny_log: EventLog) -> None:
    # given
    params = load_params(ROOT / "params.yaml").features
    # when
    plain = build_examples(tiny_log.frames(), AS_OF, params, 8, 7, 52)
    extended = build_examples(_with_future(tiny_log).frames(), AS_OF, params, 8, 7, 52)
    # then
    np.testing.assert_array_equal(plain.event_days, extended.event_days)
    pd.testing.assert_frame_equal(flatten_inputs(plain.inputs), flatten_inputs(extended.inputs))
    offsets = (AS_OF.to_datetime64() - plain.cutoff) / np.timedelta64(1, "D")
    seen = np.isfinite(plain.event_days)
    assert (plain.event_days[seen] < offsets[seen]).all()


def test_training_cutoffs_step_back_from_as_of_after_the_first_purchase() -> None:
    # when
    cutoffs = training_cutoffs(pd.Timestamp("2026-04-10"), AS_OF, 7, 52)
    # then
    assert cutoffs == [AS_OF - pd.Timedelta(days=14), AS_OF - pd.Timedelta(days=7)]
    assert len(training_cutoffs(pd.Timestamp("2020-01-01"), AS_OF, 7, 5)) == 5


def test_tiny_shop_has_both_outcomes() -> None:
    # the fixture's sanity: some customers stop buying, others continue past as-of
    events = tiny_events()
    last = events[events["event_type"] == "purchase"].groupby("customer_id")["ts"].max()
    assert (last < AS_OF - pd.Timedelta(days=30)).any() and (last >= AS_OF).any()
