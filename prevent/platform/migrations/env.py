"""Alembic environment: runs on the connection handed in by ``Database.upgrade``."""

from alembic import context

from prevent.platform.storage.tables import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `prevent db upgrade`, which supplies the connection")
context.configure(connection=connection, target_metadata=target_metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
