"""campaign offers: logged offer, propensity, features and outcomes per target; policy and summary

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TARGETS, CAMPAIGNS = "platform_campaign_targets", "platform_campaigns"


def upgrade() -> None:
    # Server defaults make the upgrade valid on a database with campaigns published before offers.
    with op.batch_alter_table(TARGETS) as batch:
        batch.add_column(sa.Column("offer", sa.String(length=32), nullable=False, server_default="none"))
        batch.add_column(
            sa.Column("policy_offer", sa.String(length=32), nullable=False, server_default="none")
        )
        batch.add_column(sa.Column("risk_offer", sa.String(length=32), nullable=False, server_default="none"))
        batch.add_column(sa.Column("propensity", sa.Float(), nullable=False, server_default="1.0"))
        batch.add_column(sa.Column("explored", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("uplift_return", sa.Float(), nullable=True))
        batch.add_column(sa.Column("uplift_revenue", sa.Float(), nullable=True))
        batch.add_column(sa.Column("expected_profit", sa.Float(), nullable=True))
        batch.add_column(sa.Column("features", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("returned", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("revenue", sa.Float(), nullable=True))
    with op.batch_alter_table(CAMPAIGNS) as batch:
        batch.add_column(sa.Column("policy", sa.String(length=16), nullable=False, server_default="risk"))
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table(CAMPAIGNS) as batch:
        batch.drop_column("summary")
        batch.drop_column("policy")
    with op.batch_alter_table(TARGETS) as batch:
        for column in (
            "revenue",
            "returned",
            "features",
            "expected_profit",
            "uplift_revenue",
            "uplift_return",
            "explored",
            "propensity",
            "risk_offer",
            "policy_offer",
            "offer",
        ):
            batch.drop_column(column)
