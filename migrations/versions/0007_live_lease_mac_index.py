"""An index for the live leases' MACs of a host.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

Every acquire checks that no live lease of its host holds the MAC it is about to set. With the
host's id in that query (store/scope.py), SQLite chose ``ix_leases_host_id`` and read every
lease the host ever had: a store with 30,000 old leases made each acquire a third slower. This
partial index answers it from the live leases alone, with the same inline WHERE as the query
(store/queries.py explains why the values are inline).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

LIVE = sa.text("state IN ('reserved', 'active')")


def upgrade() -> None:
    op.create_index("ix_leases_live_mac", "leases", ["host_id", "mac"],
                    sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index("ix_leases_live_mac", table_name="leases")
