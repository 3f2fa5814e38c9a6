"""The platform's own tables: validated warehouse copies of the shop tables, batches, quarantine, features.

The warehouse tables (`wh_<shop table>`) hold the columns of their shop table, less its contact
details (`retention.db.models.CONTACT_COLUMNS`, personal data that stays in the shop table), plus the
`batch_id` that last wrote each row. They carry no foreign keys or CHECK constraints: the Great
Expectations suites are the gate, and a row only arrives here after its batch passed them.
Downstream (features, training, campaigns) reads only these tables, never the shop's; the one
exception is consent and e-mail, which exports read from `customers` at read time, so a withdrawal
counts at once (`pipelines.campaigns.store.customer_contacts`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from retention.db.base import ID, Base
from retention.db.models import CONTACT_COLUMNS, Customer, Event, Order, Product, Review

SHOP_MODELS = {
    "customers": Customer,
    "products": Product,
    "orders": Order,
    "events": Event,
    "reviews": Review,
}
# Business-time column of each fact table (dimension tables have none and are extracted by updated_at).
FACT_TIME = {"events": "ts", "orders": "ts", "reviews": "ts"}


def extracted_columns(name: str) -> list[str]:
    """The columns of shop table `name` that extraction reads and the warehouse keeps (no contact details)."""
    contact = CONTACT_COLUMNS.get(name, ())
    return [c.name for c in SHOP_MODELS[name].__table__.columns if c.name not in contact]


def _warehouse_table(name: str, model: type[Base], indexes: list[tuple[str, ...]]) -> Table:
    kept = set(extracted_columns(name))
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in model.__table__.columns
        if c.name in kept
    ]
    table_name = f"wh_{name}"
    return Table(
        table_name,
        Base.metadata,
        *columns,
        Column("batch_id", ID, nullable=False),
        *(Index(f"ix_{table_name}_{'_'.join(cols)}", *cols) for cols in indexes),
    )


WAREHOUSE: dict[str, Table] = {
    "customers": _warehouse_table("customers", Customer, [("updated_at",)]),
    "products": _warehouse_table("products", Product, [("updated_at",)]),
    "orders": _warehouse_table("orders", Order, [("customer_id", "ts"), ("ts",)]),
    "events": _warehouse_table("events", Event, [("customer_id", "ts"), ("ts",)]),
    "reviews": _warehouse_table("reviews", Review, [("customer_id", "ts"), ("ts",)]),
}


class Batch(Base):
    """One row per data interval: the outcome of its latest attempt, its counts and validation summary.

    A rerun of the same interval updates its row (attempts + 1) instead of adding one. `status`,
    `finished_at`, `rows_read`, `failed`, `warnings` and `docs_url` describe the latest attempt;
    `rows_changed` is what publishing this interval changed in the warehouse, summed over its
    attempts, so a rerun that finds nothing new (all zeros) keeps the first publish's counts.
    `attempt_history` keeps each attempt's own record (attempt, finished_at, status, rows_read,
    rows_changed), oldest first; rows written before it existed start with one entry for the
    attempt they describe.
    """

    __tablename__ = "platform_batches"

    batch_id: Mapped[str] = mapped_column(ID, primary_key=True)
    interval_start: Mapped[datetime] = mapped_column(DateTime, index=True)
    interval_end: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16))  # "published" or "quarantined"
    attempts: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(DateTime)
    interval_events: Mapped[int] = mapped_column(Integer)  # events with ts inside the interval
    rows_read: Mapped[dict[str, int]] = mapped_column(JSON)  # per table: rows in the extracted batch
    # per table: rows new or changed in the warehouse by this interval's publishes (never reset by a rerun)
    rows_changed: Mapped[dict[str, int]] = mapped_column(JSON)
    # one entry per attempt: what it found and changed, so a rerun never hides the first publish
    attempt_history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    failed: Mapped[list[str]] = mapped_column(JSON)  # critical expectations that failed
    warnings: Mapped[list[str]] = mapped_column(JSON)  # warning-level expectations that failed
    docs_url: Mapped[str | None] = mapped_column(Text)  # GX Data Docs page of this validation


class Quarantine(Base):
    """Rows of a batch that failed validation, with the validation result; never published."""

    __tablename__ = "platform_quarantine"
    __table_args__ = (UniqueConstraint("batch_id", "table_name"),)

    quarantine_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ID, index=True)
    table_name: Mapped[str] = mapped_column(String(32))
    quarantined_at: Mapped[datetime] = mapped_column(DateTime)
    n_rows: Mapped[int] = mapped_column(Integer)
    failed: Mapped[list[str]] = mapped_column(JSON)  # names of the failed critical expectations
    validation: Mapped[dict[str, Any]] = mapped_column(JSON)  # the GX validation result of this table
    rows: Mapped[str] = mapped_column(Text)  # the batch rows as JSON records (ISO timestamps)


class ReviewSentiment(Base):
    """Sentiment score of one review text, computed once by a frozen model version."""

    __tablename__ = "review_sentiment"

    review_id: Mapped[str] = mapped_column(ID, primary_key=True)
    score: Mapped[float] = mapped_column(Float)  # P(positive) in [0, 1]
    model_version: Mapped[str] = mapped_column(String(64))
    scored_at: Mapped[datetime] = mapped_column(DateTime)


class OnlineFeatures(Base):
    """Online store: the latest feature vector of each customer, read by serving."""

    __tablename__ = "online_features"

    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime)
    feature_version: Mapped[str] = mapped_column(String(64))  # hash of the feature definitions
    features: Mapped[dict[str, Any]] = mapped_column(JSON)  # {feature name: value}
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class OnlineResult(Base):
    """The online store's other per-customer documents (embedded backend): materialised scores and states.

    One JSON document per (kind, customer); `feature_store.online_store` says what each kind holds.
    The same documents live under Redis keys when the deployment sets `RETENTION_ONLINE_STORE`.
    """

    __tablename__ = "online_results"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # "churn", "recommendations"
    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    document: Mapped[str] = mapped_column(Text)  # canonical JSON text (equal text: unchanged entry)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
