"""The vfpool tables as a typed SQLAlchemy 2.0 ORM. Plain data: no business logic here.

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
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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

POOL_STATES = values(PoolState)
POOL_METHODS = values(Method)
POOL_MODES = values(Mode)
LINK_STATES = values(LinkState)
VF_STATES = values(VfState)
LEASE_STATES = values(LeaseState)
__all__ = ["LIVE_LEASE_STATES", "Base", "Event", "Lease", "Pf", "Pool", "PoolPf", "Vf"]


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL text ``column IN ('a', 'b')`` for a CHECK constraint over fixed strings."""
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _json() -> JSON:
    # none_as_null: Python None is SQL NULL, not the JSON text 'null'.
    return JSON(none_as_null=True)


class Base(DeclarativeBase):
    """The declarative base; its MetaData carries the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Host(Base):
    """A hypervisor that shares this store: its machine id and name. Every other row belongs
    to one host (``host_id``), and a store's sessions see only their own host's rows.

    A store upgraded from before hosts existed has one host with no machine id yet; the first
    host that opens it claims it, and so keeps the rows it had."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    machine_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class HostScoped:
    """The rows that belong to one host. The store filters every ORM query on them to the
    session's host and stamps new ones with it (see store/engine.py)."""

    host_id: Mapped[int]


def _host_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)


class Pf(HostScoped, Base):
    """An SR-IOV physical function, keyed by host and PCI address (netdev names change)."""

    __tablename__ = "pfs"

    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"),
                                         primary_key=True)
    pci: Mapped[str] = mapped_column(String(16), primary_key=True)
    netdev: Mapped[str | None] = mapped_column(String(16))
    driver: Mapped[str | None] = mapped_column(String(64))
    vendor: Mapped[str | None] = mapped_column(String(4))
    device: Mapped[str | None] = mapped_column(String(4))
    totalvfs: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    numa_node: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    vfs: Mapped[list[Vf]] = relationship(
        back_populates="pf", order_by="Vf.vf_index", passive_deletes=True
    )


