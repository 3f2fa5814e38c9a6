"""monitoring: one row per model and as-of with feature and prediction drift and realised quality

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "platform_monitoring",
        sa.Column("registered_name", sa.String(length=128), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("reference_as_of", sa.DateTime(), nullable=False),
        sa.Column("n_reference", sa.Integer(), nullable=False),
        sa.Column("n_current", sa.Integer(), nullable=False),
        sa.Column("feature_drift", sa.JSON(), nullable=False),
        sa.Column("psi_max", sa.Float(), nullable=True),
        sa.Column("prediction_drift", sa.JSON(), nullable=True),
        sa.Column("realised", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("retrain", sa.Boolean(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("registered_name", "as_of", name=op.f("pk_platform_monitoring")),
    )


def downgrade() -> None:
    op.drop_table("platform_monitoring")
