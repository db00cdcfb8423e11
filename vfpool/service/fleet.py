"""Fleet-wide reads over a shared store: the hosts (`host list`) and where a pool can give
VFs now (`fleet place`). Everything else a host does sees its own rows only (see
store/scope.py); these two read every host's rows, and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from vfpool.errors import Exhausted
from vfpool.model.pool import validate_name
from vfpool.service.context import Context
from vfpool.service.leases import validate_count, validate_numa_node
from vfpool.store.models import Host, Pf, Pool, PoolPf, Vf
from vfpool.store.queries import zero_counts
from vfpool.store.scope import all_hosts
from vfpool.store.states import PoolState


@dataclass(frozen=True)
class HostInfo:
    """One host of the store: who it is, when it last wrote, its pools and its VFs by state."""

    name: str
    machine_id: str | None
    last_seen: datetime
    pools: int
    vfs: dict[str, int]


@dataclass(frozen=True)
class Placement:
    """A host whose pool can give the VFs asked for now."""

    host: str
    pool: str
    free: int
    free_on_numa: int
    numa_met: bool


def host_list(ctx: Context) -> list[HostInfo]:
    """Every host sharing the store, by name."""
    def read(session: Session) -> list[HostInfo]:
        all_hosts(session)
        pools: dict[int, int] = {host_id: number for host_id, number in session.execute(
            select(Pool.host_id, func.count()).group_by(Pool.host_id))}
        counts: dict[int, dict[str, int]] = {}
        for host_id, state, count in session.execute(
                select(Vf.host_id, Vf.state, func.count()).group_by(Vf.host_id, Vf.state)):
            row = counts.setdefault(host_id, zero_counts())
            row[str(state)] += count
            row["total"] += count
        return [HostInfo(host.name or f"host-{host.id}", host.machine_id, host.last_seen,
                         pools.get(host.id, 0),
                         counts.get(host.id, zero_counts()))
                for host in session.scalars(select(Host).order_by(Host.name, Host.id))]

    return ctx.store.read(read, operation="listing the hosts")


def place(ctx: Context, pool: str, count: int, *, numa_node: int | None = None
          ) -> list[Placement]:
    """The hosts whose active pool ``pool`` has ``count`` free VFs now, best first: those
    that can give them all on ``numa_node``, then the most free. Raises ``Exhausted`` (exit
    5) when no host can."""
    validate_name(pool)
    validate_count(count)
    validate_numa_node(numa_node)

    def read(session: Session) -> list[Placement]:
        all_hosts(session)
        # Each membership's free count is kept by the database (pool_pfs.free_vfs), so
        # this reads the pools' memberships, not the VF rows.
        free = func.sum(PoolPf.free_vfs)
        on_node = func.sum(case((Pf.numa_node == numa_node, PoolPf.free_vfs), else_=0)) \
            if numa_node is not None else free
        rows = session.execute(
            select(Host.name, Host.id, free.label("free"), on_node.label("on_node"))
            .select_from(Pool)
            .join(Host, Host.id == Pool.host_id)
            .join(PoolPf, PoolPf.pool_id == Pool.id)
            .join(Pf, and_(Pf.host_id == PoolPf.host_id, Pf.pci == PoolPf.pf_pci))
            .where(Pool.name == pool, Pool.state == PoolState.ACTIVE)
            .group_by(Host.id, Host.name)
            .having(free >= count))
        found = [Placement(name or f"host-{host_id}", pool, free, on_numa,
                           numa_node is None or on_numa >= count)
                 for name, host_id, free, on_numa in rows]
        return sorted(found, key=lambda p: (not p.numa_met, -p.free_on_numa, -p.free, p.host))

    placements = ctx.store.read(read, operation=f"placing {count} VFs of pool {pool!r}")
    if not placements:
        raise Exhausted(f"no host's pool {pool!r} has {count} free VFs now")
    return placements
