"""Alembic's environment: runs the revisions on the connection :mod:`trustwatch.platform.migrate`
puts in ``config.attributes["connection"]`` (online only; there is no offline SQL mode)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from trustwatch.platform.store import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the migrations through trustwatch.platform.migrate (or `trustwatch db upgrade`)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters few things in place: batch operations copy the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
