"""Hosts: many hypervisors on one store, each owning its own rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

PCI addresses and pool names are unique per host only, so every host-scoped table gains
``host_id``, and the PF key becomes (host, PCI address). The rows a store already has go to
one host row without a machine id; the first host that opens the store claims it (see
vfpool/store/engine.py), so an upgraded single-host store keeps its pools, leases and events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Leases and events keep AUTOINCREMENT (ids never reused) when SQLite copies the table.
AUTOINCREMENT = {"sqlite_autoincrement": True}
SCOPED = ("pfs", "pools", "pool_pfs", "vfs", "leases", "events")


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("machine_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("machine_id", name=op.f("uq_hosts_machine_id")),
    )
    bind = op.get_bind()
    if any(bind.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None
           for table in SCOPED):
        # The store's rows go to a host no machine has claimed yet (a new store has none).
        op.execute("INSERT INTO hosts (id, machine_id, name, first_seen, last_seen) "
                   "VALUES (1, NULL, NULL, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        if op.get_context().dialect.name == "postgresql":
            op.execute("SELECT setval(pg_get_serial_sequence('hosts', 'id'), 1)")
    # Children first: their foreign keys to pfs.pci go before pfs's key changes.
    with op.batch_alter_table("pool_pfs") as batch:
        batch.drop_constraint(op.f("fk_pool_pfs_pf_pci_pfs"), type_="foreignkey")
        batch.drop_index(op.f("ix_pool_pfs_pf_pci"))
        batch.add_column(sa.Column("host_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("vfs") as batch:
        batch.drop_constraint(op.f("fk_vfs_pf_pci_pfs"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_vfs_pf_pci_index"), type_="unique")
        batch.drop_constraint(op.f("uq_vfs_pci"), type_="unique")
        batch.add_column(sa.Column("host_id", sa.Integer(), nullable=True))
    for table in ("pfs", "pools", "leases", "events"):
        with op.batch_alter_table(table, table_kwargs=AUTOINCREMENT if table in (
                "leases", "events") else {}) as batch:
            batch.add_column(sa.Column("host_id", sa.Integer(), nullable=True))
    for table in SCOPED:
        op.execute(f"UPDATE {table} SET host_id = 1")
    with op.batch_alter_table("pfs") as batch:
        batch.alter_column("host_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint(op.f("pk_pfs"), type_="primary")
        batch.create_primary_key(op.f("pk_pfs"), ["host_id", "pci"])
        batch.create_foreign_key(op.f("fk_pfs_host_id_hosts"), "hosts", ["host_id"], ["id"],
                                 ondelete="CASCADE")
    with op.batch_alter_table("pools") as batch:
        batch.alter_column("host_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint(op.f("uq_pools_name"), type_="unique")
        batch.create_unique_constraint(op.f("uq_pools_host_id_name"), ["host_id", "name"])
        batch.create_foreign_key(op.f("fk_pools_host_id_hosts"), "hosts", ["host_id"], ["id"],
                                 ondelete="CASCADE")
    with op.batch_alter_table("pool_pfs") as batch:
        batch.alter_column("host_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(op.f("fk_pool_pfs_host_id_pfs"), "pfs", ["host_id", "pf_pci"],
                                 ["host_id", "pci"])
        batch.create_index(op.f("ix_pool_pfs_host_id_pf_pci"), ["host_id", "pf_pci"])
    with op.batch_alter_table("vfs") as batch:
        batch.alter_column("host_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(op.f("fk_vfs_host_id_pfs"), "pfs", ["host_id", "pf_pci"],
                                 ["host_id", "pci"], ondelete="CASCADE")
        batch.create_unique_constraint(op.f("uq_vfs_host_id_pf_pci_index"),
                                       ["host_id", "pf_pci", "index"])
        batch.create_unique_constraint(op.f("uq_vfs_host_id_pci"), ["host_id", "pci"])
    with op.batch_alter_table("leases", table_kwargs=AUTOINCREMENT) as batch:
        batch.alter_column("host_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(op.f("fk_leases_host_id_hosts"), "hosts", ["host_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index(op.f("ix_leases_host_id"), ["host_id"])
    with op.batch_alter_table("events", table_kwargs=AUTOINCREMENT) as batch:
        batch.alter_column("host_id", existing_type=sa.Integer(), nullable=False)
        batch.create_index(op.f("ix_events_host_id"), ["host_id"])


def downgrade() -> None:
    # Only a single-host store can go back: the old keys cannot hold two hosts' rows.
    hosts = op.get_bind().execute(sa.text("SELECT count(*) FROM hosts")).scalar()
    if hosts and hosts > 1:
        raise RuntimeError(f"cannot downgrade a store shared by {hosts} hosts below 0004")
    with op.batch_alter_table("events", table_kwargs=AUTOINCREMENT) as batch:
        batch.drop_index(op.f("ix_events_host_id"))
        batch.drop_column("host_id")
    with op.batch_alter_table("leases", table_kwargs=AUTOINCREMENT) as batch:
        batch.drop_index(op.f("ix_leases_host_id"))
        batch.drop_constraint(op.f("fk_leases_host_id_hosts"), type_="foreignkey")
        batch.drop_column("host_id")
    with op.batch_alter_table("vfs") as batch:
        batch.drop_constraint(op.f("fk_vfs_host_id_pfs"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_vfs_host_id_pf_pci_index"), type_="unique")
        batch.drop_constraint(op.f("uq_vfs_host_id_pci"), type_="unique")
        batch.drop_column("host_id")
    with op.batch_alter_table("pool_pfs") as batch:
        batch.drop_constraint(op.f("fk_pool_pfs_host_id_pfs"), type_="foreignkey")
        batch.drop_index(op.f("ix_pool_pfs_host_id_pf_pci"))
        batch.drop_column("host_id")
    with op.batch_alter_table("pools") as batch:
        batch.drop_constraint(op.f("fk_pools_host_id_hosts"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_pools_host_id_name"), type_="unique")
        batch.create_unique_constraint(op.f("uq_pools_name"), ["name"])
        batch.drop_column("host_id")
    with op.batch_alter_table("pfs") as batch:
        batch.drop_constraint(op.f("fk_pfs_host_id_hosts"), type_="foreignkey")
        batch.drop_constraint(op.f("pk_pfs"), type_="primary")
        batch.create_primary_key(op.f("pk_pfs"), ["pci"])
        batch.drop_column("host_id")
    with op.batch_alter_table("pool_pfs") as batch:
        batch.create_foreign_key(op.f("fk_pool_pfs_pf_pci_pfs"), "pfs", ["pf_pci"], ["pci"])
        batch.create_index(op.f("ix_pool_pfs_pf_pci"), ["pf_pci"])
    with op.batch_alter_table("vfs") as batch:
        batch.create_foreign_key(op.f("fk_vfs_pf_pci_pfs"), "pfs", ["pf_pci"], ["pci"],
                                 ondelete="CASCADE")
        batch.create_unique_constraint(op.f("uq_vfs_pf_pci_index"), ["pf_pci", "index"])
        batch.create_unique_constraint(op.f("uq_vfs_pci"), ["pci"])
    op.drop_table("hosts")
