"""The inventory report (`vfpool report`): pools, PFs, VFs with their live leases, and the
newest events, read from the store alone, in one transaction and a handful of set-based
queries, as frozen dataclasses. Rendering them (table, JSON, CSV, Prometheus) is the
presentation layer's job: ``vfpool.cli.report_render`` and ``vfpool.cli.report_metrics``.

A pool's VFs are those of its members' ``used_indices`` (the first ``vfs_per_pf`` of each
member's range), as in ``pools.info``; an inactive pool has none, so its counts are zero.

``report --fleet`` reads every host's report with the same queries, fleet-wide, and splits
their rows by host: the number of queries does not grow with the hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import String, and_, func, select, type_coerce
from sqlalchemy.orm import Session

from vfpool.service.context import Context
from vfpool.service.events import EventFilter, EventRow, read_events
from vfpool.store import Event, Lease, Pf, Pool, PoolPf, Vf, utcnow
from vfpool.store.models import Host
from vfpool.store.queries import VF_STATE_NAMES, live, zero_counts
from vfpool.store.scope import all_hosts
from vfpool.store.tables import member_covers

EVENT_LIMIT = 20
# The VF states a report counts, in the order every format lists them.
VF_STATES: tuple[str, ...] = VF_STATE_NAMES


# ---------------------------------------------------------------- the report as data

@dataclass(frozen=True)
class PfSummary:
    """One PF of one pool: where it is, and the pool's VFs on it by state."""

    pci: str
    netdev: str | None
    driver: str | None
    numa_node: int | None
    range: str | None
    vfs: dict[str, int] = field(default_factory=zero_counts)


@dataclass(frozen=True)
class PoolSummary:
    name: str
    state: str
    autostart: bool
    mode: str
    leases: int  # live (reserved or active) leases
    pfs: list[PfSummary] = field(default_factory=list)

    @property
    def vfs(self) -> dict[str, int]:
        totals = zero_counts()
        for pf in self.pfs:
            for key, count in pf.vfs.items():
                totals[key] += count
        return totals


@dataclass(frozen=True)
class VfRow:
    """A VF of an active pool, with its live lease if it has one."""

    pool: str
    pf: str
    pf_netdev: str | None
    numa_node: int | None
    index: int
    pci: str
    netdev: str | None
    state: str
    reason: str | None
    lease_id: int | None
    lease_state: str | None
    owner: str | None
    mac: str | None
    vlan: int | None
    lease_created_at: datetime | None
    lease_age: int | None  # whole seconds since lease_created_at


@dataclass(frozen=True)
class Summary:
    """The pools with their PFs' VF counts and live leases: all that the Prometheus metrics
    show, read without the VF rows and events."""

    generated_at: datetime
    pools: list[PoolSummary]


@dataclass(frozen=True)
class Report(Summary):
    """The whole inventory report: the summary, every VF of an active pool, and the newest
    events."""

    vfs: list[VfRow]
    events: list[EventRow]  # newest first


# A Report or a Summary; covariant, because the dataclasses holding it are frozen.
Part = TypeVar("Part", bound=Summary, covariant=True)


@dataclass(frozen=True)
class HostReport(Generic[Part]):
    """One host's part of ``report --fleet``."""

    name: str
    machine_id: str | None
    report: Part


@dataclass(frozen=True)
class FleetReport(Generic[Part]):
    """``report --fleet``: every host's report (or summary), by host name, all of one
    snapshot."""

    generated_at: datetime
    hosts: Sequence[HostReport[Part]]


# ---------------------------------------------------------------- the queries
# Each returns every row the session may see, with the host id of each: one host's rows in a
# host-scoped session (store/scope.py), every host's after ``all_hosts(session)``. Joins on a
# PF name the host too, since every host of a fleet may have a PF at the same address.

def _live_leases(session: Session) -> dict[int, int]:
    """Live leases by pool id (pool ids are unique across hosts)."""
    return {pool_id: count for pool_id, count in session.execute(
        select(Lease.pool_id, func.count()).where(live()).group_by(Lease.pool_id))}


