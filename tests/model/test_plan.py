"""vfpool/model/plan.py on plain snapshots: what `pool start`, `pool resize`, `pool destroy`
and `reconcile` decide, with no host, simulator or store.

The PFs are 82599-like (ixgbe, 63 VFs); see tests/model/plans.py for the builders.
"""

from __future__ import annotations

import pytest

from tests.model.plans import PF0, PF1, lease, pf, use, vf_pci
from vfpool.errors import Conflict
from vfpool.model.drivers import DRIVERS
from vfpool.model.pci import PciAddress
from vfpool.model.plan import (
    Repair,
    VfRow,
    in_place,
    in_place_or_more,
    netdevs_missing,
    owners,
    plan_inventory,
    plan_module,
    plan_repairs,
    plan_sysfs,
    wanted_autoprobe,
    wanted_count,
)
from vfpool.model.snapshot import PfSnapshot, VfSnapshot
from vfpool.store.states import Method, Mode

IGB, MLX4 = DRIVERS["igb"], DRIVERS["mlx4_core"]
I40E0 = PciAddress.parse("0000:85:00.0")  # not one of igb's ports


# --------------------------------------------------------------------------- sizing a PF
def test_wanted_count_covers_every_pool_on_the_pf_active_or_not() -> None:
    low = use("low", 1, 4, vf_range="0-7")
    high = use("high", 2, 2, vf_range="8-15")  # uses 8 and 9
    assert wanted_count([low]) == 4
    assert wanted_count([low, high]) == 10
    assert wanted_count([high]) == 10  # a range starting at 8 needs VFs 0-7 to exist too
    assert wanted_count([use("whole", 3, 6)]) == 6
    assert wanted_count([]) == 0


def test_autoprobe_is_on_when_any_pool_on_the_pf_needs_netdevs() -> None:
    vfio = use("v", 1, 2, mode=Mode.VFIO)
    assert wanted_autoprobe([vfio]) is False
    assert wanted_autoprobe([vfio, use("m", 2, 2, mode=Mode.MACVTAP, vf_range="8-9")]) is True
    assert wanted_autoprobe([use("n", 3, 2, mode=Mode.NETDEV)]) is True
    assert wanted_autoprobe([]) is False


def test_owners_are_named_once_each_in_order() -> None:
    held = [lease(1, "p", "vm2", PF0, 0), lease(2, "p", "vm1", PF0, 1),
            lease(3, "p", "vm2", PF0, 2)]
    assert owners(held) == "vm1, vm2"
    assert owners([]) == ""


def test_netdevs_missing_looks_at_the_pools_range_and_skips_leased_vfs() -> None:
    host = pf(numvfs=8, bare=(1, 2, 5))
    netdev_pool = use("n", 1, 4)  # VFs 0-3
    assert [vf.index for vf in netdevs_missing(host, netdev_pool)] == [1, 2]
    # A leased VF's driver is its lease's business (vfio-pci leaves it without a netdev).
    assert [vf.index for vf in netdevs_missing(host, netdev_pool, [str(vf_pci(PF0, 1))])] == [2]
    assert netdevs_missing(host, use("v", 2, 4, mode=Mode.VFIO)) == []
    ranged = use("r", 3, 2, vf_range="4-7")  # VFs 4 and 5
    assert [vf.index for vf in netdevs_missing(host, ranged)] == [5]


def test_in_place_needs_the_exact_count_present_with_netdevs() -> None:
    netdev_pool = use("n", 1, 4)
    assert in_place(pf(numvfs=4), 4, netdev_pool)
    assert not in_place(pf(numvfs=5), 4, netdev_pool)  # more is not "in place" for start
    assert not in_place(pf(numvfs=4, present=3), 4, netdev_pool)  # one VF not there yet
    assert not in_place(pf(numvfs=4, bare=(3,)), 4, netdev_pool)
    assert in_place(pf(numvfs=4, bare=(3,)), 4, netdev_pool, [str(vf_pci(PF0, 3))])
    assert in_place(pf(numvfs=4, bare=(0, 1, 2, 3)), 4, use("v", 2, 4, mode=Mode.VFIO))


