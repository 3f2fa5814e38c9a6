"""The event log models train and are evaluated on: shop or warehouse tables read into typed frames."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from feature_store.frames import Frames
from feature_store.io import read_query

Source = Literal["shop", "warehouse"]
SOURCES: dict[str, Source] = {"warehouse": "warehouse", "shop": "shop"}  # by name, for option parsing
TABLE_PREFIX: dict[str, str] = {"shop": "", "warehouse": "wh_"}
EVENT_COLUMNS = ["event_id", "customer_id", "product_id", "event_type", "ts", "quantity", "price", "order_id"]
PRODUCT_COLUMNS = ["product_id", "category", "title", "description", "price"]
CUSTOMER_COLUMNS = ["customer_id", "signup_date"]
REVIEW_COLUMNS = ["customer_id", "review_id", "product_id", "ts", "rating", "score"]


class EventLogError(ValueError):
    """The event log cannot be used (for example: it is empty)."""


@dataclass(frozen=True)
class EventLog:
    """One shop's interactions and catalogue, sorted by (ts, event_id); timestamps naive UTC.

    Attributes:
        events: event_id, customer_id, product_id, event_type (view/cart/purchase), ts, quantity
            (int), price (unit price, NaN = unknown), order_id (None = no order).
        products: product_id, category, title, description, price (metadata may be null).
        customers: customer_id, signup_date.
        reviews: customer_id, review_id, product_id, ts, rating, score (sentiment; NaN = unscored).
    """

    events: pd.DataFrame
    products: pd.DataFrame
    customers: pd.DataFrame
    reviews: pd.DataFrame

    def before(self, t: datetime) -> EventLog:
        """The log as it was known at `t`: events and reviews with ts < t (catalogue kept whole)."""
        cut = pd.Timestamp(t)
        return EventLog(
            events=self.events[self.events["ts"] < cut].reset_index(drop=True),
            products=self.products,
            customers=self.customers,
            reviews=self.reviews[self.reviews["ts"] < cut].reset_index(drop=True),
        )

    def frames(self) -> Frames:
        """The feature store's inputs (all history; `compute_features` cuts at its as-of)."""
        return Frames(
            customers=self.customers,
            products=self.products[["product_id", "category", "price"]],
            events=self.events,
            reviews=self.reviews[["customer_id", "review_id", "ts", "rating", "score"]],
        )

    def fingerprint(self) -> str:
        """A short content hash of the events: equal logs give equal fingerprints, on any backend."""
        columns = ["customer_id", "product_id", "event_type", "ts", "quantity", "price", "order_id"]
        hashed = pd.util.hash_pandas_object(self.events[columns].astype(str), index=False).to_numpy()
        digest = hashlib.sha256(np.sort(hashed).tobytes())
        return digest.hexdigest()[:16]

    @property
    def span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last event time."""
        return self.events["ts"].min(), self.events["ts"].max()


def _typed_events(events: pd.DataFrame) -> pd.DataFrame:
    events = events.assign(
        customer_id=events["customer_id"].astype(str),
        product_id=events["product_id"].astype(str),
        ts=pd.to_datetime(events["ts"]).astype("datetime64[ns]"),
        quantity=pd.to_numeric(events["quantity"]).fillna(1).astype(np.int64),
        price=pd.to_numeric(events["price"]).astype(float),
        order_id=events["order_id"].astype(object).where(events["order_id"].notna(), None),
    )
    return events.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)


def event_log_from_frames(
    events: pd.DataFrame,
    products: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    reviews: pd.DataFrame | None = None,
) -> EventLog:
    """Build an `EventLog` from frames, filling optional columns and tables (tests, notebooks).

    Args:
        events: at least customer_id, product_id, ts; event_type defaults to purchase, quantity to 1,
            price to unknown, order_id to none, event_id to the row number.
        products: the catalogue; by default the products seen in `events`, without metadata.
        customers: by default the customers seen in `events`, without signup dates.
        reviews: by default none.

    Returns:
        The typed, sorted log.
    """
    events = events.copy()
    defaults: dict[str, str | int | float | None] = {
        "event_type": "purchase",
        "quantity": 1,
        "price": np.nan,
        "order_id": None,
    }
    for column, value in defaults.items():
        if column not in events:
            events[column] = value
    if "event_id" not in events:
        events["event_id"] = [f"e{i:09d}" for i in range(len(events))]
    events = _typed_events(events[EVENT_COLUMNS])
    if products is None:
        products = pd.DataFrame({"product_id": np.unique(events["product_id"])})
    products = products.assign(product_id=products["product_id"].astype(str))
    for column in PRODUCT_COLUMNS:
        if column not in products:
            products[column] = np.nan if column == "price" else None
    if customers is None:
        customers = pd.DataFrame({"customer_id": np.unique(events["customer_id"]), "signup_date": pd.NaT})
    if reviews is None:
        reviews = pd.DataFrame({c: pd.Series(dtype=object) for c in REVIEW_COLUMNS})
        reviews = reviews.astype({"ts": "datetime64[ns]", "rating": float, "score": float})
    return EventLog(events, products[PRODUCT_COLUMNS].reset_index(drop=True), customers, reviews)


NO_CUTOFF = datetime(9999, 1, 1)  # `before` when nothing is cut


def _read_tables(
    engine: Engine, prefix: str, before: datetime | None, customer_id: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Events, products, customers and reviews (with sentiment) before `before`; with `customer_id`,
    only that customer's rows and the products they touched. The one place that spells this SQL."""
    where: dict[str, object] = {"before": before or NO_CUTOFF}
    own = own_reviews = ""
    products_filter = customers_filter = ""
    if customer_id is not None:
        where["customer"] = customer_id
        own, own_reviews = " AND customer_id = :customer", " AND r.customer_id = :customer"
        products_filter = (
            f" WHERE product_id IN (SELECT product_id FROM {prefix}events "
            "WHERE customer_id = :customer AND ts < :before)"
        )
        customers_filter = " WHERE customer_id = :customer"
    with engine.connect() as connection:
        events = read_query(
            connection,
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM {prefix}events WHERE ts < :before{own}",
            where,
            EVENT_COLUMNS,
            ["ts"],
            ["quantity", "price"],
        )
        products = read_query(
            connection,
            f"SELECT {', '.join(PRODUCT_COLUMNS)} FROM {prefix}products{products_filter}",
            where,
            PRODUCT_COLUMNS,
            (),
            ["price"],
        )
        customers = read_query(
            connection,
            f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM {prefix}customers{customers_filter}",
            where,
            CUSTOMER_COLUMNS,
            ["signup_date"],
        )
        reviews = read_query(
            connection,
            f"SELECT r.customer_id, r.review_id, r.product_id, r.ts, r.rating, s.score FROM {prefix}reviews r "
            f"LEFT JOIN review_sentiment s ON s.review_id = r.review_id WHERE r.ts < :before{own_reviews}",
            where,
            REVIEW_COLUMNS,
            ["ts"],
            ["rating", "score"],
        )
    return events, products, customers, reviews


