"""Alembic environment for vfpool.

vfpool configures Alembic in code (see ``vfpool.store.engine``) and passes an open connection,
already inside the migration transaction, in ``config.attributes["connection"]``. There is no
alembic.ini and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from vfpool.store.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("vfpool migrations run through vfpool.store, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