def test_in_place_or_more_is_what_an_active_pool_needs() -> None:
    assert in_place_or_more(pf(numvfs=4), 4)
    assert in_place_or_more(pf(numvfs=6), 4)
    assert not in_place_or_more(pf(numvfs=3), 4)
    assert not in_place_or_more(pf(numvfs=6, present=5), 4)  # a VF the host lost
    assert not in_place_or_more(None, 4)  # the PF itself is gone
    assert in_place_or_more(pf(numvfs=0), 0)


# --------------------------------------------------------------------------- plan_sysfs
def test_a_pf_in_place_needs_no_change() -> None:
    n = use("n", 1, 4)
    step = plan_sysfs(pf(numvfs=4), [n], n, [], allow_disruption=False)
    assert (step.wanted, step.resize, step.autoprobe, step.probe, step.resets) == (
        4, False, None, (), ())
    assert not step.changes


def test_an_empty_pf_is_sized_and_autoprobe_set_for_the_mode() -> None:
    vfio = use("v", 1, 3, mode=Mode.VFIO)
    step = plan_sysfs(pf(numvfs=0, autoprobe=True), [vfio], vfio, [], allow_disruption=False)
    assert (step.wanted, step.resize, step.autoprobe, step.resets) == (3, True, False, ())
    assert step.changes
    # autoprobe already right: left alone.
    step = plan_sysfs(pf(numvfs=0, autoprobe=False), [vfio], vfio, [], allow_disruption=False)
    assert (step.resize, step.autoprobe) == (True, None)
    netdev_pool = use("n", 1, 3)
    step = plan_sysfs(pf(numvfs=0, autoprobe=False), [netdev_pool], netdev_pool, [],
                      allow_disruption=False)
    assert (step.resize, step.autoprobe) == (True, True)


def test_a_shared_pf_is_sized_for_every_pool_at_the_first_start() -> None:
    low = use("low", 1, 4, vf_range="0-7")
    high = use("high", 2, 8, vf_range="8-15")
    step = plan_sysfs(pf(numvfs=0), [low, high], low, [], allow_disruption=False)
    assert (step.wanted, step.resize) == (16, True)
    # The second pool then finds its VFs already there: no trip through 0 VFs.
    started = use("low", 1, 4, vf_range="0-7", active=True)
    step = plan_sysfs(pf(numvfs=16), [started, high], high, [lease(1, "low", "vm1", PF0, 0)],
                      allow_disruption=False)
    assert not step.changes


def test_pools_splitting_a_pf_between_vfio_and_netdevs_start_in_either_order() -> None:
    vfio = use("v", 1, 4, mode=Mode.VFIO, vf_range="0-3")
    mac = use("m", 2, 4, mode=Mode.MACVTAP, vf_range="4-7")
    # vfio started first with autoprobe off: all 8 VFs exist, none has a netdev.
    host = pf(numvfs=8, autoprobe=False, bare=range(8))
    step = plan_sysfs(host, [vfio, mac], mac, [], allow_disruption=False)
    assert step.resize is False  # the vfio pool's VFs stay where they are
    assert step.autoprobe is True
    assert step.probe == tuple(vf_pci(PF0, index) for index in range(4, 8))
    # macvtap first: the vfio pool finds its VFs in place (their netdevs do not matter).
    host = pf(numvfs=8, autoprobe=True)
    assert not plan_sysfs(host, [vfio, mac], vfio, [], allow_disruption=False).changes


def test_probing_skips_leased_vfs_and_keeps_autoprobe_when_it_is_on() -> None:
    n = use("n", 1, 4, active=True)
    host = pf(numvfs=4, autoprobe=True, bare=(1, 2))
    held = [lease(7, "n", "vm1", PF0, 1)]
    step = plan_sysfs(host, [n], n, held, allow_disruption=False)
    assert (step.resize, step.autoprobe, step.probe) == (False, None, (vf_pci(PF0, 2),))


def test_resizing_through_zero_is_refused_while_another_active_pool_is_on_the_pf() -> None:
    other = use("other", 2, 4, vf_range="0-7", active=True)
    mine = use("mine", 1, 4, vf_range="8-15")
    with pytest.raises(Conflict) as caught:
        plan_sysfs(pf(numvfs=4), [other, mine], mine, [], allow_disruption=True)
    assert str(caught.value) == (
        "PF 0000:05:00.0 (enp5s0f0) must go through 0 VFs to reach 12, which would remove "
        "the VFs of active pool 'other'; destroy it first")
    # The same pool inactive holds no VFs anyone relies on.
    idle = use("other", 2, 4, vf_range="0-7")
    step = plan_sysfs(pf(numvfs=4), [idle, mine], mine, [], allow_disruption=False)
    assert (step.wanted, step.resize) == (12, True)


