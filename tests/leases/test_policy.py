"""The allocation policy (DESIGN.md, issue 4): the requested NUMA node first (and say when it is
not met), the lowest free index first in pool order, `--spread` across PFs, all K or none, and
the exit codes of a pool that cannot serve.

Default simulated host: 82599 at 0000:05:00.0 (enp5s0f0) on NUMA 0, X710 at 0000:85:00.0
(enp133s0f0) on NUMA 1.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.leases.test_acquire import I40E0, IXGBE0, lease_rows, start_pool, vf_states
from vfpool.errors import Conflict, Exhausted, NotFound
from vfpool.service import leases, pools
from vfpool.service.context import Context
from vfpool.sim.host import SimHost


def where(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(record.pf.pci, record.vf.index) for record in records]


# --------------------------------------------------------------------------- lowest index
def test_lowest_free_index_first_and_a_freed_index_is_reused_first(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=4)
    records = [leases.acquire(ctx, "net", f"vm{n}")[0] for n in range(3)]
    assert where(records) == [(IXGBE0, 0), (IXGBE0, 1), (IXGBE0, 2)]
    leases.release(ctx, records[1].id, token=records[1].token)
    assert where(leases.acquire(ctx, "net", "vm9")) == [(IXGBE0, 1)]
    assert where(leases.acquire(ctx, "net", "vm9")) == [(IXGBE0, 3)]


def test_pfs_are_used_in_pool_order(ctx: Context) -> None:
    # The X710 is listed first, so its VFs go first, whatever the PCI order.
    start_pool(ctx, "two", "enp133s0f0", "enp5s0f0", vfs=2)
    assert where(leases.acquire(ctx, "two", "vm1", count=3)) == [
        (I40E0, 0), (I40E0, 1), (IXGBE0, 0)]


def test_a_vf_range_is_respected(ctx: Context) -> None:
    start_pool(ctx, "ranged", "enp5s0f0#4-7", vfs=2)
    assert where(leases.acquire(ctx, "ranged", "vm1", count=2)) == [(IXGBE0, 4), (IXGBE0, 5)]
    with pytest.raises(Exhausted):
        leases.acquire(ctx, "ranged", "vm1")


def test_spread_takes_the_lowest_index_of_each_pf_in_turn(ctx: Context) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=2)
    records = leases.acquire(ctx, "two", "vm1", count=3, spread=True)
    assert where(records) == [(IXGBE0, 0), (I40E0, 0), (IXGBE0, 1)]


# --------------------------------------------------------------------------- NUMA
def test_no_numa_request_reports_numa_met_null(ctx: Context) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=1)
    [record] = leases.acquire(ctx, "two", "vm1")
    assert record.numa_met is None
    assert record.numa_node == 0


def test_the_requested_numa_node_comes_before_pool_order(ctx: Context) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=2)
    records = leases.acquire(ctx, "two", "vm1", count=2, numa_node=1)
    assert where(records) == [(I40E0, 0), (I40E0, 1)]
    assert [(record.numa_node, record.numa_met) for record in records] == [(1, True)] * 2
    [on_zero] = leases.acquire(ctx, "two", "vm2", numa_node=0)
    assert (where([on_zero]), on_zero.numa_met) == ([(IXGBE0, 0)], True)


def test_numa_not_met_falls_back_and_says_so(ctx: Context) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=2)
    # One VF left on NUMA 1: the rest come from NUMA 0, and the result says it is not met.
    leases.acquire(ctx, "two", "vm0", numa_node=1)
    records = leases.acquire(ctx, "two", "vm1", count=2, numa_node=1)
    assert where(records) == [(I40E0, 1), (IXGBE0, 0)]
    assert [record.numa_met for record in records] == [False, False]
    # NUMA 1 is full now.
    [fallback] = leases.acquire(ctx, "two", "vm2", numa_node=1)
    assert (where([fallback]), fallback.numa_node, fallback.numa_met) == (
        [(IXGBE0, 1)], 0, False)


def test_a_numa_node_the_pool_does_not_have_is_not_met(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    [record] = leases.acquire(ctx, "net", "vm1", numa_node=3)
    assert (record.numa_node, record.numa_met) == (0, False)


# --------------------------------------------------------------------------- all or none
def test_count_above_the_free_vfs_gets_none_and_exit_5(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=2)
    [kept] = leases.acquire(ctx, "two", "vm0")
    before = {pf: sim.vf_configs(pf) for pf in ("enp5s0f0", "enp133s0f0")}
    with pytest.raises(Exhausted) as caught:
        leases.acquire(ctx, "two", "vm1", count=4)
    assert str(caught.value) == "pool 'two' has 3 free VF(s); 4 requested"
    assert caught.value.exit_code == 5
    assert [row.id for row in lease_rows(ctx)] == [kept.id]
    assert {pf: sim.vf_configs(pf) for pf in before} == before
    assert sorted(state for state, _ in vf_states(ctx).values()) == ["free"] * 3 + ["leased"]
    assert len(leases.acquire(ctx, "two", "vm1", count=3)) == 3


# --------------------------------------------------------------------------- unservable pools
def test_an_unknown_pool_is_exit_3(ctx: Context) -> None:
    with pytest.raises(NotFound) as caught:
        leases.acquire(ctx, "nope", "vm1")
    assert (str(caught.value), caught.value.exit_code) == ("no pool named 'nope'", 3)


def test_an_inactive_pool_is_exit_4(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2)
    pools.destroy(ctx, "net")
    with pytest.raises(Conflict) as caught:
        leases.acquire(ctx, "net", "vm1")
    assert str(caught.value) == ("pool 'net' is not active; start it with `vfpool pool start "
                                 "net`")
    assert caught.value.exit_code == 4
    assert lease_rows(ctx) == []


def test_an_exhausted_pool_is_exit_5(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    leases.acquire(ctx, "net", "vm1")
    with pytest.raises(Exhausted) as caught:
        leases.acquire(ctx, "net", "vm2")
    assert (str(caught.value), caught.value.exit_code) == (
        "pool 'net' has 0 free VF(s); 1 requested", 5)
