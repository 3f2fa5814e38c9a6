"""warehouse, batches, quarantine, sentiment and online features

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:15:52.845656
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_features",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("feature_version", sa.String(length=64), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_online_features")),
    )
    op.create_table(
        "platform_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("interval_start", sa.DateTime(), nullable=False),
        sa.Column("interval_end", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("interval_events", sa.Integer(), nullable=False),
        sa.Column("rows_read", sa.JSON(), nullable=False),
        sa.Column("rows_changed", sa.JSON(), nullable=False),
        sa.Column("failed", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("docs_url", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_platform_batches")),
    )
    with op.batch_alter_table("platform_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_batches_interval_start"), ["interval_start"], unique=False
        )

    op.create_table(
        "platform_quarantine",
        sa.Column("quarantine_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("table_name", sa.String(length=32), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("failed", sa.JSON(), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=False),
        sa.Column("rows", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("quarantine_id", name=op.f("pk_platform_quarantine")),
        sa.UniqueConstraint("batch_id", "table_name", name=op.f("uq_platform_quarantine_batch_id")),
    )
    with op.batch_alter_table("platform_quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_quarantine_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "review_sentiment",
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_review_sentiment")),
    )
    op.create_table(
        "wh_customers",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("signup_date", sa.Date(), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("marketing_consent", sa.Boolean(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_wh_customers")),
    )
    with op.batch_alter_table("wh_customers", schema=None) as batch_op:
        batch_op.create_index("ix_wh_customers_updated_at", ["updated_at"], unique=False)

    op.create_table(
        "wh_events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_wh_events")),
    )
    with op.batch_alter_table("wh_events", schema=None) as batch_op:
        batch_op.create_index("ix_wh_events_customer_id_ts", ["customer_id", "ts"], unique=False)
        batch_op.create_index("ix_wh_events_ts", ["ts"], unique=False)

    op.create_table(
        "wh_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("total_amount", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_wh_orders")),
    )
    with op.batch_alter_table("wh_orders", schema=None) as batch_op:
        batch_op.create_index("ix_wh_orders_customer_id_ts", ["customer_id", "ts"], unique=False)
        batch_op.create_index("ix_wh_orders_ts", ["ts"], unique=False)

    op.create_table(
        "wh_products",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("title", sa.String(length=256), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_wh_products")),
    )
    with op.batch_alter_table("wh_products", schema=None) as batch_op:
        batch_op.create_index("ix_wh_products_updated_at", ["updated_at"], unique=False)

    op.create_table(
        "wh_reviews",
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_wh_reviews")),
    )
    with op.batch_alter_table("wh_reviews", schema=None) as batch_op:
        batch_op.create_index("ix_wh_reviews_customer_id_ts", ["customer_id", "ts"], unique=False)
        batch_op.create_index("ix_wh_reviews_ts", ["ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wh_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_wh_reviews_ts")
        batch_op.drop_index("ix_wh_reviews_customer_id_ts")

    op.drop_table("wh_reviews")
    with op.batch_alter_table("wh_products", schema=None) as batch_op:
        batch_op.drop_index("ix_wh_products_updated_at")

    op.drop_table("wh_products")
    with op.batch_alter_table("wh_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_wh_orders_ts")
        batch_op.drop_index("ix_wh_orders_customer_id_ts")

    op.drop_table("wh_orders")
    with op.batch_alter_table("wh_events", schema=None) as batch_op:
        batch_op.drop_index("ix_wh_events_ts")
        batch_op.drop_index("ix_wh_events_customer_id_ts")

    op.drop_table("wh_events")
    with op.batch_alter_table("wh_customers", schema=None) as batch_op:
        batch_op.drop_index("ix_wh_customers_updated_at")

    op.drop_table("wh_customers")
    op.drop_table("review_sentiment")
    with op.batch_alter_table("platform_quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_quarantine_batch_id"))

    op.drop_table("platform_quarantine")
    with op.batch_alter_table("platform_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_batches_interval_start"))

    op.drop_table("platform_batches")
    op.drop_table("online_features")
