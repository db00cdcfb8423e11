"""A pool's members have distinct positions, in a unique index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

Every acquire picks the first free VF in pool order: ``ORDER BY pool_pfs.position,
vfs.index LIMIT n``. With no index on ``(pool_id, position)`` SQLite read every free VF of the
pool and sorted them (0.8 ms on a 1024-VF pool, growing with it). With a unique one it walks the
members in position order and each member's VFs in index order (the ``vfs`` key), and stops
at the first free ones: 0.02 ms at any size. It must be unique: a position shared by two
members would not order their VFs, and SQLite then sorts again.

vfpool has always numbered a pool's members 0, 1, ...; a store changed by hand might not be,
so the positions are renumbered first, in the order they had (ties by PCI address).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

def upgrade() -> None:
    # In Python, not one UPDATE with a subquery: SQLite's subquery would see the rows the
    # same UPDATE already renumbered.
    connection = op.get_bind()
    members = connection.execute(sa.text(
        "SELECT pool_id, pf_pci, position FROM pool_pfs ORDER BY pool_id, position, pf_pci"))
    number: dict[int, int] = {}
    for pool_id, pf_pci, position in members.all():
        wanted = number.get(pool_id, 0)
        number[pool_id] = wanted + 1
        if position != wanted:
            connection.execute(sa.text(
                "UPDATE pool_pfs SET position = :position "
                "WHERE pool_id = :pool_id AND pf_pci = :pf_pci"),
                {"position": wanted, "pool_id": pool_id, "pf_pci": pf_pci})
    op.create_index("uq_pool_pfs_position", "pool_pfs", ["pool_id", "position"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_pool_pfs_position", table_name="pool_pfs")
