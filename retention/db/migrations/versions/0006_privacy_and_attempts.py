"""privacy and bookkeeping: erasure audit, per-attempt batch history, no e-mail in the warehouse

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 05:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_erasures",
        sa.Column(
            "erasure_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("erased_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("n_customers", sa.Integer(), nullable=False),
        sa.Column("removed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("erasure_id", name=op.f("pk_platform_erasures")),
    )
    with op.batch_alter_table("platform_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt_history", sa.JSON(), nullable=True))

    # -- contact details out of the warehouse: e-mail stays in the shop table `customers` and is
    # joined only at export time (retention.db.models.CONTACT_COLUMNS); the copies are dropped.
    with op.batch_alter_table("wh_customers", schema=None) as batch_op:
        batch_op.drop_column("email")
    # -- end of contact details


def downgrade() -> None:
    # -- contact details: the column comes back empty (the dropped copies cannot be restored)
    with op.batch_alter_table("wh_customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
    # -- end of contact details
    with op.batch_alter_table("platform_batches", schema=None) as batch_op:
        batch_op.drop_column("attempt_history")
    op.drop_table("platform_erasures")
