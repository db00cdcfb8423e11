"""What a pool change reads before it touches the host, as direct statements.

``pool start``, ``destroy`` and ``resize`` read a pool and the memberships and live leases
of the PFs they lock three or four times before their one write: to find the PFs to lock,
to see that the pool did not change while they waited, and to gather what the plans need.
Through the ORM each of those reads was a session, a statement per table and a lazy load of
the pool's members, about 1 ms; here each is one ``Store.read_rows()`` transaction of Core
statements (store/direct.py), as the lease path's are (store/leasing.py). The writes stay
with the ORM.

As in store/leasing.py, the ORM's host scoping does not reach these statements: each names
the host itself (``host_id = :host`` on a scoped store), and the live-lease filter has its
values written in, for SQLite's partial index.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select

from vfpool.errors import NotFound
from vfpool.store.direct import Transaction, here, listed, listed_values
from vfpool.store.states import Method, Mode, PoolState
from vfpool.store.tables import leases, live_lease, members, pfs, pools


class PoolStateRow(NamedTuple):
    """What a pool change needs of the pool itself."""

    id: int
    name: str
    state: PoolState
    method: Method
    mode: Mode
    vfs_per_pf: int
    selectors: str | None


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


class LiveLeaseRow(NamedTuple):
    id: int
    pool: str
    owner: str
    pf_pci: str
    vf_pci: str
    vf_index: int


_MEMBER_COLUMNS = (pools.c.id, pools.c.name, pools.c.state, pools.c.method, pools.c.mode,
                   pools.c.vfs_per_pf, members.c.pf_pci, members.c.range_start,
                   members.c.range_end)


@functools.cache
def _pool(scoped: bool) -> Select[Any]:
    return select(pools.c.id, pools.c.name, pools.c.state, pools.c.method, pools.c.mode,
                  pools.c.vfs_per_pf, pools.c.selectors).where(
        pools.c.name == bindparam("name"), *here(pools, scoped))


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
def _pf_drivers(scoped: bool, count: int) -> Select[Any]:
    return select(pfs.c.pci, pfs.c.driver).where(pfs.c.pci.in_(listed("pf", count)),
                                                 *here(pfs, scoped))


class PoolRows:
    """A pool change's reads in one transaction, on one host's rows."""

    def __init__(self, transaction: Transaction, host_id: int | None) -> None:
        self.transaction = transaction
        self.host_id = host_id
        self.scoped = host_id is not None

    def _params(self, **params: Any) -> dict[str, Any]:
        if self.scoped:
            params["host"] = self.host_id
        return params

    def pool(self, name: str) -> PoolStateRow:
        row = self.transaction.first(_pool(self.scoped), self._params(name=name))
        if row is None:
            raise NotFound(f"no pool named {name!r}")
        return PoolStateRow._make(row)

    def members(self, pool: PoolStateRow) -> list[MemberRow]:
        return [MemberRow._make(row)
                for row in self.transaction.rows(_members_of(), {"pool_id": pool.id})]

    def memberships(self, pcis: Sequence[str]) -> list[MemberRow]:
        if not pcis:
            return []
        return [MemberRow._make(row) for row in self.transaction.rows(
            _memberships(self.scoped, len(pcis)), self._params(**listed_values("pf", pcis)))]

    def live_leases_on(self, pcis: Sequence[str]) -> list[LiveLeaseRow]:
        if not pcis:
            return []
        return [LiveLeaseRow._make(row) for row in self.transaction.rows(
            _live_on(self.scoped, len(pcis)), self._params(**listed_values("pf", pcis)))]

    def pf_drivers(self, pcis: Sequence[str]) -> dict[str, str | None]:
        """The driver each of the PFs ``pcis`` had when last seen."""
        if not pcis:
            return {}
        return {pci: driver for pci, driver in self.transaction.rows(
            _pf_drivers(self.scoped, len(pcis)), self._params(**listed_values("pf", pcis)))}