def read_customer_log(
    engine: Engine, customer_id: str, before: datetime | None = None, source: Source = "warehouse"
) -> EventLog:
    """One customer's event log from the warehouse (the catalogue limited to the products they touched).

    Args:
        engine: the platform database.
        customer_id: the customer.
        before: if given, only events and reviews before it are read.
        source: "warehouse" (validated, published rows), or "shop" (the source tables, which also
            hold rows accepted since the last extraction: the real-time view of one customer).

    Returns:
        The typed, sorted log (empty when the customer has no event).
    """
    return event_log_from_frames(*_read_tables(engine, TABLE_PREFIX[source], before, customer_id))


def read_event_log(engine: Engine, source: Source = "shop", before: datetime | None = None) -> EventLog:
    """Read the whole event log of the platform database.

    Args:
        engine: the platform database.
        source: "shop" reads the tables `retention ingest` / `simulate` fill; "warehouse" reads the
            validated `wh_*` tables the extraction DAG publishes.
        before: if given, only rows with ts before it are read.

    Returns:
        The typed, sorted log.

    Raises:
        EventLogError: the log holds no purchase (nothing to train or evaluate on).
    """
    if source not in TABLE_PREFIX:
        raise EventLogError(f"source must be one of: {', '.join(TABLE_PREFIX)} (got '{source}')")
    events, products, customers, reviews = _read_tables(engine, TABLE_PREFIX[source], before, None)
    if not (events["event_type"] == "purchase").any():
        hint = (
            "load data first (retention ingest)"
            if source == "shop"
            else "extract it first (retention extract)"
        )
        raise EventLogError(f"the {source} event log holds no purchase: {hint}")
    return EventLog(_typed_events(events), products, customers, reviews)
