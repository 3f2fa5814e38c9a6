"""Replenishment-aware recommendations: a consumable whose repurchase interval has passed may be
recommended again though bought recently ("time to reorder"); one bought too recently, and a
durable bought recently, may not; a purchase older than `recent_purchase_days` masks nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.events import EventLog, event_log_from_frames
from pipelines.campaigns.explain import explain_recommendations
from pipelines.campaigns.reorder import due_reorders, recent_purchase_mask, reorder_intervals
from retention.params import BuyAgainParams

AS_OF = pd.Timestamp("2026-04-01")
RECENT_DAYS = 30
BUY_AGAIN = BuyAgainParams(
    event_types=["purchase"],
    half_life_days=90,
    not_due_weight=0.25,
    min_repeats=5,
    default_gap_days=30,
    tuning_users=100,
)
COLUMNS = np.array(["COFFEE", "SOFA", "TEA"])  # the model's product columns
CATALOGUE = pd.DataFrame(
    {
        "product_id": ["COFFEE", "SOFA", "TEA"],
        "category": ["pantry", "furniture", "drinks"],
        "title": ["Coffee beans", "Sofa", "Green tea"],
    }
)
# the customers under test: who bought what, how many days before as-of
DUE, EARLY, DURABLE, LONG_AGO = "due", "early", "durable", "long-ago"
BOUGHT = [
    (DUE, "COFFEE", 12),
    (DUE, "SOFA", 5),
    (EARLY, "COFFEE", 3),
    (DURABLE, "SOFA", 5),
    (LONG_AGO, "TEA", 40),
]


def _history() -> EventLog:
    """20 shoppers re-buy coffee every ~10 days (gaps 9, 10, 11) and buy a sofa once; plus `BOUGHT`."""
    rows = []
    for shopper in range(20):
        for day in (100, 91, 81, 70):  # gaps of 9, 10 and 11 days: a median of 10
            rows.append((f"S{shopper}", "COFFEE", day))
        rows.append((f"S{shopper}", "SOFA", 50))
    rows += BOUGHT
    events = pd.DataFrame(rows, columns=["customer_id", "product_id", "days_before"])
    events["ts"] = AS_OF - pd.to_timedelta(events.pop("days_before"), unit="D") + pd.Timedelta(hours=10)
    return event_log_from_frames(events, products=CATALOGUE.assign(description=None, price=np.nan))


@pytest.fixture(scope="module")
def history() -> EventLog:
    return _history()


def _masked(history: EventLog, intervals: np.ndarray | None) -> set[tuple[str, str]]:
    customers = [DUE, EARLY, DURABLE, LONG_AGO]
    rows, cols = recent_purchase_mask(history, customers, COLUMNS, AS_OF, RECENT_DAYS, intervals)
    return {(customers[r], str(COLUMNS[c])) for r, c in zip(rows, cols, strict=True)}


def test_intervals_are_learned_for_consumables_and_none_for_durables(history: EventLog) -> None:
    intervals = reorder_intervals(history, COLUMNS, BUY_AGAIN)
    assert intervals[0] == 10.0  # coffee: the median gap
    assert np.isnan(intervals[1])  # the sofa: nobody re-buys it
    assert np.isnan(intervals[2])  # tea: too few gaps (none)


def test_a_due_consumable_is_unmasked_and_a_recent_one_or_a_durable_is_not(history: EventLog) -> None:
    # given the intervals learned from the history (coffee every 10 days, the sofa never again)
    intervals = reorder_intervals(history, COLUMNS, BUY_AGAIN)
    # when
    masked = _masked(history, intervals)
    # then (a) coffee bought 12 days ago is due: it may be recommended again
    assert (DUE, "COFFEE") not in masked
    # (b) coffee bought 3 days ago is not due yet; (c) the sofa bought 5 days ago never is
    assert {(EARLY, "COFFEE"), (DUE, "SOFA"), (DURABLE, "SOFA")} <= masked
    # a purchase longer ago than recent_purchase_days masks nothing, as before
    assert masked == {(EARLY, "COFFEE"), (DUE, "SOFA"), (DURABLE, "SOFA")}


def test_without_intervals_every_recent_purchase_stays_masked(history: EventLog) -> None:
    assert _masked(history, None) == {(DUE, "COFFEE"), (EARLY, "COFFEE"), (DUE, "SOFA"), (DURABLE, "SOFA")}


def test_due_reorders_list_only_products_whose_interval_has_passed(history: EventLog) -> None:
    intervals = reorder_intervals(history, COLUMNS, BUY_AGAIN)
    due = due_reorders(history.events, [DUE, EARLY, DURABLE, LONG_AGO], COLUMNS, intervals, AS_OF)
    assert due.to_dict("records") == [
        {"customer_id": DUE, "product_id": "COFFEE", "interval_days": 10.0, "days_since": 12.0}
    ]


def test_the_export_reason_of_a_due_product_says_time_to_reorder(history: EventLog) -> None:
    # given the due products of the customers, as the export passes them
    intervals = reorder_intervals(history, COLUMNS, BUY_AGAIN)
    customers = [DUE, EARLY]
    due = due_reorders(history.events, customers, COLUMNS, intervals, AS_OF)
    # when (the early customer's coffee would only be listed by a model without the mask)
    due_row, early_row = explain_recommendations(
        customers, [["COFFEE", "SOFA"], ["COFFEE"]], history.events, CATALOGUE, popular=set(), reorders=due
    )
    # then
    assert [p.why for p in due_row] == [
        "time to reorder: usually re-bought every 10 days, last bought 12 days ago",
        "bought it before",
    ]
    assert due_row[0].text == (
        "Coffee beans (pantry): time to reorder: usually re-bought every 10 days, last bought 12 days ago"
    )
    assert early_row[0].why == "bought it before"
    # without reorders (the profile page, old callers) the reason is as before
    assert explain_recommendations([DUE], [["COFFEE"]], history.events, CATALOGUE, popular=set())[0][
        0
    ].why == ("bought it before")
