"""Reorders: products bought recently that are due again (their repurchase interval has passed).

A campaign never recommends what the customer bought within `campaign.recent_purchase_days`,
except a consumable whose typical repurchase interval (`training.recommender.repeat.
repurchase_intervals`, learned from the log) has passed since the customer last bought it; a
durable, without an interval, stays masked. The export names those products' reason ("time to
reorder"), from the intervals kept with the campaign (`listed_intervals`, `due_reorders`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store.events import EventLog
from pipelines.campaigns.explain import PURCHASE
from retention.params import BuyAgainParams
from training.recommender.customer_states import positions
from training.recommender.repeat import repurchase_intervals


def reorder_intervals(history: EventLog, columns: np.ndarray, buy_again: BuyAgainParams) -> np.ndarray:
    """(len(columns),) each product's typical repurchase interval in days, NaN for none (a durable).

    Learned from `history` (`training.recommender.repeat.repurchase_intervals`) with the buy-again
    settings' event types and fewest repeats.
    """
    return repurchase_intervals(history, columns, buy_again.event_types, buy_again.min_repeats)


def listed_intervals(
    recommended: list[list[str]], columns: np.ndarray, intervals: np.ndarray
) -> dict[str, float]:
    """{product id: repurchase interval in days} of the recommended products that have one: kept
    with the campaign so its export can say which are due for reorder without relearning them."""
    listed = {p for products in recommended for p in products}
    known = np.isfinite(intervals) & np.isin(columns, np.array(sorted(listed), dtype=str))
    return {str(p): float(d) for p, d in zip(columns[known], intervals[known], strict=True)}


def _last_purchases(
    events: pd.DataFrame,
    customer_ids: list[str] | np.ndarray,
    columns: np.ndarray,
    as_of: pd.Timestamp,
    since: pd.Timestamp | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, days since) of each customer's last purchase of each product.

    Days are calendar days from the purchase's day to as-of's (the intervals are gaps between
    purchase days). `since` reads only purchases at or after it: the last purchase of a pair
    bought since then is the same.
    """
    bought = events.loc[events["event_type"] == PURCHASE, ["customer_id", "product_id", "ts"]]
    if since is not None:
        bought = bought.loc[bought["ts"] >= since]
    rows = positions(customer_ids, bought["customer_id"].to_numpy(dtype=object))
    cols = positions(columns, bought["product_id"].to_numpy(dtype=object))
    keep = (rows >= 0) & (cols >= 0)
    pair = rows[keep].astype(np.int64) * len(columns) + cols[keep]
    last = pd.Series(bought["ts"].to_numpy()[keep]).groupby(pair, sort=False).max()
    code = last.index.to_numpy(dtype=np.int64)
    days = (pd.Timestamp(as_of).floor("D") - last.dt.floor("D")).dt.days
    return code // len(columns), code % len(columns), days.to_numpy(dtype=float)


def _due(days_since: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Whether a product last bought `days_since` ago is due for reorder: it has an interval, and
    at least that long has passed (NaN interval: a durable or unknown cycle, never due)."""
    return days_since >= np.where(np.isnan(intervals), np.inf, intervals)


def due_reorders(
    events: pd.DataFrame,
    customer_ids: list[str],
    columns: np.ndarray,
    intervals: np.ndarray,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """The products each customer bought before and is due to reorder at as-of (the export's
    "time to reorder" reasons, `pipelines.campaigns.explain.explain_recommendations`).

    Args:
        events: customer_id, product_id, event_type, ts: at least these customers' purchases
            before as-of.
        customer_ids: the customers.
        columns: product ids, aligned with `intervals`.
        intervals: (len(columns),) repurchase interval in days, NaN for none (`reorder_intervals`).
        as_of: the scoring time.

    Returns:
        customer_id, product_id, interval_days, days_since: one row per due (customer, product).
    """
    rows, cols, days = _last_purchases(events, customer_ids, columns, as_of)
    due = _due(days, intervals[cols])
    return pd.DataFrame(
        {
            "customer_id": np.asarray(customer_ids, dtype=object)[rows[due]],
            "product_id": np.asarray(columns, dtype=object)[cols[due]],
            "interval_days": intervals[cols[due]],
            "days_since": days[due],
        }
    )


def recent_purchase_mask(
    history: EventLog,
    customer_ids: list[str],
    columns: np.ndarray,
    as_of: pd.Timestamp,
    days: int,
    intervals: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of products each customer bought within `days` before as-of, except
    those due for reorder (`_due`) when `intervals` ((len(columns),), NaN: none) are given."""
    rows, cols, since = _last_purchases(
        history.events, customer_ids, columns, as_of, as_of - pd.Timedelta(days=days)
    )
    if intervals is None:
        return rows, cols
    keep = ~_due(since, intervals[cols])
    return rows[keep], cols[keep]
