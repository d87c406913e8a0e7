"""Storage: SQLAlchemy 2 async tables, the engine, and alembic migrations."""
