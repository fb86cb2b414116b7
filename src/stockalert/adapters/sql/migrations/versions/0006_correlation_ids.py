"""Correlation ids: each stored quote's, and each notification's (that of the quote which
raised it). Rows from before have none (NULL); an added nullable column at the end of a
table is an instant change in MariaDB/MySQL (no copy of the quotes table).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("quotes", "notifications")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("correlation_id")