class Pool(HostScoped, Base):
    """A network pool: PFs, a desired VF count per PF, a resize method, a hand-off mode and
    the defaults applied to each leased VF (NULL = leave the VF's setting alone)."""

    __tablename__ = "pools"
    __table_args__ = (
        CheckConstraint(_in("state", POOL_STATES), name="state"),
        CheckConstraint(_in("method", POOL_METHODS), name="method"),
        CheckConstraint(_in("mode", POOL_MODES), name="mode"),
        CheckConstraint(f"link_state IS NULL OR {_in('link_state', LINK_STATES)}",
                        name="link_state"),
        UniqueConstraint("host_id", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[PoolState] = mapped_column(
        StrEnumType(PoolState), default=PoolState.INACTIVE, server_default=text("'inactive'")
    )
    autostart: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    method: Mapped[Method] = mapped_column(StrEnumType(Method))
    mode: Mapped[Mode] = mapped_column(StrEnumType(Mode))
    vfs_per_pf: Mapped[int] = mapped_column(Integer)
    vlan: Mapped[int | None] = mapped_column(Integer)
    qos: Mapped[int | None] = mapped_column(Integer)
    trust: Mapped[bool | None] = mapped_column(Boolean)
    spoofchk: Mapped[bool | None] = mapped_column(Boolean)
    min_tx_rate: Mapped[int | None] = mapped_column(Integer)
    max_tx_rate: Mapped[int | None] = mapped_column(Integer)
    mtu: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    link_state: Mapped[LinkState | None] = mapped_column(StrEnumType(LinkState, length=8))
    # PF selectors, one a line (``vendor=8086,device=1572,pf=enp*``): the pool's PFs are
    # chosen at each start of an inactive pool; NULL for a pool of fixed PFs.
    selectors: Mapped[str | None] = mapped_column(String(1024))

    members: Mapped[list[PoolPf]] = relationship(
        back_populates="pool",
        order_by="PoolPf.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class PoolPf(HostScoped, Base):
    """A PF's membership of a pool.

    ``range_start``..``range_end`` is an inclusive VF index range; both NULL = the whole PF.
    Pools may share a PF through disjoint ranges; the service checks overlaps inside its
    BEGIN IMMEDIATE transaction (SQL has no declarative "ranges do not overlap").
    """

    __tablename__ = "pool_pfs"
    __table_args__ = (
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

    pool_id: Mapped[int] = mapped_column(
        ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True
    )
    pf_pci: Mapped[str] = mapped_column(String(16), primary_key=True)
    host_id: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    range_start: Mapped[int | None] = mapped_column(Integer)
    range_end: Mapped[int | None] = mapped_column(Integer)
    # The free VF rows this membership covers (see in_member), kept exact by the database's
    # triggers (migrations/versions/0006): read it in a query, never from a loaded object,
    # whose copy is not refreshed when a trigger changes the row.
    free_vfs: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    pool: Mapped[Pool] = relationship(back_populates="members")
    pf: Mapped[Pf] = relationship()


class Vf(HostScoped, Base):
    """A virtual function of a PF, as inventoried when its pool started."""

    __tablename__ = "vfs"
    __table_args__ = (
        UniqueConstraint("host_id", "pf_pci", "index"),
        UniqueConstraint("host_id", "pci"),
        ForeignKeyConstraint(["host_id", "pf_pci"], ["pfs.host_id", "pfs.pci"],
                             ondelete="CASCADE"),
        CheckConstraint(_in("state", VF_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_id: Mapped[int] = mapped_column(Integer)
    pf_pci: Mapped[str] = mapped_column(String(16))
    vf_index: Mapped[int] = mapped_column("index", Integer)
    pci: Mapped[str] = mapped_column(String(16))
    netdev: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[VfState] = mapped_column(StrEnumType(VfState), default=VfState.FREE,
                                           server_default=text("'free'"))
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    pf: Mapped[Pf] = relationship(back_populates="vfs")


class Lease(HostScoped, Base):
    """One VF held by an owner. ``saved_config`` is the VF's original config, restored on
    release even after a crash or a reboot.

    AUTOINCREMENT: ids are never reused, so a late release cannot hit a newer lease.
    The partial unique index makes two live leases on one VF impossible, even under bugs.
    """

    __tablename__ = "leases"
    __table_args__ = (
        CheckConstraint(_in("state", LEASE_STATES), name="state"),
        Index(
            "uq_leases_one_live_per_vf",
            "vf_id",
            unique=True,
            sqlite_where=text(_in("state", LIVE_LEASE_STATES)),
        ),
        Index(None, "pool_id", "state"),
        # The MAC check of every acquire: without it, SQLite takes ix_leases_host_id and
        # reads every lease the host ever had (migrations/versions/0007).
        Index(
            "ix_leases_live_mac",
            "host_id",
            "mac",
            sqlite_where=text(_in("state", LIVE_LEASE_STATES)),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_id: Mapped[int] = _host_fk()
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    # SET NULL: the VF inventory row may go (pool destroyed) while the lease history stays;
    # pf_pci, vf_pci and vf_index keep what it was.
    vf_id: Mapped[int | None] = mapped_column(ForeignKey("vfs.id", ondelete="SET NULL"))
    pf_pci: Mapped[str] = mapped_column(String(16))
    vf_pci: Mapped[str] = mapped_column(String(16))
    vf_index: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    # The lock file name of the process acquiring the lease (see host.lock.acquirer_lock).
    acquirer: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(128))
    state: Mapped[LeaseState] = mapped_column(StrEnumType(LeaseState))
    mode: Mapped[Mode] = mapped_column(StrEnumType(Mode))
    mac: Mapped[str | None] = mapped_column(String(17))
    vlan: Mapped[int | None] = mapped_column(Integer)
    numa_node: Mapped[int | None] = mapped_column(Integer)
    applied_config: Mapped[dict[str, Any] | None] = mapped_column(_json())
    saved_config: Mapped[dict[str, Any] | None] = mapped_column(_json())
    boot_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    pool: Mapped[Pool] = relationship()
    vf: Mapped[Vf | None] = relationship()


class Event(HostScoped, Base):
    """The audit log: who did what, when and why. No foreign keys, because the log outlives
    the pools, PFs, VFs and leases it names."""

    __tablename__ = "events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The host that wrote it; no foreign key either (a host's log outlives the host).
    host_id: Mapped[int] = mapped_column(Integer, index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    pool: Mapped[str | None] = mapped_column(String(64))
    pf: Mapped[str | None] = mapped_column(String(16))
    vf: Mapped[str | None] = mapped_column(String(16))
    lease_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(_json())


def add_postgresql_options() -> None:
    """Give the live-lease partial indexes their PostgreSQL ``WHERE`` too. Called when a
    PostgreSQL engine is made, not at import: a ``postgresql_*`` keyword imports SQLAlchemy's
    PostgreSQL dialect and its five drivers' modules, about a tenth of a cold `vfpool`
    process that only ever uses SQLite. Only DDL and autogenerate read these options; the
    migrations write the indexes themselves. Idempotent."""
    for index in Base.metadata.tables[Lease.__tablename__].indexes:
        if "sqlite_where" in index.dialect_kwargs and \
                "postgresql_where" not in index.dialect_kwargs:
            index.dialect_kwargs["postgresql_where"] = index.dialect_kwargs["sqlite_where"]
