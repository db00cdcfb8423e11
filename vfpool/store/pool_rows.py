"""A pool's reads as direct statements: what a pool change plans with, what an acquire
reads of its pool, and a pool's record (its members, their PFs' rows, its VF counts).

``pool start``, ``destroy`` and ``resize`` read a pool and the memberships and live leases
of the PFs they lock three or four times before their one write: to find the PFs to lock,
to see that the pool did not change while they waited, and to gather what the plans need.
Through the ORM each of those reads was a session, a statement per table and a lazy load of
the pool's members, about 1 ms; here each is one ``Store.read_rows()`` transaction of Core
statements (store/direct.py). The lease path's ``LeaseRows`` (store/leasing.py) extends
``PoolRows``, so a pool and its members are read by one statement each, whoever reads them;
a pool change's writes (store/pool_writes.py) extend it in turn.

As in store/leasing.py, the ORM's host scoping does not reach these statements: each names
the host itself (``host_id = :host`` on a scoped store), and the live-lease filter has its
values written in, for SQLite's partial index.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, func, literal_column, select

from vfpool.errors import NotFound
from vfpool.store.direct import HostRows, here, listed, listed_values
from vfpool.store.states import LinkState, LiveLease, Method, Mode, PoolState, VfState
from vfpool.store.tables import leases, live_lease, member_covers, members, pfs, pools, vfs


class PoolRow(NamedTuple):
    """A pool, as a change of it and an acquire from it read it."""

    id: int
    host_id: int
    name: str
    state: PoolState
    autostart: bool
    method: Method
    mode: Mode
    vfs_per_pf: int
    selectors: str | None
    vlan: int | None
    qos: int | None
    spoofchk: bool | None
    trust: bool | None
    min_tx_rate: int | None
    max_tx_rate: int | None
    mtu: int | None
    link_state: LinkState | None


class MemberRow(NamedTuple):
    """One membership of a PF, with the pool it belongs to."""

    pool_id: int
    pool: str
    state: PoolState
    method: Method
    mode: Mode
    vfs_per_pf: int
    pf_pci: str
    range_start: int | None
    range_end: int | None


class PfRow(NamedTuple):
    """A PF as the store last saw it."""

    pci: str
    netdev: str | None
    driver: str | None
    totalvfs: int


_MEMBER_COLUMNS = (pools.c.id, pools.c.name, pools.c.state, pools.c.method, pools.c.mode,
                   pools.c.vfs_per_pf, members.c.pf_pci, members.c.range_start,
                   members.c.range_end)


@functools.cache
def _pool(scoped: bool) -> Select[Any]:
    return select(*(pools.c[name] for name in PoolRow._fields)).where(
        pools.c.name == bindparam("name"), *here(pools, scoped))


@functools.cache
def _pools(scoped: bool, active_only: bool) -> Select[Any]:
    """The pools by name (with ``active_only``, the active ones)."""
    query = select(*(pools.c[name] for name in PoolRow._fields)).where(
        *here(pools, scoped)).order_by(pools.c.name)
    if active_only:
        query = query.where(pools.c.state == literal_column(f"'{PoolState.ACTIVE.value}'"))
    return query


@functools.cache
def _vf_counts() -> Select[Any]:
    """The VF rows of a pool's memberships, by state (a pool's members are on its host)."""
    return (select(vfs.c.state, func.count()).select_from(vfs)
            .join(members, and_(members.c.pool_id == bindparam("pool_id"),
                                member_covers(bindparam("vfs_per_pf"))))
            .group_by(vfs.c.state))


@functools.cache
def _members_of() -> Select[Any]:
    """A pool's memberships in pool order (a pool's members are on the pool's host)."""
    return (select(*_MEMBER_COLUMNS).join(pools, pools.c.id == members.c.pool_id)
            .where(members.c.pool_id == bindparam("pool_id")).order_by(members.c.position))


@functools.lru_cache(maxsize=64)
def _memberships(scoped: bool, count: int) -> Select[Any]:
    """Every pool's membership of ``count`` PFs, by pool name."""
    return (select(*_MEMBER_COLUMNS).join(pools, pools.c.id == members.c.pool_id)
            .where(members.c.pf_pci.in_(listed("pf", count)), *here(members, scoped))
            .order_by(pools.c.name, members.c.position))


@functools.lru_cache(maxsize=64)
def _live_on(scoped: bool, count: int) -> Select[Any]:
    """The live leases on ``count`` PFs, by id, with their pool's name."""
    return (select(leases.c.id, pools.c.name, leases.c.owner, leases.c.pf_pci,
                   leases.c.vf_pci, leases.c.vf_index)
            .join(pools, pools.c.id == leases.c.pool_id)
            .where(leases.c.pf_pci.in_(listed("pf", count)), live_lease(),
                   *here(leases, scoped))
            .order_by(leases.c.id))


@functools.lru_cache(maxsize=64)
def _pf_rows(scoped: bool, count: int) -> Select[Any]:
    return select(*(pfs.c[name] for name in PfRow._fields)).where(
        pfs.c.pci.in_(listed("pf", count)), *here(pfs, scoped))


class PoolRows(HostRows):
    """A pool's reads in one transaction, on one host's rows: what a pool change plans with,
    and (store/leasing.py's ``LeaseRows``) what an acquire reads of the pool."""

    def pool(self, name: str) -> PoolRow:
        row = self.transaction.first(_pool(self.scoped), self._params(name=name))
        if row is None:
            raise NotFound(f"no pool named {name!r}")
        return PoolRow._make(row)

    def pools(self, *, include_inactive: bool = True) -> list[PoolRow]:
        """The pools by name."""
        return [PoolRow._make(row) for row in self.transaction.rows(
            _pools(self.scoped, not include_inactive), self._params())]

    def vf_counts(self, pool: PoolRow) -> dict[VfState, int]:
        """The pool's VF rows by state (the states it has none in are left out)."""
        return {state: count for state, count in self.transaction.rows(
            _vf_counts(), {"pool_id": pool.id, "vfs_per_pf": pool.vfs_per_pf})}

    def members(self, pool: PoolRow) -> list[MemberRow]:
        """The pool's memberships, in pool order."""
        return [MemberRow._make(row)
                for row in self.transaction.rows(_members_of(), {"pool_id": pool.id})]

    def member_pcis(self, pool: PoolRow) -> frozenset[str]:
        return frozenset(member.pf_pci for member in self.members(pool))

    def memberships(self, pcis: Sequence[str]) -> list[MemberRow]:
        if not pcis:
            return []
        return [MemberRow._make(row) for row in self.transaction.rows(
            _memberships(self.scoped, len(pcis)), self._params(**listed_values("pf", pcis)))]

    def live_leases_on(self, pcis: Sequence[str]) -> list[LiveLease]:
        if not pcis:
            return []
        return [LiveLease._make(row) for row in self.transaction.rows(
            _live_on(self.scoped, len(pcis)), self._params(**listed_values("pf", pcis)))]

    def pfs(self, pcis: Sequence[str]) -> dict[str, PfRow]:
        """The rows of the PFs ``pcis`` that the store has, by address."""
        if not pcis:
            return {}
        return {row[0]: PfRow._make(row) for row in self.transaction.rows(
            _pf_rows(self.scoped, len(pcis)), self._params(**listed_values("pf", pcis)))}
