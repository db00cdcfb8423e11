"""``pool_pfs.free_vfs``: each membership's count of free VFs, kept by the database's triggers
(migrations/versions/0006), on SQLite and on a real PostgreSQL server.

`fleet place` ranks hosts by these counts without reading VF rows, so they must equal the
counted rows after every kind of write: the service's commands, bulk UPDATEs and DELETEs that
no ORM hook sees, cascades, and concurrent transactions on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from vfpool.model.pool import VfDefaults
from vfpool.service import fleet, leases, pools
from vfpool.service.context import Context, open_context
from vfpool.service.reconcile import reconcile
from vfpool.sim.host import SimHost
from vfpool.store import Pool, Vf
from vfpool.store.models import PoolPf
from vfpool.store.states import VfState
from vfpool.store.tables import member_covers

PF = "enp5s0f0"
PF_PCI = "0000:05:00.0"


def counted(session: Session) -> dict[tuple[str, str], tuple[int, int]]:
    """(pool, PF) -> (the trigger-kept count, the free VF rows counted now)."""
    free_rows = (select(func.count()).select_from(Vf)
                 .where(member_covers(Pool.vfs_per_pf), Vf.state == VfState.FREE)
                 .correlate(PoolPf, Pool).scalar_subquery())
    rows = session.execute(select(Pool.name, PoolPf.pf_pci, PoolPf.free_vfs, free_rows)
                           .join(Pool, Pool.id == PoolPf.pool_id))
    return {(name, pf): (kept, real) for name, pf, kept, real in rows}


def assert_exact(ctx: Context) -> dict[tuple[str, str], int]:
    """Every membership's kept count equals its counted free VFs; returns the counts."""
    with ctx.store.session() as session:
        found = counted(session)
    wrong = {key: pair for key, pair in found.items() if pair[0] != pair[1]}
    assert not wrong, f"kept != counted for {wrong}"
    return {key: kept for key, (kept, _) in found.items()}


@pytest.fixture
def backend_ctx(migrated_store_url: str, make_sim: Callable[..., SimHost],
                make_ctx: Callable[..., Context]) -> Context:
    """The suite's context (conftest's make_ctx) on each backend: SQLite and PostgreSQL."""
    context: Context = make_ctx(make_sim(), db=migrated_store_url)
    return context


def define(ctx: Context, name: str, pfs: list[str], vfs: int, mode: str = "vfio") -> None:
    pools.define(ctx, pools.parse_spec(name, pfs, vfs, "auto", mode, VfDefaults()))


def test_counts_follow_every_command_of_the_pool_and_lease_lifecycle(backend_ctx: Context) -> None:
    ctx = backend_ctx
    # Two pools share one PF through disjoint ranges: each counts only its own VFs.
    define(ctx, "low", [f"{PF}#0-3"], 4)
    define(ctx, "high", [f"{PF}#4-11"], 8)
    assert assert_exact(ctx) == {("low", PF_PCI): 0, ("high", PF_PCI): 0}
    pools.start(ctx, "high")  # sizes the PF for both ranges
    pools.start(ctx, "low")
    assert assert_exact(ctx) == {("low", PF_PCI): 4, ("high", PF_PCI): 8}

    taken = leases.acquire(ctx, "high", "vm-a", count=3)
    assert assert_exact(ctx)[("high", PF_PCI)] == 5
    assert assert_exact(ctx)[("low", PF_PCI)] == 4
    leases.release(ctx, taken[0].id, token=taken[0].token)
    assert assert_exact(ctx)[("high", PF_PCI)] == 6

    pools.destroy(ctx, "low")
    assert_exact(ctx)
    pools.undefine(ctx, "low")
    assert ("low", PF_PCI) not in assert_exact(ctx)
    for lease in taken[1:]:
        leases.release(ctx, lease.id, token=lease.token)
    assert assert_exact(ctx)[("high", PF_PCI)] == 8
    pools.resize(ctx, "high", 6)  # a smaller pool: the count covers the new range only
    assert assert_exact(ctx)[("high", PF_PCI)] == 6
    pools.resize(ctx, "high", 8)
    assert assert_exact(ctx)[("high", PF_PCI)] == 8
    pools.resize(ctx, "high", 5, allow_disruption=True)
    assert assert_exact(ctx)[("high", PF_PCI)] == 5


