"""The ORM over the vfpool tables (store/tables.py): typed SQLAlchemy 2.0 classes mapped onto
them. Plain data: no business logic here.

Each class names its table (``__table__``), so the schema is written once, in tables.py; the
annotations type the mapped columns. The lease path uses the tables without these classes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, relationship

from vfpool.store import tables
from vfpool.store.states import LeaseState, LinkState, Method, Mode, PoolState, VfState

__all__ = ["Base", "Event", "Host", "HostScoped", "Lease", "Pf", "Pool", "PoolPf", "Vf"]


class Base(DeclarativeBase):
    """The declarative base, over the tables' MetaData (with its naming convention)."""

    metadata = tables.metadata


class Host(Base):
    """A hypervisor that shares this store: its machine id and name. Every other row belongs
    to one host (``host_id``), and a store's sessions see only their own host's rows.

    A store upgraded from before hosts existed has one host with no machine id yet; the first
    host that opens it claims it, and so keeps the rows it had."""

    __table__ = tables.hosts

    id: Mapped[int]
    machine_id: Mapped[str | None]
    name: Mapped[str | None]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class HostScoped:
    """The rows that belong to one host. The store filters every ORM query on them to the
    session's host and stamps new ones with it (see store/engine.py)."""

    host_id: Mapped[int]


class Pf(HostScoped, Base):
    """An SR-IOV physical function, keyed by host and PCI address (netdev names change)."""

    __table__ = tables.pfs

    pci: Mapped[str]
    netdev: Mapped[str | None]
    driver: Mapped[str | None]
    vendor: Mapped[str | None]
    device: Mapped[str | None]
    totalvfs: Mapped[int]
    numa_node: Mapped[int | None]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]

    vfs: Mapped[list[Vf]] = relationship(
        back_populates="pf", order_by="Vf.vf_index", passive_deletes=True
    )


class Pool(HostScoped, Base):
    """A network pool: PFs, a desired VF count per PF, a resize method, a hand-off mode and
    the defaults applied to each leased VF (NULL = leave the VF's setting alone)."""

    __table__ = tables.pools

    id: Mapped[int]
    name: Mapped[str]
    state: Mapped[PoolState]
    autostart: Mapped[bool]
    method: Mapped[Method]
    mode: Mapped[Mode]
    vfs_per_pf: Mapped[int]
    vlan: Mapped[int | None]
    qos: Mapped[int | None]
    trust: Mapped[bool | None]
    spoofchk: Mapped[bool | None]
    min_tx_rate: Mapped[int | None]
    max_tx_rate: Mapped[int | None]
    mtu: Mapped[int | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    link_state: Mapped[LinkState | None]
    selectors: Mapped[str | None]

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

    __table__ = tables.members

    pool_id: Mapped[int]
    pf_pci: Mapped[str]
    position: Mapped[int]
    range_start: Mapped[int | None]
    range_end: Mapped[int | None]
    free_vfs: Mapped[int]

    pool: Mapped[Pool] = relationship(back_populates="members")
    pf: Mapped[Pf] = relationship()


class Vf(HostScoped, Base):
    """A virtual function of a PF, as inventoried when its pool started."""

    __table__ = tables.vfs

    id: Mapped[int]
    pf_pci: Mapped[str]
    vf_index: Mapped[int] = column_property(tables.vfs.c["index"])  # the column `index`
    pci: Mapped[str]
    netdev: Mapped[str | None]
    state: Mapped[VfState]
    reason: Mapped[str | None]
    updated_at: Mapped[datetime]

    pf: Mapped[Pf] = relationship(back_populates="vfs")


class Lease(HostScoped, Base):
    """One VF held by an owner. ``saved_config`` is the VF's original config, restored on
    release even after a crash or a reboot.

    AUTOINCREMENT: ids are never reused, so a late release cannot hit a newer lease.
    The partial unique index makes two live leases on one VF impossible, even under bugs.
    """

    __table__ = tables.leases

    id: Mapped[int]
    pool_id: Mapped[int]
    vf_id: Mapped[int | None]
    pf_pci: Mapped[str]
    vf_pci: Mapped[str]
    vf_index: Mapped[int]
    owner: Mapped[str]
    owner_pid: Mapped[int | None]
    acquirer: Mapped[str | None]
    token_hash: Mapped[str]
    state: Mapped[LeaseState]
    mode: Mapped[Mode]
    mac: Mapped[str | None]
    vlan: Mapped[int | None]
    numa_node: Mapped[int | None]
    applied_config: Mapped[dict[str, Any] | None]
    saved_config: Mapped[dict[str, Any] | None]
    boot_id: Mapped[str]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    released_at: Mapped[datetime | None]

    pool: Mapped[Pool] = relationship()
    vf: Mapped[Vf | None] = relationship()


class Event(HostScoped, Base):
    """The audit log: who did what, when and why. No foreign keys, because the log outlives
    the pools, PFs, VFs and leases it names."""

    __table__ = tables.events

    id: Mapped[int]
    at: Mapped[datetime]
    actor: Mapped[str | None]
    action: Mapped[str]
    pool: Mapped[str | None]
    pf: Mapped[str | None]
    vf: Mapped[str | None]
    lease_id: Mapped[int | None]
    detail: Mapped[dict[str, Any] | None]


