"""Initial schema: pfs, pools, pool_pfs, vfs, leases, events.

Revision ID: 0001
Revises:
Create Date: 2024-11-25

A migration is a frozen snapshot: it spells out its tables instead of importing the models,
which will have moved on by the time a later revision runs.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    # The models read these through vfpool.store.types.UtcDateTime; the DDL is the same.
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pfs",
        sa.Column("pci", sa.String(16), nullable=False),
        sa.Column("netdev", sa.String(16), nullable=True),
        sa.Column("driver", sa.String(64), nullable=True),
        sa.Column("vendor", sa.String(4), nullable=True),
        sa.Column("device", sa.String(4), nullable=True),
        sa.Column("totalvfs", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("numa_node", sa.Integer(), nullable=True),
        _timestamp("first_seen"),
        _timestamp("last_seen"),
        sa.PrimaryKeyConstraint("pci", name=op.f("pk_pfs")),
    )
    op.create_table(
        "pools",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), server_default=sa.text("'inactive'"), nullable=False),
        sa.Column("autostart", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("vfs_per_pf", sa.Integer(), nullable=False),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("qos", sa.Integer(), nullable=True),
        sa.Column("trust", sa.Boolean(), nullable=True),
        sa.Column("spoofchk", sa.Boolean(), nullable=True),
        sa.Column("min_tx_rate", sa.Integer(), nullable=True),
        sa.Column("max_tx_rate", sa.Integer(), nullable=True),
        sa.Column("mtu", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_pools_name")),
        sa.CheckConstraint("state IN ('inactive', 'active')", name=op.f("ck_pools_state")),
        sa.CheckConstraint(
            "method IN ('auto', 'sysfs', 'module-param')", name=op.f("ck_pools_method")
        ),
        sa.CheckConstraint("mode IN ('vfio', 'macvtap', 'netdev')", name=op.f("ck_pools_mode")),
    )
    op.create_table(
        "pool_pfs",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("pf_pci", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("range_start", sa.Integer(), nullable=True),
        sa.Column("range_end", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("pool_id", "pf_pci", name=op.f("pk_pool_pfs")),
        sa.CheckConstraint(
            "(range_start IS NULL AND range_end IS NULL) OR "
            "(range_start IS NOT NULL AND range_end IS NOT NULL AND range_start <= range_end)",
            name=op.f("ck_pool_pfs_range"),
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_pool_pfs_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["pf_pci"], ["pfs.pci"], name=op.f("fk_pool_pfs_pf_pci_pfs")),
    )
    op.create_index(op.f("ix_pool_pfs_pf_pci"), "pool_pfs", ["pf_pci"])
    op.create_table(
        "vfs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pf_pci", sa.String(16), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("pci", sa.String(16), nullable=False),
        sa.Column("netdev", sa.String(16), nullable=True),
        sa.Column("state", sa.String(16), server_default=sa.text("'free'"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vfs")),
        sa.UniqueConstraint("pf_pci", "index", name=op.f("uq_vfs_pf_pci_index")),
        sa.UniqueConstraint("pci", name=op.f("uq_vfs_pci")),
        sa.CheckConstraint(
            "state IN ('free', 'leased', 'reserved', 'unusable')", name=op.f("ck_vfs_state")
        ),
        sa.ForeignKeyConstraint(
            ["pf_pci"], ["pfs.pci"], name=op.f("fk_vfs_pf_pci_pfs"), ondelete="CASCADE"
        ),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("vf_id", sa.Integer(), nullable=True),
        sa.Column("pf_pci", sa.String(16), nullable=False),
        sa.Column("vf_pci", sa.String(16), nullable=False),
        sa.Column("vf_index", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=True),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("mac", sa.String(17), nullable=True),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("numa_node", sa.Integer(), nullable=True),
        sa.Column("applied_config", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("saved_config", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("boot_id", sa.String(64), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("released_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
        sa.CheckConstraint(
            "state IN ('reserved', 'active', 'released', 'stale', 'lost')",
            name=op.f("ck_leases_state"),
        ),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_leases_pool_id_pools"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["vf_id"], ["vfs.id"], name=op.f("fk_leases_vf_id_vfs"),
                                ondelete="SET NULL"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_leases_owner"), "leases", ["owner"])
    op.create_index(op.f("ix_leases_pool_id_state"), "leases", ["pool_id", "state"])
    live = sa.text("state IN ('reserved', 'active')")
    op.create_index(
        "uq_leases_one_live_per_vf",
        "leases",
        ["vf_id"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _timestamp("at"),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("pool", sa.String(64), nullable=True),
        sa.Column("pf", sa.String(16), nullable=True),
        sa.Column("vf", sa.String(16), nullable=True),
        sa.Column("lease_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_events_at"), "events", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_events_at"), table_name="events")
    op.drop_table("events")
    op.drop_index("uq_leases_one_live_per_vf", table_name="leases")
    op.drop_index(op.f("ix_leases_pool_id_state"), table_name="leases")
    op.drop_index(op.f("ix_leases_owner"), table_name="leases")
    op.drop_table("leases")
    op.drop_table("vfs")
    op.drop_table("pool_pfs")
    op.drop_table("pools")
    op.drop_table("pfs")
