"""Ticker status: what the collector learnt of each ticker (ACTIVE, UNKNOWN, STALE).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stockalert.adapters.sql.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticker_status",
        sa.Column("ticker", sa.String(length=17), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ticker", name=op.f("pk_ticker_status")),
    )


def downgrade() -> None:
    op.drop_table("ticker_status")
