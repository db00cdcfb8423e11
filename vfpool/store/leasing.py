"""The lease path's statements: built with SQLAlchemy Core, run on the DBAPI cursor.

Acquire and release are what VM tooling calls all day, so their transactions skip the ORM and
SQLAlchemy's execution: no identity map, no unit of work, no per-statement loader options, no
result objects. Each statement here is built
once (per variant) with bound parameters, compiled once per dialect, and run on the DBAPI
connection of one ``Store.write_rows()`` or ``Store.read_rows()`` transaction
(store/direct.py).

The ORM's host scoping (store/scope.py) does not reach these statements, so every statement
here names the host itself: ``LeaseRows(transaction, host_id)`` adds ``host_id = :host`` to
each table it reads or changes (``host_id`` None: an unscoped store, every host's rows), and
new rows take the host of the pool they belong to. The live-lease filters have their values
written in, as in store/queries.py, so that SQLite uses the partial indexes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    case,
    insert,
    literal_column,
    select,
    update,
)

from vfpool.errors import NotFound
from vfpool.store.direct import here, listed, listed_values
from vfpool.store.pool_rows import PoolRow, PoolRows
from vfpool.store.states import LIVE_LEASE_STATES, LeaseState, Mode, VfState
from vfpool.store.tables import (
    LEASE_ID_MAX,
    events,
    leases,
    live_lease,
    member_covers,
    members,
    pfs,
    pools,
    vfs,
)
from vfpool.store.types import utcnow


class Keep:
    """A column left as it is."""


KEEP = Keep()


class FreeVfRow(NamedTuple):
    """A free VF the allocation policy chose, with its PF."""

    vf_id: int
    vf_pci: str
    vf_index: int
    vf_netdev: str | None
    pf_pci: str
    pf_netdev: str | None
    pf_driver: str | None
    numa_node: int | None


class LeaseRow(NamedTuple):
    """A lease as stored, with its pool's name and the netdevs the store has for its VF and
    PF (what a lease's record shows)."""

    id: int
    pool_id: int
    pool: str
    host_id: int
    vf_id: int | None
    pf_pci: str
    vf_pci: str
    vf_index: int
    owner: str
    owner_pid: int | None
    acquirer: str | None
    token_hash: str
    state: LeaseState
    mode: Mode
    mac: str | None
    vlan: int | None
    numa_node: int | None
    applied_config: dict[str, Any] | None
    saved_config: dict[str, Any] | None
    boot_id: str
    created_at: datetime
    released_at: datetime | None
    vf_netdev: str | None
    pf_netdev: str | None

    @property
    def live(self) -> bool:
        return self.state in LIVE_LEASE_STATES


# ---------------------------------------------------------------- the statements, built once

@functools.cache
def _free_vfs(by_numa: bool, spread: bool, lock: bool) -> Select[Any]:
    """The allocation policy, as one statement: free VFs of the pool's members, the
    requested NUMA node first, then the lowest index in pool order (with ``spread``, the
    lowest index across PFs in turn); ``:count`` rows at most. A pool's members are on the
    pool's host, so the pool id scopes it."""
    order: list[Any] = []
    if by_numa:
        order.append(case((pfs.c.numa_node == bindparam("numa_node"), 0), else_=1))
    order += [vfs.c.index, members.c.position] if spread else [members.c.position, vfs.c.index]
    chosen = (
        select(vfs.c.id, vfs.c.pci, vfs.c.index, vfs.c.netdev, pfs.c.pci, pfs.c.netdev,
               pfs.c.driver, pfs.c.numa_node)
        .select_from(vfs)
        .join(members, and_(members.c.pool_id == bindparam("pool_id"),
                            member_covers(bindparam("vfs_per_pf"))))
        .join(pfs, and_(pfs.c.host_id == members.c.host_id, pfs.c.pci == members.c.pf_pci))
        .where(vfs.c.state == literal_column(f"'{VfState.FREE.value}'"))
        .order_by(*order).limit(bindparam("count")))
    # PostgreSQL: lock the chosen rows, and let concurrent acquires skip them rather than
    # queue behind them (SQLite's BEGIN IMMEDIATE already serialises writers).
    return chosen.with_for_update(of=vfs, skip_locked=True) if lock else chosen


@functools.cache
def _live_with_mac(scoped: bool) -> Select[Any]:
    return select(leases.c.id, leases.c.owner).where(
        leases.c.mac == bindparam("mac"), live_lease(), *here(leases, scoped)).limit(1)


@functools.lru_cache(maxsize=64)
def _live_macs(scoped: bool, count: int) -> Select[Any]:
    return select(leases.c.mac).where(leases.c.mac.in_(listed("mac", count)),
                                      live_lease(), *here(leases, scoped))


@functools.cache
def _insert_lease() -> Insert:
    return insert(leases).returning(leases.c.id)


@functools.cache
def _insert_event() -> Insert:
    return insert(events)


@functools.lru_cache(maxsize=64)
def _set_vfs(with_reason: bool, count: int) -> Update:
    values: dict[str, Any] = {"state": bindparam("new_state"), "updated_at": bindparam("now")}
    if with_reason:
        values["reason"] = bindparam("new_reason")
    return update(vfs).where(vfs.c.id.in_(listed("vf", count))).values(**values)


@functools.cache
def _set_vf_netdev() -> Update:
    return update(vfs).where(vfs.c.id == bindparam("vf_id")).values(
        state=bindparam("new_state"), netdev=bindparam("new_netdev"), reason=None,
        updated_at=bindparam("now"))


@functools.cache
def _lease_row(scoped: bool) -> Select[Any]:
    return _leases().where(leases.c.id == bindparam("lease_id"), *here(leases, scoped))


@functools.cache
def _lease_list(scoped: bool, of_pool: bool, of_owner: bool, live: bool) -> Select[Any]:
    query = _leases().where(*here(leases, scoped)).order_by(leases.c.id)
    if of_pool:
        query = query.where(leases.c.pool_id == bindparam("pool_id"))
    if of_owner:
        query = query.where(leases.c.owner == bindparam("owner"))
    return query.where(live_lease()) if live else query


def _leases() -> Select[Any]:
    """Leases with their pool's name and the netdevs the store has for their VF and PF, in
    ``LeaseRow``'s order."""
    return (
        select(leases.c.id, leases.c.pool_id, pools.c.name, leases.c.host_id, leases.c.vf_id,
               leases.c.pf_pci, leases.c.vf_pci, leases.c.vf_index, leases.c.owner,
               leases.c.owner_pid, leases.c.acquirer, leases.c.token_hash, leases.c.state,
               leases.c.mode, leases.c.mac, leases.c.vlan, leases.c.numa_node,
               leases.c.applied_config, leases.c.saved_config, leases.c.boot_id,
               leases.c.created_at, leases.c.released_at, vfs.c.netdev,
               pfs.c.netdev.label("pf_netdev"))
        .select_from(leases)
        .join(pools, pools.c.id == leases.c.pool_id)
        .outerjoin(vfs, vfs.c.id == leases.c.vf_id)
        .outerjoin(pfs, and_(pfs.c.host_id == vfs.c.host_id, pfs.c.pci == vfs.c.pf_pci)))


@functools.cache
def _change_lease(scoped: bool, from_state: LeaseState | None) -> Update:
    """Set a lease's columns (the execution's parameters name them) if it is in
    ``from_state`` (None: live) and, on a scoped store, on this host."""
    state = live_lease() if from_state is None else \
        leases.c.state == literal_column(f"'{from_state.value}'")
    return update(leases).where(leases.c.id == bindparam("lease_id"), state,
                                *here(leases, scoped))


def _lease(row: Sequence[Any]) -> LeaseRow:
    return LeaseRow._make(row)  # the columns of _leases, in order


class LeaseRows(PoolRows):
    """The lease path's reads and writes in one transaction, on one host's rows."""

    # ------------------------------------------------------------ acquire
    def free_vfs(self, pool: PoolRow, count: int, *, numa_node: int | None,
                 spread: bool, lock: bool) -> list[FreeVfRow]:
        params: dict[str, Any] = {"pool_id": pool.id, "vfs_per_pf": pool.vfs_per_pf,
                                  "count": count}
        if numa_node is not None:
            params["numa_node"] = numa_node
        return [FreeVfRow._make(row) for row in self.transaction.rows(
            _free_vfs(numa_node is not None, spread, lock), params)]

    def live_lease_with_mac(self, mac: str) -> tuple[int, str] | None:
        row = self.transaction.first(_live_with_mac(self.scoped), self._params(mac=mac))
        return None if row is None else (row[0], row[1])

    def live_macs(self, macs: Sequence[str]) -> set[str]:
        if not macs:
            return set()
        return set(self.transaction.scalars(_live_macs(self.scoped, len(macs)),
                                            self._params(**listed_values("mac", macs))))

    def add_lease(self, values: dict[str, Any]) -> int:
        """Insert a lease (``values``: its columns); its id."""
        now = utcnow()
        row = self.transaction.insert(_insert_lease(),
                                      {"created_at": now, "updated_at": now, **values})
        return int(row[0])

    def set_vfs(self, vf_ids: Sequence[int], state: VfState, *,
                reason: str | Keep | None = KEEP) -> None:
        """Set the state of VF rows, and their reason unless ``KEEP``."""
        if not vf_ids:
            return
        params = {"new_state": state, "now": utcnow(), **listed_values("vf", vf_ids)}
        if not isinstance(reason, Keep):
            params["new_reason"] = reason
        self.transaction.run(_set_vfs(not isinstance(reason, Keep), len(vf_ids)), params)

    def set_vf_netdev(self, vf_id: int, state: VfState, netdev: str | None) -> None:
        self.transaction.run(_set_vf_netdev(), {"vf_id": vf_id, "new_state": state,
                                                "new_netdev": netdev, "now": utcnow()})

    def add_events(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert events (``rows``: their columns, ``host_id`` included, the same in each)."""
        if rows:
            now = utcnow()
            columns = sorted({"at", *rows[0]})
            self.transaction.run_many(_insert_event(), [{"at": now, **row} for row in rows],
                                      columns)

    # ------------------------------------------------------------ one lease
    def lease(self, lease_id: int) -> LeaseRow:
        row = self.transaction.first(_lease_row(self.scoped), self._params(
            lease_id=lease_id)) if 0 < lease_id <= LEASE_ID_MAX else None
        if row is None:
            raise NotFound(f"no lease {lease_id}")
        return _lease(row)

    def change_lease(self, lease_id: int, from_state: LeaseState | None,
                     **values: Any) -> bool:
        """Set columns of a lease if it is in ``from_state`` (None: live); whether it was."""
        values["updated_at"] = utcnow()
        columns = sorted(values)
        return bool(self.transaction.run(_change_lease(self.scoped, from_state),
                                         self._params(lease_id=lease_id, **values), columns))

    def change_reserved(self, lease_id: int, **values: Any) -> LeaseState | None:
        """Set columns of a lease that is still reserved: None when done, else the state it
        is in now (cancelled, or marked lost by `watch`), and nothing changed."""
        if self.change_lease(lease_id, LeaseState.RESERVED, **values):
            return None
        return self.lease(lease_id).state

    def leases(self, *, pool: str | None = None, owner: str | None = None,
               include_finished: bool = False) -> list[LeaseRow]:
        """Leases by id: the live ones, or with ``include_finished`` all; of one pool (which
        must exist) or one owner."""
        params = self._params()
        if pool is not None:
            params["pool_id"] = self.pool(pool).id
        if owner is not None:
            params["owner"] = owner
        query = _lease_list(self.scoped, pool is not None, owner is not None,
                            not include_finished)
        return [_lease(row) for row in self.transaction.rows(query, params)]
