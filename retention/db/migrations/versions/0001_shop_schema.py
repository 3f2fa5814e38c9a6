"""shop source schema and platform load log

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:23:20.041338
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("signup_date", sa.Date(), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("marketing_consent", sa.Boolean(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "platform_loads",
        sa.Column(
            "load_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_inserted", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("load_id", name=op.f("pk_platform_loads")),
    )
    with op.batch_alter_table("platform_loads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_loads_content_hash"), ["content_hash"], unique=False)

    op.create_table(
        "products",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("title", sa.String(length=256), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("price IS NULL OR price >= 0", name=op.f("ck_products_price_nonnegative")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_products")),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_products_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "events",
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
        sa.CheckConstraint(
            "event_type IN ('view', 'cart', 'purchase')", name=op.f("ck_events_event_type_known")
        ),
        sa.CheckConstraint("price IS NULL OR price >= 0", name=op.f("ck_events_price_nonnegative")),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_events_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.customer_id"], name=op.f("fk_events_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.product_id"], name=op.f("fk_events_product_id_products")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_customer_ts", ["customer_id", "ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_ts"), ["ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("total_amount", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("n_items >= 1", name=op.f("ck_orders_n_items_positive")),
        sa.CheckConstraint(
            "total_amount IS NULL OR total_amount >= 0", name=op.f("ck_orders_total_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.customer_id"], name=op.f("fk_orders_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_customer_ts", ["customer_id", "ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_ts"), ["ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating_range")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.customer_id"],
            name=op.f("fk_reviews_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.product_id"], name=op.f("fk_reviews_product_id_products")
        ),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviews_product_id"), ["product_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviews_ts"), ["ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviews_updated_at"), ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_updated_at"))
        batch_op.drop_index(batch_op.f("ix_reviews_ts"))
        batch_op.drop_index(batch_op.f("ix_reviews_product_id"))
        batch_op.drop_index(batch_op.f("ix_reviews_customer_id"))

    op.drop_table("reviews")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_updated_at"))
        batch_op.drop_index(batch_op.f("ix_orders_ts"))
        batch_op.drop_index("ix_orders_customer_ts")

    op.drop_table("orders")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_updated_at"))
        batch_op.drop_index(batch_op.f("ix_events_ts"))
        batch_op.drop_index("ix_events_customer_ts")

    op.drop_table("events")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_products_updated_at"))

    op.drop_table("products")
    with op.batch_alter_table("platform_loads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_loads_content_hash"))

    op.drop_table("platform_loads")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_updated_at"))

    op.drop_table("customers")