def test_resizing_a_pf_with_leases_needs_allow_disruption_and_resets_them() -> None:
    """Growing or shrinking an active pool's own PF takes it through 0 VFs."""
    n = use("n", 1, 6, active=True)
    held = [lease(1, "n", "vm2", PF0, 0), lease(2, "n", "vm1", PF0, 3)]
    with pytest.raises(Conflict) as caught:
        plan_sysfs(pf(numvfs=4), [n], n, held, allow_disruption=False)
    assert str(caught.value) == (
        "PF 0000:05:00.0 (enp5s0f0) must go through 0 VFs to reach 6, which would take away "
        "leased VFs (owners: vm1, vm2); release them first, or pass --allow-disruption to "
        "reset them (their leases become lost)")
    step = plan_sysfs(pf(numvfs=4), [n], n, held, allow_disruption=True)
    assert (step.wanted, step.resize, step.resets) == (6, True, tuple(held))
    # Shrinking is the same trip (the service refuses a shrink below a leased VF earlier).
    smaller = use("n", 1, 2, active=True)
    step = plan_sysfs(pf(numvfs=4), [smaller], smaller, [], allow_disruption=False)
    assert (step.wanted, step.resize, step.resets) == (2, True, ())


def test_a_pf_whose_vfs_are_not_all_there_is_resized() -> None:
    n = use("n", 1, 4)
    step = plan_sysfs(pf(numvfs=4, present=2), [n], n, [], allow_disruption=False)
    assert (step.wanted, step.resize) == (4, True)


# --------------------------------------------------------------------------- plan_module
def igb_ports(*, link1: str = "down", numvfs: int = 0,
              autoprobe: bool = True) -> list[PfSnapshot]:
    return [pf(PF0, numvfs, driver="igb", autoprobe=autoprobe, totalvfs=8),
            pf(PF1, numvfs, driver="igb", link=link1, autoprobe=autoprobe, totalvfs=8)]


def test_no_reload_when_the_pools_pfs_have_the_count() -> None:
    a = use("a", 1, 3, method=Method.MODULE_PARAM)
    ports = igb_ports(numvfs=3)
    assert plan_module(IGB, ports, [str(PF0)], 3, a, {str(PF0): [a]}, [],
                       allow_disruption=False) is None
    # Emptying always reloads (to 0 VFs), even where the count already matches.
    step = plan_module(IGB, igb_ports(numvfs=0), [str(PF0)], 0, a, {str(PF0): [a]}, [],
                       allow_disruption=False, emptying=True)
    assert step is not None and (step.count, step.options) == (0, "max_vfs=0")


def test_a_reload_sets_one_count_for_every_port_and_flips_autoprobe() -> None:
    a = use("a", 1, 3, method=Method.MODULE_PARAM, mode=Mode.VFIO)
    ports = igb_ports(autoprobe=True)
    step = plan_module(IGB, ports, [str(PF0)], 3, a, {str(PF0): [a], str(PF1): []}, [],
                       allow_disruption=False)
    assert step is not None
    assert (step.count, step.options, step.netdevs, step.resets) == (3, "max_vfs=3", False, ())
    assert step.ports == tuple(ports)
    assert step.autoprobe == tuple(ports)  # vfio: both ports' autoprobe goes off first


def test_mlx4_takes_one_array_parameter_and_flips_nothing() -> None:
    m = use("m", 1, 4, method=Method.MODULE_PARAM, mode=Mode.VFIO)
    port = pf(PF0, 0, driver="mlx4_core", autoprobe=True)
    step = plan_module(MLX4, [port], [str(PF0)], 4, m, {str(PF0): [m]}, [],
                       allow_disruption=False)
    assert step is not None
    assert (step.options, step.autoprobe) == ("num_vfs=4 probe_vf=0", ())
    n = use("m", 1, 4, method=Method.MODULE_PARAM, mode=Mode.NETDEV)
    step = plan_module(MLX4, [port], [str(PF0)], 4, n, {str(PF0): [n]}, [],
                       allow_disruption=False)
    assert step is not None and step.options == "num_vfs=4 probe_vf=4"


