"""Alembic migrations, applied on every start (``database.migrate``)."""
