"""Alembic environment: runs on the engine handed over by `migrate.alembic_config`."""

from __future__ import annotations

from alembic import context

from stockalert.adapters.sql.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
