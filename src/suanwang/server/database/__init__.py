"""Persistence: SQLAlchemy ORM tables, engine/session factory and alembic migrations."""
