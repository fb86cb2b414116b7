"""Alert progress: per ticker, the time of the newest quote the alert states were evaluated
against (the high-water mark a reload never goes back behind).

Quotes stored before this revision were all applied by then (the engine re-applied the
newest one at every start), so each ticker's mark starts at its newest stored quote.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stockalert.adapters.sql.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_progress",
        sa.Column("ticker", sa.String(length=17), nullable=False),
        sa.Column("applied_through", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ticker", name=op.f("pk_alert_progress")),
    )
    op.execute(
        "INSERT INTO alert_progress (ticker, applied_through) "
        "SELECT ticker, MAX(quoted_at) FROM quotes GROUP BY ticker"
    )


def downgrade() -> None:
    op.drop_table("alert_progress")
