"""Pure feature-store core: point-in-time features, training sets and event sequences from frames.

Nothing here touches a database or a file; `feature_store.io` reads the frames and
`feature_store.offline` / `feature_store.online` write the results.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pandas as pd

from feature_store.definitions import feature_registry
from feature_store.frames import CART, PURCHASE, VIEW, FeatureContext, Frames
from retention.params import FeatureParams

CUTOFF, LABEL = "cutoff", "returned"
EVENT_CODES = {VIEW: 1, CART: 2, PURCHASE: 3}  # 0 is the padding of `to_padded`
SEQUENCE_COLUMNS = (
    "customer_id",
    "position",
    "ts",
    "event_type",
    "product_id",
    "category",
    "gap_hours",
    "age_hours",
    "amount",
)
HOUR = pd.Timedelta(hours=1)


def compute_features(frames: Frames, as_of: datetime, params: FeatureParams) -> pd.DataFrame:
    """Every registered feature of every customer with a purchase before `as_of`.

    Point-in-time correct: only rows strictly before `as_of` are used (signup dates, events,
    reviews and their sentiment), so rows added later never change the result.

    Args:
        frames: the inputs (see `Frames`).
        as_of: the point in time (naive UTC).
        params: the `features` section of params.yaml.

    Returns:
        One row per population customer, sorted by customer_id: `customer_id`, then the features
        in registry order with their registered dtypes.
    """
    ctx = FeatureContext(frames, as_of, params)
    columns: dict[str, object] = {"customer_id": pd.Series(ctx.ids, dtype=object)}
    for feature in feature_registry(params):
        columns[feature.name] = pd.Series(feature.compute(ctx)).astype(feature.dtype)
    return pd.DataFrame(columns)


def training_cutoffs(as_of: datetime, params: FeatureParams) -> list[pd.Timestamp]:
    """The training set's cutoffs, oldest first, one horizon apart; the latest is as_of - horizon.

    So every label window [cutoff, cutoff + horizon) ends at or before `as_of`: fully observed.

    Args:
        as_of: the point in time nothing may reach past.
        params: `horizon_days` and `training_cutoffs`.

    Returns:
        `training_cutoffs` timestamps.
    """
    horizon = pd.Timedelta(days=params.horizon_days)
    return [pd.Timestamp(as_of) - k * horizon for k in range(params.training_cutoffs, 0, -1)]


def label_returned(
    purchases: pd.DataFrame, customer_ids: pd.Series, cutoff: datetime, horizon_days: int
) -> np.ndarray:
    """1 where the customer has a purchase in [cutoff, cutoff + horizon), else 0.

    Args:
        purchases: purchase rows with customer_id and ts (other event types must be filtered out).
        customer_ids: the customers to label.
        cutoff: start of the label window.
        horizon_days: its length H.

    Returns:
        int64 labels aligned with `customer_ids`.
    """
    start = pd.Timestamp(cutoff)
    ts = pd.to_datetime(purchases["ts"])
    inside = (ts >= start) & (ts < start + pd.Timedelta(days=horizon_days))
    returned = set(purchases.loc[inside.to_numpy(), "customer_id"].astype(str))
    return customer_ids.astype(str).isin(returned).to_numpy(dtype=np.int64)


def training_rows(
    features: pd.DataFrame, cutoff: datetime, purchases: pd.DataFrame, params: FeatureParams
) -> pd.DataFrame:
    """Add the cutoff and the `returned` label to features computed as of `cutoff`.

    Args:
        features: `compute_features(..., cutoff, ...)`.
        cutoff: the cutoff those features were computed at.
        purchases: purchase rows (customer_id, ts) covering [cutoff, cutoff + horizon).
        params: `horizon_days`.

    Returns:
        customer_id, cutoff, the features, returned.
    """
    rows = features.copy()
    rows.insert(1, CUTOFF, pd.Timestamp(cutoff))
    rows[LABEL] = label_returned(purchases, rows["customer_id"], cutoff, params.horizon_days)
    return rows


def build_training_set(frames: Frames, as_of: datetime, params: FeatureParams) -> pd.DataFrame:
    """Training rows for every cutoff of `training_cutoffs(as_of)`, from frames holding all history.

    The population of each cutoff is the customers with a purchase before it (EVALUATION.md).
    `frames.lifetime` is ignored (it belongs to one as-of); the events must hold the full history.

    Args:
        frames: the inputs, all rows before `as_of` (later rows are ignored).
        as_of: no label window reaches past it.
        params: the `features` section of params.yaml.

    Returns:
        customer_id, cutoff, features..., returned; sorted by cutoff then customer_id.
    """
    frames = replace(frames, lifetime=None)
    events = frames.events
    purchases = events.loc[events["event_type"] == PURCHASE, ["customer_id", "ts"]]
    purchases = purchases[pd.to_datetime(purchases["ts"]) < pd.Timestamp(as_of)]
    parts = [
        training_rows(compute_features(frames, cutoff, params), cutoff, purchases, params)
        for cutoff in training_cutoffs(as_of, params)
    ]
    return pd.concat(parts, ignore_index=True)


def build_sequences(
    events: pd.DataFrame, products: pd.DataFrame, as_of: datetime, params: FeatureParams
) -> pd.DataFrame:
    """The last `sequence_length` events of each customer before `as_of`, as a long frame.

    One row per kept event, oldest first within a customer (`position` 0 .. length - 1, so the
    last position is the most recent event): what a GRU or transformer step consumes after
    `to_padded`. Every customer with an event in `events` before `as_of` has a sequence.

    Args:
        events: customer_id, product_id, event_type, ts, quantity, price, and optionally event_id
            (ties in ts are broken by it). To get `gap_hours` of the oldest kept event right, the
            events must include the event before it (a reader keeps L + 1 per customer).
        products: product_id, category.
        as_of: the point in time.
        params: `sequence_length`.

    Returns:
        Columns `SEQUENCE_COLUMNS`: gap_hours = hours since the customer's previous event (NaN for
        the first one known), age_hours = hours from the event to as-of, amount = quantity x unit
        price for purchases (NaN when the price is unknown) and 0 for views and carts.
    """
    ts = pd.to_datetime(events["ts"])
    frame = events.loc[(ts < pd.Timestamp(as_of)).to_numpy()].assign(ts=ts)
    frame = frame.assign(
        customer_id=frame["customer_id"].astype(str), product_id=frame["product_id"].astype(str)
    )
    order = ["customer_id", "ts"] + (["event_id"] if "event_id" in frame else [])
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    gaps: pd.Series[pd.Timedelta] = frame.groupby("customer_id", sort=False)["ts"].diff()
    frame["gap_hours"] = gaps / HOUR
    from_end = frame.groupby("customer_id", sort=False).cumcount(ascending=False)
    frame = frame[(from_end < params.sequence_length).to_numpy()].reset_index(drop=True)
    frame["position"] = frame.groupby("customer_id", sort=False).cumcount().astype(np.int64)
    ages: pd.Series[pd.Timedelta] = pd.Timestamp(as_of) - frame["ts"]
    frame["age_hours"] = ages / HOUR
    amount = pd.to_numeric(frame["quantity"]) * pd.to_numeric(frame["price"])
    frame["amount"] = amount.where(frame["event_type"] == PURCHASE, 0.0).astype(float)
    categories = products.assign(product_id=products["product_id"].astype(str)).drop_duplicates("product_id")
    frame["category"] = frame["product_id"].map(categories.set_index("product_id")["category"])
    return frame[list(SEQUENCE_COLUMNS)]


def to_padded(sequences: pd.DataFrame, length: int) -> dict[str, np.ndarray]:
    """Left-padded arrays of a `build_sequences` frame, one row per customer (most recent last).

    Args:
        sequences: the long frame.
        length: the padded length L (at least the longest sequence).

    Returns:
        customer_id (N,), mask (N, L) bool, event_type (N, L) int64 codes (`EVENT_CODES`, 0 = padding),
        product_id and category (N, L) object (None = padding), gap_hours, age_hours and amount
        (N, L) float64 (0 = padding; a first event's unknown gap is 0 too).
    """
    customers, row = np.unique(sequences["customer_id"].to_numpy(dtype=object), return_inverse=True)
    sizes = np.bincount(row, minlength=len(customers))
    if len(sizes) and sizes.max() > length:
        raise ValueError(f"a sequence has {sizes.max()} events, more than length={length}")
    column = length - sizes[row] + sequences["position"].to_numpy()
    shape = (len(customers), length)
    out: dict[str, np.ndarray] = {"customer_id": customers, "mask": np.zeros(shape, dtype=bool)}
    out["mask"][row, column] = True
    out["event_type"] = np.zeros(shape, dtype=np.int64)
    out["event_type"][row, column] = sequences["event_type"].map(EVENT_CODES).to_numpy(dtype=np.int64)
    for name in ("product_id", "category"):
        out[name] = np.full(shape, None, dtype=object)
        out[name][row, column] = sequences[name].to_numpy(dtype=object)
    for name in ("gap_hours", "age_hours", "amount"):
        out[name] = np.zeros(shape, dtype=np.float64)
        out[name][row, column] = np.nan_to_num(sequences[name].to_numpy(dtype=np.float64))
    return out
