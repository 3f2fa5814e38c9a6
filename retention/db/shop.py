"""Write a batch of shop rows (customers, products, orders, events, reviews) in foreign-key order.

Simulator and ingest both produce a `ShopBatch`; `write_shop_batch` stores it inside the caller's
transaction, and `record_load` appends the audit row of the platform's load log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, insert

from retention.clock import utc_now
from retention.db.models import Customer, Event, Load, Order, Product, Review
from retention.db.writes import write_frame


@dataclass(frozen=True)
class ShopBatch:
    """Rows to store. Full customer/product records are upserted; stubs only fill missing keys.

    Attributes:
        customers: full customer records (customer_id, signup_date, country, marketing_consent, email).
        products: full product records (product_id, category, title, description, price, active).
        customer_stubs: ids seen in events or reviews; created bare if not stored yet.
        product_stubs: likewise for products.
        orders, events, reviews: immutable facts; keys already stored are skipped.
    """

    customers: pd.DataFrame = field(default_factory=pd.DataFrame)
    products: pd.DataFrame = field(default_factory=pd.DataFrame)
    customer_stubs: pd.Index = field(default_factory=lambda: pd.Index([]))
    product_stubs: pd.Index = field(default_factory=lambda: pd.Index([]))
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    reviews: pd.DataFrame = field(default_factory=pd.DataFrame)

    def frames(self) -> dict[str, pd.DataFrame]:
        """The batch's full records and facts by table name (stubs excluded)."""
        return {
            "customers": self.customers,
            "products": self.products,
            "orders": self.orders,
            "events": self.events,
            "reviews": self.reviews,
        }


def write_shop_batch(connection: Connection, batch: ShopBatch, now: datetime) -> dict[str, int]:
    """Store a batch; returns rows inserted or changed per table (zero everywhere on a re-run)."""
    stamp = {"updated_at": now}
    counts = {
        "customers": write_frame(connection, Customer.__table__, batch.customers.assign(**stamp), "upsert"),
        "products": write_frame(connection, Product.__table__, batch.products.assign(**stamp), "upsert"),
    }
    counts["customers"] += write_frame(
        connection,
        Customer.__table__,
        pd.DataFrame({"customer_id": batch.customer_stubs, "marketing_consent": False, **stamp}),
        "insert_new",
    )
    counts["products"] += write_frame(
        connection,
        Product.__table__,
        pd.DataFrame({"product_id": batch.product_stubs, "active": True, **stamp}),
        "insert_new",
    )
    for name, model, frame in (
        ("orders", Order, batch.orders),
        ("events", Event, batch.events),
        ("reviews", Review, batch.reviews),
    ):
        counts[name] = write_frame(connection, model.__table__, frame.assign(**stamp), "insert_new")
    return counts


def record_load(
    connection: Connection,
    *,
    kind: str,
    source: str,
    content_hash: str,
    status: str,
    started_at: datetime,
    rows_read: int,
    rows_inserted: int,
    detail: Mapping[str, object],
) -> int:
    """Append one row to the platform load log; returns its load_id."""
    result = connection.execute(
        insert(Load).values(
            kind=kind,
            source=source,
            content_hash=content_hash,
            status=status,
            started_at=started_at,
            finished_at=utc_now(),
            rows_read=rows_read,
            rows_inserted=rows_inserted,
            detail=detail,
        )
    )
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT always reports the key it created
    return int(key[0])
