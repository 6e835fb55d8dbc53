"""Metadata database: SQLAlchemy Core tables, Alembic migrations, and the repository
functions the services use. A state change is a conditional UPDATE on the expected state."""