def _vf_counts(session: Session) -> dict[tuple[int, str], dict[str, int]]:
    """The VFs of each member of an active pool by state, by (pool id, PF address)."""
    counts: dict[tuple[int, str], dict[str, int]] = {}
    for pool_id, pf_pci, state, count in session.execute(
            select(PoolPf.pool_id, PoolPf.pf_pci, Vf.state, func.count())
            .select_from(PoolPf)
            .join(Pool, and_(Pool.id == PoolPf.pool_id, Pool.state == "active"))
            .join(Vf, member_covers(Pool.vfs_per_pf))
            .group_by(PoolPf.pool_id, PoolPf.pf_pci, Vf.state)):
        member = counts.setdefault((pool_id, pf_pci), zero_counts())
        member[str(state)] += count
        member["total"] += count
    return counts


def _pools(session: Session) -> list[tuple[int, PoolSummary]]:
    """Every pool with its members and their counts, by name, each with its host id."""
    live_leases = _live_leases(session)
    counts = _vf_counts(session)
    rows = session.execute(
        select(Pool.host_id, Pool.id, Pool.name, Pool.state, Pool.autostart, Pool.mode,
               PoolPf.pf_pci, PoolPf.range_start, PoolPf.range_end, Pf.netdev, Pf.driver,
               Pf.numa_node)
        .select_from(Pool).outerjoin(PoolPf, PoolPf.pool_id == Pool.id)
        .outerjoin(Pf, and_(Pf.host_id == PoolPf.host_id, Pf.pci == PoolPf.pf_pci))
        .order_by(Pool.name, PoolPf.position))
    # Rows come by pool name, then member position; pools of one name on several hosts
    # interleave, so members are gathered by pool id.
    found: dict[int, tuple[int, PoolSummary]] = {}
    for (host_id, pool_id, name, state, autostart, mode, pf_pci, range_start, range_end,
         netdev, driver, numa_node) in rows:
        entry = found.get(pool_id)
        if entry is None:
            entry = found[pool_id] = (host_id, PoolSummary(
                name, str(state), bool(autostart), str(mode), live_leases.get(pool_id, 0)))
        if pf_pci is None:
            continue
        member_range = None if range_start is None else f"{range_start}-{range_end}"
        entry[1].pfs.append(PfSummary(pf_pci, netdev, driver, numa_node, member_range,
                                      counts.get((pool_id, pf_pci)) or zero_counts()))
    return list(found.values())


def _age(created_at: datetime | None, now: datetime) -> int | None:
    if created_at is None:
        return None
    # A lease stamped after `now` (clock skew between hosts of a fleet) is 0 s old, not negative.
    return max(0, int((now - created_at).total_seconds()))


def _vf_rows(session: Session, now: datetime) -> list[tuple[int, VfRow]]:
    """Every VF of an active pool, by pool name, member position and index, each with its
    live lease (at most one: the partial unique index allows one per VF) and its host id."""
    rows = session.execute(
        # The states as their text: making an enum member of each would cost more than the
        # rest of a row (StrEnumType.process_result_value).
        select(Vf.host_id, Pool.name, PoolPf.pf_pci, Pf.netdev, Pf.numa_node, Vf.vf_index,
               Vf.pci, Vf.netdev, type_coerce(Vf.state, String).label("vf_state"), Vf.reason,
               Lease.id, type_coerce(Lease.state, String).label("lease_state"), Lease.owner,
               Lease.mac, Lease.vlan, Lease.created_at)
        .select_from(Pool)
        .join(PoolPf, PoolPf.pool_id == Pool.id)
        .join(Pf, and_(Pf.host_id == PoolPf.host_id, Pf.pci == PoolPf.pf_pci))
        .join(Vf, member_covers(Pool.vfs_per_pf))
        # live() inlines the states, so SQLite can use the partial index (store/queries.py).
        .outerjoin(Lease, and_(Lease.vf_id == Vf.id, live()))
        .where(Pool.state == "active")
        .order_by(Pool.name, PoolPf.position, Vf.vf_index))
    return [(host_id, VfRow(pool, pf, pf_netdev, numa_node, index, pci, netdev, state, reason,
                            lease_id, lease_state, owner, mac, vlan, created_at,
                            _age(created_at, now)))
            for (host_id, pool, pf, pf_netdev, numa_node, index, pci, netdev, state, reason,
                 lease_id, lease_state, owner, mac, vlan, created_at) in rows]


