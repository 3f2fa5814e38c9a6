"""SQLAlchemy 2 models of the shop's source schema (the platform's own tables: platform.py, warehouse.py).

The shop tables (customers, products, events, orders, reviews) are what an e-commerce system
holds; the platform reads them incrementally. Every shop table carries `updated_at`, the time the
row was last written, so extraction can pick up new and changed rows. Keys are opaque strings:
an id is never assumed to be an integer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from retention.db.base import ID, Base


class Customer(Base):
    """A shop customer. `email` is personal data: only exports for consenting customers read it."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    signup_date: Mapped[date | None] = mapped_column(Date)
    country: Mapped[str | None] = mapped_column(String(2))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(254))
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)


# Contact details (personal data) per shop table: they stay in the shop table. Extraction never
# stages them and the warehouse has no column for them; exports join them at read time.
CONTACT_COLUMNS: dict[str, tuple[str, ...]] = {"customers": ("email",)}


class Product(Base):
    """A catalogue item. Items seen only in an event log have no category, title or price."""

    __tablename__ = "products"
    __table_args__ = (CheckConstraint("price IS NULL OR price >= 0", name="price_nonnegative"),)

    product_id: Mapped[str] = mapped_column(ID, primary_key=True)
    category: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Event(Base):
    """One interaction: a view, an add-to-cart or a purchase line (timestamps are naive UTC)."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("event_type IN ('view', 'cart', 'purchase')", name="event_type_known"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("price IS NULL OR price >= 0", name="price_nonnegative"),
        Index("ix_events_customer_ts", "customer_id", "ts"),
    )

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"))
    event_type: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    price: Mapped[float | None] = mapped_column(Float)
    order_id: Mapped[str | None] = mapped_column(ID)
    session_id: Mapped[str | None] = mapped_column(ID)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Order(Base):
    """A checkout: the purchase events that share `order_id`, with their totals."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("n_items >= 1", name="n_items_positive"),
        CheckConstraint("total_amount IS NULL OR total_amount >= 0", name="total_nonnegative"),
        Index("ix_orders_customer_ts", "customer_id", "ts"),
    )

    order_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"))
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    n_items: Mapped[int] = mapped_column(Integer)
    total_amount: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Review(Base):
    """A product review: a 1-5 star rating and optional free text."""

    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),)

    review_id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.product_id"), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    rating: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Load(Base):
    """Platform audit log: one row per load attempt into the shop tables (accepted or rejected)."""

    __tablename__ = "platform_loads"

    load_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(32))  # "ingest" or "simulate"
    source: Mapped[str] = mapped_column(Text)  # what was loaded (file names, simulator run)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # "loaded" or "rejected"
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime)
    rows_read: Mapped[int] = mapped_column(BigInteger)
    rows_inserted: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)  # per-table counts, or the rejection reasons