def test_the_reload_guard_counts_an_inactive_pools_port_that_is_up() -> None:
    a = use("a", 1, 3, method=Method.MODULE_PARAM)
    idle = use("b", 2, 3, method=Method.MODULE_PARAM)  # defined on the other port, inactive
    uses = {str(PF0): [a], str(PF1): [idle]}
    with pytest.raises(Conflict) as caught:
        plan_module(IGB, igb_ports(link1="up"), [str(PF0)], 3, a, uses, [],
                    allow_disruption=False)
    assert str(caught.value) == (
        "reloading igb takes down every port it serves: interfaces enp5s0f1 are up and not "
        "in an active vfpool pool; pass --allow-disruption to reload anyway")
    # The port down, or the other pool active, or --allow-disruption: no refusal.
    assert plan_module(IGB, igb_ports(), [str(PF0)], 3, a, uses, [],
                       allow_disruption=False) is not None
    active = {str(PF0): [a], str(PF1): [use("b", 2, 3, method=Method.MODULE_PARAM,
                                            active=True)]}
    assert plan_module(IGB, igb_ports(link1="up"), [str(PF0)], 3, a, active, [],
                       allow_disruption=False) is not None
    assert plan_module(IGB, igb_ports(link1="up"), [str(PF0)], 3, a, uses, [],
                       allow_disruption=True) is not None


def test_the_reload_guard_names_leases_on_every_port_and_resets_them_when_allowed() -> None:
    a = use("a", 1, 3, method=Method.MODULE_PARAM)
    other = use("b", 2, 2, method=Method.MODULE_PARAM, active=True)
    uses = {str(PF0): [a], str(PF1): [other]}
    on_igb = lease(4, "b", "vm9", PF1, 1)
    elsewhere = lease(5, "x", "vm8", I40E0, 0)
    ports = igb_ports(link1="up", numvfs=2)
    # Another active pool would get another count: refused whatever --allow-disruption says.
    for allow in (False, True):
        with pytest.raises(Conflict) as caught:
            plan_module(IGB, ports, [str(PF0)], 3, a, uses, [on_igb, elsewhere],
                        allow_disruption=allow)
        assert str(caught.value) == (
            "reloading igb would re-create PF 0000:05:00.1 (enp5s0f1) with 3 VFs, but active "
            "pool 'b' needs 2 there; destroy it first")
    same = {str(PF0): [a], str(PF1): [use("b", 2, 3, method=Method.MODULE_PARAM,
                                          active=True)]}
    with pytest.raises(Conflict) as caught:
        plan_module(IGB, igb_ports(link1="up", numvfs=2), [str(PF0)], 3, a, same,
                    [on_igb, elsewhere], allow_disruption=False)
    assert str(caught.value) == (
        f"reloading igb takes down every port it serves: VFs {on_igb.vf_pci} are leased "
        "(owners: vm9); pass --allow-disruption to reload anyway")
    step = plan_module(IGB, igb_ports(link1="up", numvfs=2), [str(PF0)], 3, a, same,
                       [on_igb, elsewhere], allow_disruption=True)
    assert step is not None and step.resets == (on_igb,)  # only the driver's own leases


def test_both_guard_problems_are_named_in_one_refusal() -> None:
    a = use("a", 1, 3, method=Method.MODULE_PARAM)
    uses = {str(PF0): [a], str(PF1): []}
    held = lease(1, "a", "vm1", PF0, 0)
    with pytest.raises(Conflict) as caught:
        plan_module(IGB, igb_ports(link1="up", numvfs=2), [str(PF0)], 3, a, uses, [held],
                    allow_disruption=False)
    assert str(caught.value) == (
        "reloading igb takes down every port it serves: interfaces enp5s0f1 are up and not "
        f"in an active vfpool pool; VFs {held.vf_pci} are leased (owners: vm1); pass "
        "--allow-disruption to reload anyway")


# --------------------------------------------------------------------------- plan_inventory
def _listed(vfs: tuple[VfSnapshot, ...]) -> list[tuple[int, str, str | None]]:
    return [(vf.index, str(vf.pci), vf.netdev) for vf in vfs]