def _newest_events_by_host(session: Session, limit: int) -> dict[int, list[EventRow]]:
    """Each host's newest ``limit`` events, newest first, in one query: a window numbers
    each host's events from its newest (SQLite 3.25 and PostgreSQL both have them)."""
    rank = func.row_number().over(partition_by=Event.host_id, order_by=Event.id.desc())
    ranked = EventFilter().statement().add_columns(Event.host_id.label("event_host_id"),
                                                   rank.label("event_rank")).subquery()
    found: dict[int, list[EventRow]] = {}
    for *row, host_id, _ in session.execute(
            select(ranked).where(ranked.c.event_rank <= limit)
            .order_by(ranked.c.event_host_id, ranked.c.id.desc())):
        found.setdefault(host_id, []).append(EventRow(*row))
    return found


# ---------------------------------------------------------------- building it

def _aware(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()} given as now; pass an aware one")
    return now.astimezone(UTC)


def build_summary(ctx: Context, *, now: datetime | None = None) -> Summary:
    """The pools with their PFs' VF counts at ``now`` (default: the current time), in one
    read transaction: what `report --format prometheus` shows."""
    when = _aware(now)
    return ctx.store.read(lambda session: Summary(when, [pool for _, pool in _pools(session)]))


def build_report(ctx: Context, *, now: datetime | None = None) -> Report:
    """The inventory at ``now`` (default: the current time; tests pass a fixed one, which
    only lease ages depend on). Reads the store only, never the host."""
    when = _aware(now)

    # One read transaction: the counts, rows and events are one consistent snapshot.
    def read(session: Session) -> Report:
        return Report(when, [pool for _, pool in _pools(session)],
                      [vf for _, vf in _vf_rows(session, when)],
                      read_events(session, limit=EVENT_LIMIT))

    return ctx.store.read(read)


T = TypeVar("T")


def _by_host(rows: Sequence[tuple[int, T]]) -> dict[int, list[T]]:
    found: dict[int, list[T]] = {}
    for host_id, row in rows:
        found.setdefault(host_id, []).append(row)
    return found


def _fleet(ctx: Context, when: datetime, build: Callable[[Session], Callable[[int], Part]]
           ) -> FleetReport[Part]:
    """Every host's part, by host name, in one read transaction: ``build(session)`` runs the
    fleet-wide queries and returns the function that gives one host's part."""
    def read(session: Session) -> list[HostReport[Part]]:
        all_hosts(session)
        hosts = list(session.execute(select(Host.id, Host.name, Host.machine_id)
                                     .order_by(Host.name, Host.id)))
        part_of = build(session)
        return [HostReport(name or f"host-{host_id}", machine_id, part_of(host_id))
                for host_id, name, machine_id in hosts]

    return FleetReport(when, ctx.store.read(read, operation="reading every host's report"))


def build_fleet_summary(ctx: Context, *, now: datetime | None = None) -> FleetReport[Summary]:
    """Every host's summary (`report --fleet --format prometheus`), with a fixed number of
    queries however many hosts there are."""
    when = _aware(now)

    def build(session: Session) -> Callable[[int], Summary]:
        pools = _by_host(_pools(session))
        return lambda host_id: Summary(when, pools.get(host_id, []))

    return _fleet(ctx, when, build)


def build_fleet_report(ctx: Context, *, now: datetime | None = None) -> FleetReport[Report]:
    """Every host's report (`report --fleet`), with a fixed number of queries however many
    hosts there are (not one round of queries per host)."""
    when = _aware(now)

    def build(session: Session) -> Callable[[int], Report]:
        pools = _by_host(_pools(session))
        vfs = _by_host(_vf_rows(session, when))
        events = _newest_events_by_host(session, EVENT_LIMIT)
        return lambda host_id: Report(when, pools.get(host_id, []), vfs.get(host_id, []),
                                      events.get(host_id, []))

    return _fleet(ctx, when, build)
