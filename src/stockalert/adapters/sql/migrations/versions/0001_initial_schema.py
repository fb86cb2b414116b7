"""Initial schema: users, subscriptions, alert states, quotes, notifications, request ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 01:21:59.538947
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stockalert.adapters.sql.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(length=160), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("ticker", sa.String(length=17), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("quoted_at", UtcDateTime(), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_user_id_quoted_at"), ["user_id", "quoted_at"], unique=False
        )

    op.create_table(
        "quotes",
        sa.Column(
            "quote_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ticker", sa.String(length=17), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("quoted_at", UtcDateTime(), nullable=False),
        sa.Column("collected_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("quote_id", name=op.f("pk_quotes")),
        sa.UniqueConstraint("ticker", "quoted_at", name=op.f("uq_quotes_ticker_quoted_at")),
    )
    op.create_table(
        "request_ledger",
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=254), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("field", sa.String(length=128), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("method", "subject", "request_id", name=op.f("pk_request_ledger")),
    )
    with op.batch_alter_table("request_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_request_ledger_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("ticker", sa.String(length=17), nullable=False),
        sa.Column("high_value", sa.Double(), nullable=True),
        sa.Column("low_value", sa.Double(), nullable=True),
        sa.Column("rearm_percent", sa.Double(), nullable=False),
        sa.Column("cooldown_s", sa.Double(), nullable=True),
        sa.Column("remind_every_s", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("user_id", "ticker", name=op.f("uq_subscriptions_user_id_ticker")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriptions_ticker"), ["ticker"], unique=False)

    op.create_table(
        "alert_states",
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("fired_at", sa.Double(), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("next_reminder_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.subscription_id"],
            name=op.f("fk_alert_states_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", "side", name=op.f("pk_alert_states")),
    )


def downgrade() -> None:
    op.drop_table("alert_states")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_ticker"))

    op.drop_table("subscriptions")
    op.drop_table("users")
    with op.batch_alter_table("request_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_ledger_created_at"))

    op.drop_table("request_ledger")
    op.drop_table("quotes")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_user_id_quoted_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_status"))

    op.drop_table("notifications")
