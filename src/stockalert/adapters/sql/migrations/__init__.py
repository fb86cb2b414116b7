"""Alembic migrations of the stockalert schema."""
