"""The feature store's inputs (`Frames`) and their point-in-time preparation into per-customer arrays.

`Frames` is what a reader hands the pure core: warehouse rows as data frames. `FeatureContext`
cuts them at the as-of time, keeps the population (customers with a purchase before as-of),
turns customer ids into integer codes and caches the intermediate tables (orders, windowed
masks) that several features share, so that every feature is a vectorised numpy/pandas step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from retention.params import FeatureParams

DAY = pd.Timedelta(days=1)
PURCHASE, CART, VIEW = "purchase", "cart", "view"
EVENT_COLUMNS = ("customer_id", "product_id", "event_type", "ts", "quantity", "price", "order_id")
CUSTOMER_COLUMNS = ("customer_id", "signup_date")
PRODUCT_COLUMNS = ("product_id", "category", "price")
REVIEW_COLUMNS = ("customer_id", "review_id", "ts", "rating", "score")
LIFETIME_COLUMNS = ("customer_id", "first_event_ts", "last_purchase_ts")


class FramesError(ValueError):
    """A frame handed to the feature store lacks a required column."""


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FramesError(f"{name} frame lacks columns {missing}")


@dataclass(frozen=True)
class Frames:
    """Warehouse rows the features are computed from (timestamps naive UTC).

    Attributes:
        customers: customer_id, signup_date (a date; null = unknown).
        products: product_id, category (may be null), price (list price, may be null).
        events: customer_id, product_id, event_type, ts, quantity, price (unit price), order_id.
            Rows at or after as-of are ignored. A reader may leave out rows no feature uses:
            anything older than `history_days`, and views older than `activity_days`.
        reviews: customer_id, review_id, ts, rating, score (sentiment P(positive); NaN = unknown).
        lifetime: optional all-history aggregates per customer before as-of: customer_id,
            first_event_ts, last_purchase_ts. When None they are derived from `events`, which
            must then hold the whole history (the pure path used by tests); a database reader
            computes them with a GROUP BY so that `events` can stay bounded by `history_days`.
    """

    customers: pd.DataFrame
    products: pd.DataFrame
    events: pd.DataFrame
    reviews: pd.DataFrame
    lifetime: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        _require(self.customers, CUSTOMER_COLUMNS, "customers")
        _require(self.products, PRODUCT_COLUMNS, "products")
        _require(self.events, EVENT_COLUMNS, "events")
        _require(self.reviews, REVIEW_COLUMNS, "reviews")
        if self.lifetime is not None:
            _require(self.lifetime, LIFETIME_COLUMNS, "lifetime")


def lifetime_from_events(events: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """First event and last purchase per customer among events before `as_of`.

    Args:
        events: event rows (at least customer_id, event_type, ts).
        as_of: the cut-off; rows at or after it are ignored.

    Returns:
        One row per customer with an event: customer_id, first_event_ts, last_purchase_ts (NaT
        when the customer never purchased).
    """
    before = events[pd.to_datetime(events["ts"]) < pd.Timestamp(as_of)]
    ts = pd.to_datetime(before["ts"])
    first = ts.groupby(before["customer_id"], observed=True).min().rename("first_event_ts")
    bought = before["event_type"] == PURCHASE
    last = ts[bought].groupby(before["customer_id"][bought], observed=True).max().rename("last_purchase_ts")
    frame = pd.concat([first, last], axis=1).rename_axis("customer_id").reset_index()
    frame["customer_id"] = frame["customer_id"].astype(str)
    return frame


def population_ids(lifetime: pd.DataFrame, as_of: datetime) -> np.ndarray:
    """Sorted ids of the customers with at least one purchase before `as_of` (EVALUATION.md)."""
    last = pd.to_datetime(lifetime["last_purchase_ts"])
    ids = lifetime.loc[last.notna() & (last < pd.Timestamp(as_of)), "customer_id"].astype(str)
    return np.sort(ids.unique()).astype(object)


class FeatureContext:
    """The frames cut at `as_of` and restricted to the population, with shared intermediate tables.

    Every table's `code` column indexes the population (`ids`, sorted customer ids); every feature
    returns an array of length `n` aligned with `ids`.

    Args:
        frames: the inputs.
        as_of: the point in time; only rows strictly before it are used.
        params: the `features` section of params.yaml.
    """

    def __init__(self, frames: Frames, as_of: datetime, params: FeatureParams) -> None:
        self.as_of = pd.Timestamp(as_of)
        self.params = params
        self.frames = frames
        self.memo: dict[str, object] = {}  # intermediate results shared by several features
        lifetime = (
            frames.lifetime if frames.lifetime is not None else lifetime_from_events(frames.events, as_of)
        )
        self.ids = population_ids(lifetime, as_of)
        self.n = len(self.ids)
        self._index = pd.Index(self.ids)
        lifetime = lifetime.assign(code=self._codes(lifetime["customer_id"]))
        lifetime = lifetime[lifetime["code"] >= 0]
        self.last_purchase_ts = self._aligned(lifetime["code"], pd.to_datetime(lifetime["last_purchase_ts"]))
        self.first_event_ts = self._aligned(lifetime["code"], pd.to_datetime(lifetime["first_event_ts"]))

    # -- helpers ------------------------------------------------------------------------------

    def _codes(self, customer_ids: pd.Series) -> np.ndarray:
        """Population index of each customer id; -1 for customers outside the population."""
        return self._index.get_indexer(customer_ids.astype(str)).astype(np.int64)

    def _aligned(self, codes: pd.Series | np.ndarray, values: pd.Series) -> np.ndarray:
        out = np.full(self.n, np.datetime64("NaT"), dtype="datetime64[ns]")
        out[np.asarray(codes)] = values.to_numpy(dtype="datetime64[ns]")
        return out

    def days_before(self, ts: npt.NDArray[np.datetime64]) -> np.ndarray:
        """Days (fractional) from each timestamp to as-of."""
        return (self.as_of.to_datetime64() - ts) / np.timedelta64(1, "D")

    def count(self, codes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-customer count (or sum of `weights`) of rows with the given population codes."""
        return np.bincount(codes, weights=weights, minlength=self.n)

    # -- shared tables ------------------------------------------------------------------------

    @cached_property
    def events(self) -> pd.DataFrame:
        """Population events before as-of: code, product_id, event_type, ts, age_days, quantity, amount, order_id."""
        events = self.frames.events
        ts = pd.to_datetime(events["ts"])
        keep = (ts < self.as_of).to_numpy()
        events = events.loc[keep]
        frame = pd.DataFrame(
            {
                "code": self._codes(events["customer_id"]),
                "product_id": events["product_id"].astype(str).to_numpy(),
                "event_type": events["event_type"].astype(str).to_numpy(),
                "ts": ts[keep].to_numpy(dtype="datetime64[ns]"),
                "quantity": pd.to_numeric(events["quantity"]).to_numpy(dtype=float),
                "price": pd.to_numeric(events["price"]).to_numpy(dtype=float),
                "order_id": events["order_id"].to_numpy(dtype=object),
            }
        )
        frame = frame[frame["code"] >= 0].reset_index(drop=True)
        frame["age_days"] = self.days_before(frame["ts"].to_numpy())
        frame["amount"] = frame["quantity"] * frame["price"]
        return frame

    @cached_property
    def purchases(self) -> pd.DataFrame:
        """Purchase lines within the history window, with the product's list price and category."""
        events = self.events
        lines = events[(events["event_type"] == PURCHASE) & (events["age_days"] <= self.params.history_days)]
        products = self.frames.products
        products = products.assign(product_id=products["product_id"].astype(str))
        products = products.drop_duplicates("product_id").set_index("product_id")
        lines = lines.assign(
            list_price=pd.to_numeric(products["price"]).reindex(lines["product_id"]).to_numpy(dtype=float),
            category=products["category"].reindex(lines["product_id"]).to_numpy(dtype=object),
        )
        return lines.reset_index(drop=True)

    @cached_property
    def orders(self) -> pd.DataFrame:
        """One row per order within the history window: code, ts (first line), age_days, amount.

        An order is an `order_id`; purchase lines without one are grouped by their timestamp.
        """
        lines = self.purchases
        key = lines["order_id"].astype(object)
        missing = key.isna()
        key = key.where(~missing, "@" + lines["ts"].astype(str))
        orders = (
            pd.DataFrame({"code": lines["code"], "key": key, "ts": lines["ts"], "amount": lines["amount"]})
            .groupby(["code", "key"], sort=False)
            .agg(ts=("ts", "min"), amount=("amount", "sum"))  # unknown prices add nothing
            .reset_index()
            .sort_values(["code", "ts", "key"], kind="stable")
            .reset_index(drop=True)
        )
        orders["age_days"] = self.days_before(orders["ts"].to_numpy())
        return orders

    def orders_between(self, newest_days: float, oldest_days: float) -> pd.DataFrame:
        """Orders with `newest_days` < days before as-of <= `oldest_days` (i.e. ts in [T - oldest, T - newest))."""
        age = self.orders["age_days"]  # > 0 always: only rows strictly before as-of are kept
        return self.orders[(age > newest_days) & (age <= oldest_days)]

    @cached_property
    def reviews(self) -> pd.DataFrame:
        """Population reviews written before as-of: code, rating, score."""
        reviews = self.frames.reviews
        ts = pd.to_datetime(reviews["ts"])
        reviews = reviews.loc[(ts < self.as_of).to_numpy()]
        frame = pd.DataFrame(
            {
                "code": self._codes(reviews["customer_id"]),
                "rating": pd.to_numeric(reviews["rating"]).to_numpy(dtype=float),
                "score": pd.to_numeric(reviews["score"]).to_numpy(dtype=float),
            }
        )
        return frame[frame["code"] >= 0]

    @cached_property
    def signup_date(self) -> np.ndarray:
        """Signup date per population customer (NaT when unknown or not before as-of)."""
        customers = self.frames.customers
        signup = pd.to_datetime(customers["signup_date"])
        codes = self._codes(customers["customer_id"])
        keep = (codes >= 0) & (signup < self.as_of).to_numpy()
        return self._aligned(codes[keep], signup[keep])
