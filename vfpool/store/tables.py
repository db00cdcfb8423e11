"""The vfpool tables, as SQLAlchemy Core ``Table`` objects: the schema, written once.

The ORM classes of store/models.py are mapped onto these tables; the lease path
(store/leasing.py) and the store's host statements (store/engine.py) use them directly. A
lease command therefore never builds the ORM's declarative classes, which cost about a third
of vfpool's own imports in a new process.

The migrations in ``migrations/versions`` must create exactly this schema; a test compares
the two with Alembic's autogenerate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    false,
    func,
    literal_column,
    text,
)

from vfpool.store.states import (
    LIVE_LEASE_STATES,
    LeaseState,
    LinkState,
    Method,
    Mode,
    PoolState,
    VfState,
    values,
)
from vfpool.store.types import StrEnumType, UtcDateTime, utcnow

# Deterministic constraint names, so that later batch migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LEASE_ID_MAX = 2**63 - 1  # SQLite's integers are signed 64-bit

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(column: str, states: tuple[str, ...]) -> str:
    """SQL text ``column IN ('a', 'b')`` for a CHECK constraint over fixed strings."""
    return f"{column} IN ({', '.join(repr(state) for state in states)})"


def _json() -> JSON:
    # none_as_null: Python None is SQL NULL, not the JSON text 'null'.
    return JSON(none_as_null=True)


def _host_fk() -> ForeignKey:
    return ForeignKey("hosts.id", ondelete="CASCADE")


def _time(name: str, **options: Any) -> Column[datetime]:
    """A timestamp column, now by default (``onupdate=utcnow``: now at every update too)."""
    return Column(name, UtcDateTime(), nullable=False, default=utcnow, **options)


# A hypervisor that shares this store: its machine id and name. Every other row belongs to one
# host (``host_id``), and a store's sessions see only their own host's rows. A store upgraded
# from before hosts existed has one host with no machine id yet; the first host that opens it
# claims it, and so keeps the rows it had.
hosts = Table(
    "hosts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(64), unique=True),
    Column("name", String(255)),
    _time("first_seen"),
    _time("last_seen"),
)

# An SR-IOV physical function, keyed by host and PCI address (netdev names change).
pfs = Table(
    "pfs", metadata,
    Column("host_id", Integer, _host_fk(), primary_key=True),
    Column("pci", String(16), primary_key=True),
    Column("netdev", String(16)),
    Column("driver", String(64)),
    Column("vendor", String(4)),
    Column("device", String(4)),
    Column("totalvfs", Integer, nullable=False, default=0, server_default=text("0")),
    Column("numa_node", Integer),
    _time("first_seen"),
    _time("last_seen"),
)

# A network pool: PFs, a desired VF count per PF, a resize method, a hand-off mode and the
# defaults applied to each leased VF (NULL = leave the VF's setting alone).
pools = Table(
    "pools", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host_id", Integer, _host_fk(), nullable=False),
    Column("name", String(64), nullable=False),
    Column("state", StrEnumType(PoolState), nullable=False, default=PoolState.INACTIVE,
           server_default=text("'inactive'")),
    Column("autostart", Boolean, nullable=False, default=False, server_default=false()),
    Column("method", StrEnumType(Method), nullable=False),
    Column("mode", StrEnumType(Mode), nullable=False),
    Column("vfs_per_pf", Integer, nullable=False),
    Column("vlan", Integer),
    Column("qos", Integer),
    Column("trust", Boolean),
    Column("spoofchk", Boolean),
    Column("min_tx_rate", Integer),
    Column("max_tx_rate", Integer),
    Column("mtu", Integer),
    _time("created_at"),
    _time("updated_at", onupdate=utcnow),
    Column("link_state", StrEnumType(LinkState, length=8)),
    # PF selectors, one a line (``vendor=8086,device=1572,pf=enp*``): the pool's PFs are
    # chosen at each start of an inactive pool; NULL for a pool of fixed PFs.
    Column("selectors", String(1024)),
    CheckConstraint(_in("state", values(PoolState)), name="state"),
    CheckConstraint(_in("method", values(Method)), name="method"),
    CheckConstraint(_in("mode", values(Mode)), name="mode"),
    CheckConstraint(f"link_state IS NULL OR {_in('link_state', values(LinkState))}",
                    name="link_state"),
    UniqueConstraint("host_id", "name"),
)

# A PF's membership of a pool. ``range_start``..``range_end`` is an inclusive VF index range;
# both NULL = the whole PF. Pools may share a PF through disjoint ranges; the service checks
# overlaps inside its BEGIN IMMEDIATE transaction (SQL has no declarative "ranges do not
# overlap").
members = Table(
    "pool_pfs", metadata,
    Column("pool_id", Integer, ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True),
    Column("pf_pci", String(16), primary_key=True),
    Column("host_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("range_start", Integer),
    Column("range_end", Integer),
    # The free VF rows this membership covers (see member_covers), kept exact by the database's
    # triggers (migrations/versions/0006): read it in a query, never from a loaded object,
    # whose copy is not refreshed when a trigger changes the row.
    Column("free_vfs", Integer, nullable=False, server_default=text("0")),
    Index(None, "host_id", "pf_pci"),
    # Pool order, for the free-VF choice to walk instead of sort (migrations/versions/0008).
    Index("uq_pool_pfs_position", "pool_id", "position", unique=True),
    ForeignKeyConstraint(["host_id", "pf_pci"], ["pfs.host_id", "pfs.pci"]),
    CheckConstraint(
        "(range_start IS NULL AND range_end IS NULL) OR "
        "(range_start IS NOT NULL AND range_end IS NOT NULL AND range_start <= range_end)",
        name="range",
    ),
)

# A virtual function of a PF, as inventoried when its pool started.
vfs = Table(
    "vfs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host_id", Integer, nullable=False),
    Column("pf_pci", String(16), nullable=False),
    Column("index", Integer, nullable=False),
    Column("pci", String(16), nullable=False),
    Column("netdev", String(16)),
    Column("state", StrEnumType(VfState), nullable=False, default=VfState.FREE,
           server_default=text("'free'")),
    Column("reason", Text),
    _time("updated_at", onupdate=utcnow),
    UniqueConstraint("host_id", "pf_pci", "index"),
    UniqueConstraint("host_id", "pci"),
    ForeignKeyConstraint(["host_id", "pf_pci"], ["pfs.host_id", "pfs.pci"], ondelete="CASCADE"),
    CheckConstraint(_in("state", values(VfState)), name="state"),
)

# One VF held by an owner. ``saved_config`` is the VF's original config, restored on release
# even after a crash or a reboot. AUTOINCREMENT: ids are never reused, so a late release
# cannot hit a newer lease. The partial unique index makes two live leases on one VF
# impossible, even under bugs.
leases = Table(
    "leases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host_id", Integer, _host_fk(), nullable=False, index=True),
    Column("pool_id", Integer, ForeignKey("pools.id", ondelete="CASCADE"), nullable=False),
    # SET NULL: the VF inventory row may go (pool destroyed) while the lease history stays;
    # pf_pci, vf_pci and vf_index keep what it was.
    Column("vf_id", Integer, ForeignKey("vfs.id", ondelete="SET NULL")),
    Column("pf_pci", String(16), nullable=False),
    Column("vf_pci", String(16), nullable=False),
    Column("vf_index", Integer, nullable=False),
    Column("owner", String(128), nullable=False, index=True),
    Column("owner_pid", Integer),
    # The lock file name of the process acquiring the lease (see host.lock.acquirer_lock).
    Column("acquirer", String(64)),
    Column("token_hash", String(128), nullable=False),
    Column("state", StrEnumType(LeaseState), nullable=False),
    Column("mode", StrEnumType(Mode), nullable=False),
    Column("mac", String(17)),
    Column("vlan", Integer),
    Column("numa_node", Integer),
    Column("applied_config", _json()),
    Column("saved_config", _json()),
    Column("boot_id", String(64), nullable=False),
    _time("created_at"),
    _time("updated_at", onupdate=utcnow),
    Column("released_at", UtcDateTime()),
    CheckConstraint(_in("state", values(LeaseState)), name="state"),
    Index("uq_leases_one_live_per_vf", "vf_id", unique=True,
          sqlite_where=text(_in("state", LIVE_LEASE_STATES))),
    Index(None, "pool_id", "state"),
    # The MAC check of every acquire: without it, SQLite takes ix_leases_host_id and reads
    # every lease the host ever had (migrations/versions/0007).
    Index("ix_leases_live_mac", "host_id", "mac",
          sqlite_where=text(_in("state", LIVE_LEASE_STATES))),
    sqlite_autoincrement=True,
)

# The audit log: who did what, when and why. No foreign keys, because the log outlives the
# pools, PFs, VFs and leases it names.
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The host that wrote it; no foreign key either (a host's log outlives the host).
    Column("host_id", Integer, nullable=False, index=True),
    _time("at", index=True),
    Column("actor", String(128)),
    Column("action", String(64), nullable=False),
    Column("pool", String(64)),
    Column("pf", String(16)),
    Column("vf", String(16)),
    Column("lease_id", Integer),
    Column("detail", _json()),
    sqlite_autoincrement=True,
)


def member_covers(vfs_per_pf: Any) -> ColumnElement[bool]:
    """The VF row is one that the pool membership covers: on the membership's host and PF,
    with an index from the start of its range (0 without one) and fewer than ``vfs_per_pf``
    past it (a bound parameter, or ``pools.c.vfs_per_pf`` in a query over many pools). The
    free-count triggers of migrations/versions/0006 count exactly these rows."""
    start = func.coalesce(members.c.range_start, 0)
    return and_(vfs.c.host_id == members.c.host_id, vfs.c.pf_pci == members.c.pf_pci,
                vfs.c.index >= start, vfs.c.index < start + vfs_per_pf)


def live_lease() -> ColumnElement[bool]:
    """``leases.state IN ('reserved', 'active')`` with the values written in, the WHERE of the
    partial indexes above: with bound parameters SQLite's planner cannot use them."""
    return leases.c.state.in_([literal_column(f"'{state.value}'")
                               for state in LIVE_LEASE_STATES])


def add_postgresql_options() -> None:
    """Give the live-lease partial indexes their PostgreSQL ``WHERE`` too. Called when a
    PostgreSQL engine is made, not at import: a ``postgresql_*`` keyword imports SQLAlchemy's
    PostgreSQL dialect and its five drivers' modules, about a tenth of a cold `vfpool`
    process that only ever uses SQLite. Only DDL and autogenerate read these options; the
    migrations write the indexes themselves. Idempotent."""
    for index in leases.indexes:
        if "sqlite_where" in index.dialect_kwargs and \
                "postgresql_where" not in index.dialect_kwargs:
            index.dialect_kwargs["postgresql_where"] = index.dialect_kwargs["sqlite_where"]