def test_inventory_adds_updates_and_brings_back_present_vfs() -> None:
    host = pf(numvfs=6, bare=(2,))
    rows = {0: ("free", None), 1: ("unusable", "missing on host"),
            2: ("unusable", "restore failed: EIO"), 3: ("unusable", "removed")}
    plan = plan_inventory(host, range(0, 5), rows, held=[3])
    assert _listed(plan.seen) == [
        (0, str(vf_pci(PF0, 0)), "enp5s0f0v0"),
        (2, str(vf_pci(PF0, 2)), None),  # unusable for a reason
        (3, str(vf_pci(PF0, 3)), "enp5s0f0v3"),  # a lease holds it
    ]
    assert _listed(plan.back) == [(1, str(vf_pci(PF0, 1)), "enp5s0f0v1")]
    assert _listed(plan.added) == [(4, str(vf_pci(PF0, 4)), "enp5s0f0v4")]
    assert (plan.vanished, plan.deleted) == ((), ())  # VF 5 is outside the range: not the pool's


def test_inventory_deletes_rows_of_gone_vfs_unless_a_lease_holds_them() -> None:
    host = pf(numvfs=4, present=2)
    rows = {index: (state, None) for index, state in
            enumerate(("free", "free", "free", "leased"))} | {4: ("reserved", None)}
    plan = plan_inventory(host, range(0, 5), rows, held=[3, 4])
    assert (plan.deleted, plan.vanished) == ((2,), (3, 4))
    assert [vf.index for vf in plan.seen] == [0, 1]
    assert (plan.added, plan.back) == ((), ())


def test_inventory_of_a_range_starts_at_its_first_index() -> None:
    host = pf(numvfs=12)
    plan = plan_inventory(host, range(8, 10), {}, held=[])
    assert [(vf.index, str(vf.pci)) for vf in plan.added] == [
        (8, str(vf_pci(PF0, 8))), (9, str(vf_pci(PF0, 9)))]
    assert plan.seen == plan.back == ()


# --------------------------------------------------------------------------- plan_repairs
def row(index: int, state: str = "free", reason: str | None = None,
        lease_id: int | None = None) -> VfRow:
    return VfRow(index, str(vf_pci(PF0, index)), state, reason, lease_id)


def test_nothing_to_repair_when_store_and_host_agree() -> None:
    rows = {0: row(0), 1: row(1, "leased", lease_id=3)}
    assert plan_repairs("p", str(PF0), range(2), pf(numvfs=2), rows) == []


def test_repairs_missing_back_added_and_short() -> None:
    host = pf(numvfs=3)  # the pool needs 4
    rows = {0: row(0, "unusable", "removed"),  # back on the host, no lease: back
            1: row(1, "unusable", "missing on host", lease_id=9),  # back, but a lease names it
            3: row(3, "leased", lease_id=5)}  # gone: missing, its lease is lost
    assert plan_repairs("p", str(PF0), range(4), host, rows) == [
        Repair("short", "p", str(PF0), numvfs=3, needed=4),
        Repair("back", "p", str(PF0), 0, str(vf_pci(PF0, 0)), "enp5s0f0v0"),
        Repair("missing", "p", str(PF0), 3, str(vf_pci(PF0, 3)), lease=5),
        Repair("added", "p", str(PF0), 2, str(vf_pci(PF0, 2)), "enp5s0f0v2"),
    ]


def test_a_gone_pf_loses_every_vf_not_already_marked_absent() -> None:
    rows = {0: row(0, "leased", lease_id=1), 1: row(1, "unusable", "missing on host"),
            2: row(2, "unusable", "restore failed: EIO")}
    assert plan_repairs("p", str(PF0), range(3), None, rows) == [
        Repair("missing", "p", str(PF0), 0, str(vf_pci(PF0, 0)), lease=1),
        Repair("missing", "p", str(PF0), 2, str(vf_pci(PF0, 2))),
    ]


def test_repairs_look_only_at_the_pools_range() -> None:
    host = pf(numvfs=16)
    rows = {8: row(8)}
    assert plan_repairs("hi", str(PF0), range(8, 10), host, rows) == [
        Repair("added", "hi", str(PF0), 9, str(vf_pci(PF0, 9)), "enp5s0f0v9")]

