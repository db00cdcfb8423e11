"""Every query of the store, written once.

``Queries(session)`` answers for the rows of one store; service code never builds a SELECT
itself. Live-lease filters are written with their values inline
(``state IN ('reserved', 'active')``), the exact WHERE of the partial unique index, so that
SQLite can use that index instead of scanning every lease ever made; bound parameters would
hide the values from its planner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, joinedload

from vfpool.errors import NotFound
from vfpool.store.models import Lease, Pf, Pool, PoolPf, Vf
from vfpool.store.states import PoolState, VfState
from vfpool.store.tables import LEASE_ID_MAX, live_lease

VF_STATE_NAMES = tuple(state.value for state in VfState)


# ``leases.state IN ('reserved', 'active')``, with the values inline (see the module doc).
live = live_lease


def zero_counts() -> dict[str, int]:
    """VF counts by state, and their total, all zero: the shape every count report uses."""
    return {"total": 0, **dict.fromkeys(VF_STATE_NAMES, 0)}


class Queries:
    """The store's queries over one session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # ------------------------------------------------------------------ pools
    def pool(self, name: str) -> Pool:
        pool = self.session.scalars(select(Pool).where(Pool.name == name)).one_or_none()
        if pool is None:
            raise NotFound(f"no pool named {name!r}")
        return pool

    def pool_exists(self, name: str) -> bool:
        return self.session.scalars(select(Pool.id).where(Pool.name == name)).first() is not None

    def pools(self, *, include_inactive: bool = True) -> list[Pool]:
        query = select(Pool).order_by(Pool.name)
        if not include_inactive:
            query = query.where(Pool.state == PoolState.ACTIVE)
        return list(self.session.scalars(query))

    def autostart_names(self) -> list[str]:
        return list(self.session.scalars(
            select(Pool.name).where(Pool.autostart.is_(True)).order_by(Pool.name)))

    def memberships(self, pcis: Iterable[str]) -> list[tuple[Pool, PoolPf]]:
        """Every pool's membership of the PFs ``pcis``."""
        return [(pool, member) for pool, member in self.session.execute(
            select(Pool, PoolPf).join(PoolPf, PoolPf.pool_id == Pool.id)
            .where(PoolPf.pf_pci.in_(list(pcis))).order_by(Pool.name))]

    def memberships_with_driver(self) -> list[tuple[Pool, PoolPf, Pf]]:
        """Every membership with its PF row (for module-parameter agreement)."""
        return [(pool, member, pf) for pool, member, pf in self.session.execute(
            select(Pool, PoolPf, Pf).join(PoolPf, PoolPf.pool_id == Pool.id)
            .join(Pf, Pf.pci == PoolPf.pf_pci))]

    def pool_names_by_pf(self) -> list[tuple[str, str]]:
        """(PF, pool name) for every membership, by pool name."""
        return [(pci, name) for pci, name in self.session.execute(
            select(PoolPf.pf_pci, Pool.name).join(Pool, Pool.id == PoolPf.pool_id)
            .order_by(Pool.name))]

    # ------------------------------------------------------------------ PFs
    def pf(self, pci: str) -> Pf | None:
        return self.pfs([pci]).get(pci)

    def pfs(self, pcis: Sequence[str]) -> dict[str, Pf]:
        """The PF rows of ``pcis`` that the store has, by address, in one query."""
        return {row.pci: row for row in self.session.scalars(
            select(Pf).where(Pf.pci.in_(list(pcis))))}

    def known_pf_pcis(self) -> set[str]:
        return set(self.session.scalars(select(Pf.pci)))

    # ------------------------------------------------------------------ VFs
    def vfs_in(self, pf_pci: str, first: int, last: int) -> dict[int, Vf]:
        """The VF rows of a PF with indices ``first``..``last``, by index."""
        return self.vfs_in_ranges([(pf_pci, first, last)])[pf_pci]

    def vfs_in_ranges(self, ranges: Sequence[tuple[str, int, int]]
                      ) -> dict[str, dict[int, Vf]]:
        """The VF rows in each (PF, first index, last index), by PF and index, in one query
        (a pool start's members: a query each cost more than the rows)."""
        found: dict[str, dict[int, Vf]] = {pci: {} for pci, _, _ in ranges}
        if ranges:
            for row in self.session.scalars(select(Vf).where(or_(*(
                    and_(Vf.pf_pci == pci, Vf.vf_index >= first, Vf.vf_index <= last)
                    for pci, first, last in ranges)))):
                found[row.pf_pci][row.vf_index] = row
        return found

    def vf_at(self, pf_pci: str, index: int) -> Vf:
        return self.session.scalars(select(Vf).where(Vf.pf_pci == pf_pci,
                                                     Vf.vf_index == index)).one()

    def vf_by_pci(self, pci: str) -> Vf | None:
        return self.session.scalars(select(Vf).where(Vf.pci == pci)).one_or_none()

    # ------------------------------------------------------------------ leases
    def lease(self, lease_id: int) -> Lease:
        """A lease with its pool, VF and the VF's PF, in one statement: the lease path reads
        all three (its record, its events), and each lazy load was a statement of its own."""
        found = self.session.scalars(
            select(Lease).where(Lease.id == lease_id)
            .options(joinedload(Lease.pool), joinedload(Lease.vf).joinedload(Vf.pf))
        ).one_or_none() if 0 < lease_id <= LEASE_ID_MAX else None
        if found is None:
            raise NotFound(f"no lease {lease_id}")
        return found

    def live_leases(self) -> list[Lease]:
        return list(self.session.scalars(select(Lease).where(live()).order_by(Lease.id)))

    def live_lease_of_vf(self, vf_id: int) -> Lease | None:
        return self.session.scalars(select(Lease).where(Lease.vf_id == vf_id, live())).first()

    def live_lease_ids_by_vf(self, vf_ids: Sequence[int]) -> dict[int, int]:
        """The live lease of each of the VF rows ``vf_ids`` that has one: VF id -> lease id,
        in one query."""
        if not vf_ids:
            return {}
        return {vf_id: lease_id for vf_id, lease_id in self.session.execute(
            select(Lease.vf_id, Lease.id).where(Lease.vf_id.in_(list(vf_ids)), live()))
            if vf_id is not None}

    def highest_live_index(self, pool_id: int, pf_pci: str, from_index: int) -> Lease | None:
        """The live lease of a pool on a PF with the highest VF index at or above
        ``from_index`` (what a shrink would take away)."""
        return self.session.scalars(select(Lease).where(
            Lease.pf_pci == pf_pci, Lease.pool_id == pool_id, live(),
            Lease.vf_index >= from_index).order_by(Lease.vf_index.desc())).first()
