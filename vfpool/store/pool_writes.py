"""A pool change's writes as direct statements: what `pool start`, `resize` and `destroy`
record once the host is in place.

A start of 1,024 VFs records them in one transaction: the PF rows brought up to the host,
the VF rows of each membership's range added, updated or dropped, the pool marked active,
its events, and the pool's record read back. Through the ORM that transaction cost about
twice the database's own work (a session, its identity map, a flush per PF and lazy loads
for the record); here it is one ``Store.write_rows()`` transaction of Core statements, as
the lease path's are (store/leasing.py), whose ``LeaseRows`` this extends: a change that
resets leased VFs closes their leases in the same transaction.

As everywhere on the direct path, each statement names the host itself (``here()``), and new
rows take the host of the pool they belong to.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    String,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect

from vfpool.store.direct import here, listed, listed_values
from vfpool.store.leasing import LeaseRows
from vfpool.store.pool_rows import PoolRow
from vfpool.store.states import PoolState, VfState
from vfpool.store.tables import leases, live_lease, members, pfs, pools, vfs
from vfpool.store.types import utcnow


class VfRow(NamedTuple):
    """A VF row as a pool change reads it."""

    id: int
    pf_pci: str
    vf_index: int
    pci: str
    netdev: str | None
    state: VfState
    reason: str | None


PF_COLUMNS = ("netdev", "driver", "vendor", "device", "totalvfs", "numa_node")
# In the table's order, which is the compiled INSERT's: its rows need no reordering.
_VF_COLUMNS = ("host_id", "pf_pci", "index", "pci", "netdev", "state", "reason", "updated_at")
_VF_CHANGES = ("pci", "netdev", "state", "reason", "updated_at")


@functools.lru_cache(maxsize=64)
def _vfs_in(scoped: bool, count: int) -> Select[Any]:
    """The VF rows in ``count`` (PF, first index, last index) ranges."""
    return select(vfs.c.id, vfs.c.pf_pci, vfs.c.index, vfs.c.pci, vfs.c.netdev, vfs.c.state,
                  vfs.c.reason).where(or_(*(
        and_(vfs.c.pf_pci == bindparam(f"pf{n}"), vfs.c.index >= bindparam(f"first{n}"),
             vfs.c.index <= bindparam(f"last{n}")) for n in range(count))), *here(vfs, scoped))


@functools.lru_cache(maxsize=64)
def _held_on(scoped: bool, count: int) -> Select[Any]:
    """The VF rows a live lease names, on ``count`` PFs."""
    return select(leases.c.vf_id).where(leases.c.pf_pci.in_(listed("pf", count)),
                                        leases.c.vf_id.is_not(None), live_lease(),
                                        *here(leases, scoped))


@functools.cache
def _insert_pf() -> Insert:
    return insert(pfs)


@functools.cache
def _update_pf() -> Update:
    return update(pfs).where(pfs.c.host_id == bindparam("pf_host"),
                             pfs.c.pci == bindparam("pf_pci"))


@functools.cache
def _insert_vf() -> Insert:
    return insert(vfs)


@functools.cache
def _insert_vfs_from_json() -> Insert:
    """SQLite: a PF's new free VF rows from one JSON array of ``[index, pci, netdev]``, which
    SQLite takes apart in C (``json_each``). ``executemany`` binds each row's eight values
    from Python: 1.9 ms per 256 rows here, against 0.9 ms for this statement."""
    row = func.json_each(bindparam("rows", type_=String)).table_valued("value").alias("row")
    return insert(vfs).from_select(
        list(_VF_COLUMNS),
        select(bindparam("host", type_=vfs.c.host_id.type),
               bindparam("pf", type_=vfs.c.pf_pci.type),
               *(func.json_extract(row.c.value, literal_column(f"'$[{position}]'"))
                 for position in range(3)),
               bindparam("state", type_=vfs.c.state.type), null(),
               bindparam("now", type_=vfs.c.updated_at.type)).select_from(row))


def json_rows(dialect: Dialect) -> bool:
    """Whether ``dialect`` takes bulk rows as one JSON array: SQLite from 3.38, where the
    JSON functions are built in unless left out on purpose. Elsewhere (PostgreSQL, whose
    driver sends an ``executemany`` as one pipeline) rows go one per execution."""
    version = dialect.server_version_info or ()
    return dialect.name == "sqlite" and tuple(version) >= (3, 38)


@functools.cache
def _change_vf() -> Update:
    return update(vfs).where(vfs.c.id == bindparam("vf_id"))


@functools.lru_cache(maxsize=64)
def _delete_vfs(count: int) -> Delete:
    return delete(vfs).where(vfs.c.id.in_(listed("vf", count)))


@functools.cache
def _delete_vfs_of(scoped: bool) -> Delete:
    return delete(vfs).where(vfs.c.pf_pci == bindparam("pf"), *here(vfs, scoped))


@functools.cache
def _set_pool_state() -> Update:
    return update(pools).where(pools.c.id == bindparam("pool_id"))


@functools.cache
def _clear_members() -> Delete:
    return delete(members).where(members.c.pool_id == bindparam("pool_id"))


class PoolWrites(LeaseRows):
    """A pool change's reads and writes in one transaction, on one host's rows."""

    # ------------------------------------------------------------ PFs
    def record_pfs(self, host_id: int, seen: Sequence[dict[str, Any]]) -> None:
        """Add the PF rows of ``seen`` (each the ``pci`` and ``PF_COLUMNS`` of a PF, as the
        host shows it now), or bring the stored ones up to it."""
        if not seen:
            return
        stored = self.pfs([pf["pci"] for pf in seen])
        now = utcnow()
        changed = [{"pf_host": host_id, "pf_pci": pf["pci"], "last_seen": now,
                    **{name: pf[name] for name in PF_COLUMNS}}
                   for pf in seen if pf["pci"] in stored]
        added = [{"host_id": host_id, "first_seen": now, "last_seen": now, **pf}
                 for pf in seen if pf["pci"] not in stored]
        if changed:
            self.transaction.run_many(_update_pf(), changed, (*PF_COLUMNS, "last_seen"))
        if added:
            self.transaction.run_many(_insert_pf(), added, sorted(added[0]))

    # ------------------------------------------------------------ VFs
    def vfs_in(self, ranges: Sequence[tuple[str, int, int]]) -> dict[str, dict[int, VfRow]]:
        """The VF rows in each (PF, first index, last index), by PF and index."""
        found: dict[str, dict[int, VfRow]] = {pci: {} for pci, _, _ in ranges}
        if not ranges:
            return found
        params: dict[str, Any] = {}
        for n, (pci, first, last) in enumerate(ranges):
            params.update({f"pf{n}": pci, f"first{n}": first, f"last{n}": last})
        for row in self.transaction.rows(_vfs_in(self.scoped, len(ranges)),
                                         self._params(**params)):
            vf = VfRow._make(row)
            found[vf.pf_pci][vf.vf_index] = vf
        return found

    def held_vf_ids(self, pcis: Sequence[str]) -> set[int]:
        """The VF rows of the PFs ``pcis`` that a live lease names."""
        if not pcis:
            return set()
        return set(self.transaction.scalars(_held_on(self.scoped, len(pcis)),
                                            self._params(**listed_values("pf", pcis))))

    def add_free_vfs(self, host_id: int, pf_pci: str,
                     added: Sequence[tuple[int, str, str | None]]) -> None:
        """Insert free VF rows of a PF, one per (index, PCI address, netdev)."""
        if not added:
            return
        now = utcnow()
        if json_rows(self.transaction.dialect):
            self.transaction.run(_insert_vfs_from_json(), {
                "host": host_id, "pf": pf_pci, "state": VfState.FREE, "now": now,
                # Not ASCII-escaped: text the driver cannot encode (a lone surrogate from a
                # name that is not UTF-8) is refused here as one execution per row refuses it.
                "rows": json.dumps([[index, pci, netdev] for index, pci, netdev in added],
                                   ensure_ascii=False)})
        else:
            self.transaction.run_values(_insert_vf(), _VF_COLUMNS, [
                (host_id, pf_pci, index, pci, netdev, VfState.FREE, None, now)
                for index, pci, netdev in added])

    def change_vfs(self, changed: Sequence[VfRow]) -> None:
        """Write the address, netdev, state and reason of VF rows (by id)."""
        if changed:
            now = utcnow()
            self.transaction.run_many(_change_vf(), [
                {"vf_id": vf.id, "pci": vf.pci, "netdev": vf.netdev, "state": vf.state,
                 "reason": vf.reason, "updated_at": now} for vf in changed], _VF_CHANGES)

    def delete_vfs(self, vf_ids: Sequence[int]) -> None:
        if vf_ids:
            self.transaction.run(_delete_vfs(len(vf_ids)), listed_values("vf", vf_ids))

    def delete_vfs_of(self, pf_pci: str) -> None:
        """Delete every VF row of a PF; their leases keep their history (``vf_id`` SET
        NULL)."""
        self.transaction.run(_delete_vfs_of(self.scoped), self._params(pf=pf_pci))

    # ------------------------------------------------------------ the pool
    def set_pool_state(self, pool: PoolRow, state: PoolState) -> None:
        self.transaction.run(_set_pool_state(), {"pool_id": pool.id, "state": state,
                                                 "updated_at": utcnow()},
                             ("state", "updated_at"))

    def clear_members(self, pool: PoolRow) -> None:
        """Drop the pool's memberships (a selector pool's, which its next start chooses)."""
        self.transaction.run(_clear_members(), {"pool_id": pool.id})
