"""Feature-store fixtures: a tiny hand-checkable shop, and loaders of warehouse tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from feature_store.frames import Frames
from retention.db.warehouse import WAREHOUSE, ReviewSentiment
from retention.db.writes import write_frame
from retention.params import FeatureParams, load_params
from retention.settings import DEFAULT_PARAMS

AS_OF = datetime(2026, 3, 1)
BATCH = "test"
SHOP_TABLES = ("customers", "products", "orders", "events", "reviews")


def _ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value)


def tiny_shop() -> dict[str, pd.DataFrame]:
    """Five customers, three products, fifteen events, four reviews (expected values in test_feature_core)."""
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "signup_date": pd.to_datetime(["2025-12-01", None, "2026-01-15", "2026-02-20", None]),
        }
    )
    products = pd.DataFrame(
        {"product_id": ["p1", "p2", "p3"], "category": ["books", "toys", None], "price": [10.0, 20.0, 5.0]}
    )
    rows = [
        # event_id, customer, product, type, ts, quantity, price, order_id
        ("e01", "a", "p1", "view", "2026-02-27 10:00", 1, None, None),
        ("e02", "a", "p1", "cart", "2026-02-27 10:05", 1, None, None),
        ("e03", "a", "p1", "purchase", "2026-02-27 10:10", 2, 8.0, "o1"),
        ("e04", "a", "p2", "purchase", "2026-02-27 10:10", 1, 20.0, "o1"),
        ("e05", "a", "p2", "cart", "2026-02-10 12:00", 1, None, None),
        ("e06", "a", "p3", "purchase", "2026-01-20 09:00", 1, 5.0, "o2"),
        ("e07", "a", "p3", "cart", "2026-02-25 08:00", 1, None, None),
        ("e08", "b", "p2", "view", "2025-06-01 12:00", 1, None, None),
        ("e09", "b", "p2", "purchase", "2025-06-01 12:30", 1, 20.0, None),
        ("e10", "b", "p1", "purchase", "2025-06-01 12:30", 1, 10.0, None),
        ("e11", "b", "p1", "purchase", "2026-02-01 00:00", 3, None, "o3"),
        ("e12", "c", "p2", "purchase", "2026-02-28 20:00", 1, 20.0, "o4"),
        ("e13", "c", "p1", "purchase", "2026-02-14 00:00", 1, 10.0, "o5"),
        ("e14", "c", "p3", "purchase", "2026-01-10 00:00", 1, 4.0, "o6"),
        ("e15", "c", "p1", "purchase", "2026-03-01 00:00", 1, 10.0, "o8"),  # at as-of: excluded
        ("e16", "d", "p1", "view", "2026-02-20 00:00", 1, None, None),
        ("e17", "e", "p1", "purchase", "2024-01-01 00:00", 1, 10.0, "o7"),  # before the history window
    ]
    events = pd.DataFrame(
        rows,
        columns=[
            "event_id",
            "customer_id",
            "product_id",
            "event_type",
            "ts",
            "quantity",
            "price",
            "order_id",
        ],
    )
    events["ts"] = pd.to_datetime(events["ts"])
    events["price"] = events["price"].astype(float)
    reviews = pd.DataFrame(
        {
            "review_id": ["r1", "r2", "r3", "r4"],
            "customer_id": ["a", "a", "c", "c"],
            "product_id": ["p1", "p3", "p2", "p1"],
            "ts": pd.to_datetime(
                ["2026-02-28 00:00", "2026-01-21 00:00", "2026-02-28 22:00", "2026-03-01 00:00"]
            ),
            "rating": [4, 2, 5, 1],
        }
    )
    sentiment = pd.DataFrame({"review_id": ["r1", "r3", "r4"], "score": [0.9, 0.8, 0.1]})
    return {
        "customers": customers,
        "products": products,
        "events": events,
        "reviews": reviews,
        "sentiment": sentiment,
    }


def frames_of(shop: dict[str, pd.DataFrame]) -> Frames:
    """The pure core's input for a shop given as frames (sentiment joined onto reviews)."""
    reviews = shop["reviews"].merge(shop["sentiment"], on="review_id", how="left")
    return Frames(
        customers=shop["customers"], products=shop["products"], events=shop["events"], reviews=reviews
    )


@pytest.fixture
def feature_params() -> FeatureParams:
    """The project's `features` parameters."""
    return load_params(DEFAULT_PARAMS).features


@pytest.fixture
def shop() -> dict[str, pd.DataFrame]:
    """The tiny shop as frames."""
    return tiny_shop()


def _shop_rows(shop: dict[str, pd.DataFrame], updated_at: datetime) -> dict[str, pd.DataFrame]:
    """Warehouse rows of the tiny shop: every column of each table, orders derived from purchases."""
    customers = shop["customers"].assign(country="DE", marketing_consent=False, email=None)
    products = shop["products"].assign(title=None, description=None, active=True)
    events = shop["events"].assign(session_id=None)
    lines = events[events["event_type"].eq("purchase") & events["order_id"].notna()]
    orders = (
        lines.assign(amount=lines["quantity"] * lines["price"])
        .groupby("order_id")
        .agg(
            customer_id=("customer_id", "first"),
            ts=("ts", "min"),
            n_items=("quantity", "sum"),
            total_amount=("amount", "sum"),
        )
        .reset_index()
    )
    reviews = shop["reviews"].assign(text="fine")
    tables = {
        "customers": customers,
        "products": products,
        "events": events,
        "orders": orders,
        "reviews": reviews,
    }
    return {name: frame.assign(updated_at=updated_at, batch_id=BATCH) for name, frame in tables.items()}


def load_warehouse(engine: Engine, shop: dict[str, pd.DataFrame], scored_at: datetime = AS_OF) -> None:
    """Insert the shop's rows into the wh_ tables and its sentiment into review_sentiment (new keys only)."""
    with engine.begin() as connection:
        for name, frame in _shop_rows(shop, scored_at).items():
            write_frame(
                connection, WAREHOUSE[name], frame, "insert_new", bookkeeping=("updated_at", "batch_id")
            )
        sentiment = shop["sentiment"].assign(model_version="test", scored_at=scored_at)
        write_frame(connection, ReviewSentiment.__table__, sentiment, "insert_new", bookkeeping=())


@pytest.fixture
def warehouse_loader() -> Callable[[Engine, dict[str, pd.DataFrame]], None]:
    """`load_warehouse`, for tests that load the tiny shop (or a changed copy) into a database."""
    return load_warehouse


def copy_shop_to_warehouse(engine: Engine) -> None:
    """Copy every shop table into its wh_ table (batch 'test'), until the extraction pipeline fills them."""
    with engine.begin() as connection:
        for table in SHOP_TABLES:
            connection.execute(text(f"DELETE FROM wh_{table}"))
            connection.execute(text(f"INSERT INTO wh_{table} SELECT *, '{BATCH}' FROM {table}"))