def test_vfs_gone_from_the_host_leave_the_count_by_reconcile(backend_ctx: Context) -> None:
    ctx = backend_ctx
    define(ctx, "tenant", [PF], 4)
    pools.start(ctx, "tenant")
    leases.acquire(ctx, "tenant", "vm")
    sim = SimHost(ctx.kernel.root)
    numvfs = sim.root / "sys/bus/pci/devices" / PF_PCI / "sriov_numvfs"
    sim.write_attr(numvfs, "0")
    sim.write_attr(numvfs, "2")  # behind vfpool's back: VFs 2 and 3 are gone
    reconcile(ctx)
    with ctx.store.session() as session:
        states = {index: state for index, state in session.execute(
            select(Vf.vf_index, Vf.state).where(Vf.pf_pci == PF_PCI))}
    assert states[2] == states[3] == VfState.UNUSABLE
    assert assert_exact(ctx)[("tenant", PF_PCI)] == sum(
        state == VfState.FREE for state in states.values())


def test_bulk_writes_that_no_orm_hook_sees_keep_the_counts(backend_ctx: Context) -> None:
    ctx = backend_ctx
    define(ctx, "tenant", [PF], 8)
    pools.start(ctx, "tenant")
    with ctx.store.immediate() as session:
        session.execute(update(Vf).where(Vf.vf_index < 5).values(state=VfState.UNUSABLE))
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 3
    with ctx.store.immediate() as session:  # not free -> not free: no change
        session.execute(update(Vf).where(Vf.vf_index < 2).values(state=VfState.RESERVED))
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 3
    with ctx.store.immediate() as session:
        session.execute(update(Vf).values(state=VfState.FREE))
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 8
    with ctx.store.immediate() as session:  # a VF row moved out of the range, then deleted
        session.execute(update(Vf).where(Vf.vf_index == 7).values(vf_index=100))
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 7
    with ctx.store.immediate() as session:
        session.execute(delete(Vf).where(Vf.vf_index < 3))
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 4
    with ctx.store.immediate() as session:  # a membership's range set by hand
        session.execute(update(PoolPf).values(range_start=4, range_end=5))
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 3  # indices 4, 5, 6 (vfs_per_pf 8)
    with ctx.store.immediate() as session:  # a rolled-back write leaves no trace
        session.execute(update(Vf).values(state=VfState.LEASED))
        session.rollback()
    assert assert_exact(ctx)[("tenant", PF_PCI)] == 3


def test_fleet_place_reads_the_kept_counts(backend_ctx: Context) -> None:
    ctx = backend_ctx
    define(ctx, "tenant", [PF, "enp133s0f0"], 4)
    pools.start(ctx, "tenant")
    leases.acquire(ctx, "tenant", "vm", count=3)
    counts = assert_exact(ctx)
    [placement] = fleet.place(ctx, "tenant", 1)
    assert placement.free == sum(counts.values()) == 5
    with pytest.raises(Exception, match="6 free VFs"):
        fleet.place(ctx, "tenant", 6)


@pytest.fixture
def pg_ctx(pg_migrated_url: str, make_sim: Callable[..., SimHost]) -> Iterator[Context]:
    with open_context(db=pg_migrated_url, sim=make_sim().root) as context:
        yield context


def test_postgresql_recount_waits_for_a_vf_change_in_flight(pg_ctx: Context) -> None:
    """A recount (here a new vfs_per_pf) that starts while another transaction has changed a
    VF of the range but not committed must wait for it and count it; counting from the
    snapshot it started with would leave the kept count one off for good."""
    define(pg_ctx, "tenant", [PF], 8)
    pools.start(pg_ctx, "tenant")
    engine = pg_ctx.store.engine
    changer = engine.connect()
    changer.begin()
    changer.execute(text("UPDATE vfs SET state = 'unusable' WHERE \"index\" = 2"))
    done = threading.Event()

    def resize() -> None:
        with engine.begin() as connection:
            connection.execute(text("UPDATE pools SET vfs_per_pf = 6"))
        done.set()

    worker = threading.Thread(target=resize)
    worker.start()
    time.sleep(0.5)
    assert not done.is_set(), "the recount did not wait for the VF change in flight"
    changer.commit()
    changer.close()
    worker.join(timeout=30)
    assert done.is_set()
    assert assert_exact(pg_ctx) == {("tenant", PF_PCI): 5}


def test_postgresql_concurrent_acquires_and_releases_keep_the_counts(
        pg_ctx: Context, pg_migrated_url: str, tmp_path: Path) -> None:
    define(pg_ctx, "tenant", [PF, "enp133s0f0"], 8)
    pools.start(pg_ctx, "tenant")
    root = pg_ctx.kernel.root
    errors: list[BaseException] = []

    def churn(owner: str) -> None:
        try:
            with open_context(db=pg_migrated_url, sim=root) as mine:
                for _ in range(6):
                    taken = leases.acquire(mine, "tenant", owner, count=2)
                    for lease in taken:
                        leases.release(mine, lease.id, token=lease.token)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=churn, args=(f"vm{n}",)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    assert sum(assert_exact(pg_ctx).values()) == 16
