"""`pool start`, `destroy`, `autostart`, `resize`, `list` and `info` at service level (sysfs
pools on the default host: 82599/ixgbe and X710/i40e), checking the host and the store after
every step. Module-param pools are in test_module_param.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.pools import (
    DEFAULTS_KEYS,
    I40E0,
    I40E1,
    IXGBE0,
    IXGBE1,
    PF_KEYS,
    POOL_KEYS,
    VFS_KEYS,
    actions,
    define,
    events,
    host_pf,
    host_vfs,
    numvfs,
    numvfs_path,
    pending_faults,
    pool_state,
    vf_rows,
)
from vfpool.errors import Conflict, InvalidInput, NotFound
from vfpool.host import sriov
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.service import pools
from vfpool.service.context import Context, open_context
from vfpool.service.results import VfCounts
from vfpool.sim.host import SimHost

T = 0.5  # seconds to wait for VFs; only faults make a test wait that long


def _presize(sim: SimHost, pci: str, count: int, *, autoprobe: bool = True) -> None:
    """Give a PF VFs behind vfpool's back, as an admin with `echo N > sriov_numvfs` would."""
    sysfs = Sysfs(sim)
    pf = sysfs.pf(PciAddress.parse(pci))
    sriov.write_autoprobe(sysfs, pf, autoprobe)
    sriov.write_numvfs(sysfs, pf, count)


# --------------------------------------------------------------------------- start
def test_start_vfio_sizes_the_pfs_leaves_vfs_unbound_and_inventories_them(
        ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", "enp5s0f0", "enp133s0f0", vfs=3)
    record = pools.start(ctx, "a", timeout=T)
    assert (record.state, record.already_active) == ("active", False)
    assert record.changed == (IXGBE0, I40E0)
    assert record.vfs == VfCounts(total=6, free=6)
    for pci in (IXGBE0, I40E0):
        pf = host_pf(sim, pci)
        assert (pf.numvfs, pf.drivers_autoprobe) == (3, False)
        assert [(vf.driver, vf.netdevs) for vf in pf.vfs] == [(None, ())] * 3
    # The inventory is the host's VFs, keyed by PCI address.
    assert [(pf, index, bdf) for pf, index, bdf, _, _ in vf_rows(ctx)] == [
        (IXGBE0, index, bdf) for index, bdf in host_vfs(sim, IXGBE0)] + [
        (I40E0, index, bdf) for index, bdf in host_vfs(sim, I40E0)]
    assert {(netdev, state) for *_, netdev, state in vf_rows(ctx)} == {(None, "free")}
    assert pool_state(ctx, "a") == "active"
    # The other PFs are untouched.
    assert (numvfs(sim, IXGBE1), numvfs(sim, I40E1)) == (0, 0)


@pytest.mark.parametrize("mode", ["macvtap", "netdev"])
def test_start_netdev_modes_probe_the_vfs_and_record_their_netdevs(
        ctx: Context, sim: SimHost, mode: str) -> None:
    define(ctx, "a", "enp5s0f1", vfs=2, mode=mode)
    pools.start(ctx, "a", timeout=T)
    pf = host_pf(sim, IXGBE1)
    assert pf.drivers_autoprobe is True
    assert [(vf.driver, vf.netdev) for vf in pf.vfs] == [
        ("ixgbevf", "enp5s0f1v0"), ("ixgbevf", "enp5s0f1v1")]
    assert vf_rows(ctx) == [(IXGBE1, 0, "0000:05:10.1", "enp5s0f1v0", "free"),
                            (IXGBE1, 1, "0000:05:10.3", "enp5s0f1v1", "free")]


def test_start_of_a_vfio_pool_sets_autoprobe_back_to_0(ctx: Context, sim: SimHost) -> None:
    _presize(sim, IXGBE0, 2, autoprobe=True)
    define(ctx, "a", IXGBE0, vfs=4)
    pools.start(ctx, "a", timeout=T)
    pf = host_pf(sim, IXGBE0)
    assert (pf.numvfs, pf.drivers_autoprobe) == (4, False)
    assert {vf.driver for vf in pf.vfs} == {None}


def test_start_goes_through_zero_when_the_count_differs(ctx: Context, sim: SimHost) -> None:
    # The kernel refuses nonzero -> nonzero with EBUSY, so only N -> 0 -> M can succeed.
    _presize(sim, IXGBE0, 2)
    define(ctx, "a", IXGBE0, vfs=5, mode="netdev")
    record = pools.start(ctx, "a", timeout=T)
    assert record.changed == (IXGBE0,)
    assert numvfs(sim, IXGBE0) == 5
    assert [index for _, index, *_ in vf_rows(ctx)] == [0, 1, 2, 3, 4]
    [resize_event] = [e for e in events(ctx) if e.action == "pf.resize"]
    assert (resize_event.pool, resize_event.pf, resize_event.detail) == ("a", IXGBE0,
                                                                        {"numvfs": 5})


def test_start_writes_nothing_when_the_pf_is_already_right(ctx: Context, sim: SimHost) -> None:
    _presize(sim, IXGBE0, 4)
    define(ctx, "a", IXGBE0, vfs=4, mode="netdev")
    # Any write to sriov_numvfs would now fail: the start must not make one.
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=5)
    record = pools.start(ctx, "a", timeout=T)
    assert (record.state, record.changed) == ("active", ())
    assert len(pending_faults(sim)) == 1
    assert "pf.resize" not in actions(ctx)
    assert [index for _, index, *_ in vf_rows(ctx)] == [0, 1, 2, 3]


def test_start_is_idempotent(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    pools.start(ctx, "a", timeout=T)
    before = (vf_rows(ctx), actions(ctx), host_vfs(sim, IXGBE0))
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=5)
    record = pools.start(ctx, "a", timeout=T)
    assert (record.state, record.already_active) == ("active", True)
    assert (vf_rows(ctx), actions(ctx), host_vfs(sim, IXGBE0)) == before
    assert len(pending_faults(sim)) == 1


def test_start_unknown_pool(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.start(ctx, "nope", timeout=T)


def test_start_with_a_range_uses_the_first_n_indices_of_it(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", "enp133s0f1#8-15", vfs=3)
    pools.start(ctx, "a", timeout=T)
    assert numvfs(sim, I40E1) == 11  # range start + N
    assert [index for _, index, *_ in vf_rows(ctx)] == [8, 9, 10]
    assert pools.info(ctx, "a").vfs.total == 3


def test_two_pools_share_a_pf_through_disjoint_ranges(ctx: Context, sim: SimHost) -> None:
    define(ctx, "low", "enp133s0f1#0-7", vfs=4)
    define(ctx, "high", "enp133s0f1#8-15", vfs=2)
    pools.start(ctx, "high", timeout=T)
    record = pools.start(ctx, "low", timeout=T)
    assert record.changed == ()  # the PF already has the 10 VFs both need
    assert numvfs(sim, I40E1) == 10
    assert pools.info(ctx, "low").vfs.total == 4
    assert pools.info(ctx, "high").vfs.total == 2
    assert [index for _, index, *_ in vf_rows(ctx)] == [0, 1, 2, 3, 8, 9]
    # Destroying one keeps the VFs that the other still uses.
    pools.destroy(ctx, "low")
    assert numvfs(sim, I40E1) == 10
    assert pools.info(ctx, "high").vfs.total == 2
    pools.destroy(ctx, "high")
    assert numvfs(sim, I40E1) == 0
    assert vf_rows(ctx, I40E1) == []


# --------------------------------------------------------------------------- destroy
def test_destroy_returns_the_vfs_to_zero_and_deactivates(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", "enp5s0f0", "enp133s0f0", vfs=3, mode="netdev")
    pools.start(ctx, "a", timeout=T)
    record = pools.destroy(ctx, "a")
    assert (record.state, record.released) == ("inactive", ())
    assert record.vfs.total == 0
    assert (numvfs(sim, IXGBE0), numvfs(sim, I40E0)) == (0, 0)
    assert vf_rows(ctx) == []
    [event] = [e for e in events(ctx) if e.action == "pool.destroy"]
    assert event.detail is not None
    assert (event.detail["force"], event.detail["keep_vfs"]) == (False, False)
    assert sorted(event.detail["emptied"]) == [IXGBE0, I40E0]


def test_destroy_keep_vfs_leaves_the_host_alone(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=3)
    pools.start(ctx, "a", timeout=T)
    vfs_before = host_vfs(sim, IXGBE0)
    record = pools.destroy(ctx, "a", keep_vfs=True)
    assert record.state == "inactive"
    assert host_vfs(sim, IXGBE0) == vfs_before
    # A later start finds the PF in place and writes nothing.
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=5)
    assert pools.start(ctx, "a", timeout=T).changed == ()
    assert host_vfs(sim, IXGBE0) == vfs_before


def test_destroy_force_without_leases_is_a_plain_destroy(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=3)
    pools.start(ctx, "a", timeout=T)
    record = pools.destroy(ctx, "a", force=True)
    assert (record.state, record.released) == ("inactive", ())
    assert numvfs(sim, IXGBE0) == 0
    assert vf_rows(ctx) == []
    assert (events(ctx)[-1].action, (events(ctx)[-1].detail or {})["force"]) == (
        "pool.destroy", True)


def test_destroy_of_an_inactive_pool_is_a_conflict(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=3)
    with pytest.raises(Conflict, match=r"^pool 'a' is not active$"):
        pools.destroy(ctx, "a")
    assert actions(ctx) == ["pool.define"]


def test_destroy_unknown_pool(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.destroy(ctx, "nope")


def test_destroy_then_undefine_then_the_pfs_are_free(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=3)
    pools.start(ctx, "a", timeout=T)
    pools.destroy(ctx, "a")
    pools.undefine(ctx, "a")
    assert pools.list_pools(ctx, include_inactive=True) == []
    define(ctx, "b", IXGBE0, vfs=1)
    assert pools.start(ctx, "b", timeout=T).vfs.total == 1


# --------------------------------------------------------------------------- autostart
def test_autostart_toggles_and_writes_events(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=1)
    assert pools.set_autostart(ctx, "a", True).autostart is True
    assert pools.info(ctx, "a").autostart is True
    assert pools.set_autostart(ctx, "a", False).autostart is False
    assert pools.info(ctx, "a").autostart is False
    toggles = [e.detail for e in events(ctx) if e.action == "pool.autostart"]
    assert toggles == [{"enabled": True}, {"enabled": False}]


def test_autostart_unknown_pool(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.set_autostart(ctx, "nope", True)


def test_start_autostarted_starts_each_autostart_pool_and_reports_it(
        ctx: Context, sim: SimHost) -> None:
    define(ctx, "b", IXGBE0, vfs=2)
    define(ctx, "a", I40E0, vfs=2)
    define(ctx, "manual", IXGBE1, vfs=2)
    pools.set_autostart(ctx, "a", True)
    pools.set_autostart(ctx, "b", True)
    pools.start(ctx, "b", timeout=T)
    results = pools.start_autostarted(ctx, timeout=T)
    assert [result.document() for result in results] == [
        {"name": "a", "result": "started", "error": None},
        {"name": "b", "result": "already active", "error": None}]
    assert (pool_state(ctx, "a"), pool_state(ctx, "b"), pool_state(ctx, "manual")) == (
        "active", "active", "inactive")
    assert numvfs(sim, IXGBE1) == 0


def test_start_autostarted_with_none(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    assert pools.start_autostarted(ctx, timeout=T) == []
    assert pool_state(ctx, "a") == "inactive"


# --------------------------------------------------------------------------- resize
def test_resize_inactive_changes_only_the_definition(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=5)
    record = pools.resize(ctx, "a", 6, timeout=T)
    assert (record.state, record.vfs_per_pf) == ("inactive", 6)
    assert numvfs(sim, IXGBE0) == 0
    assert len(pending_faults(sim)) == 1
    assert vf_rows(ctx) == []
    assert 'vfs = 6\n' in pools.dumpconfig(ctx, "a")
    assert actions(ctx) == ["pool.define", "pool.resize"]
    assert events(ctx)[-1].detail == {"old": 2, "new": 6}


@pytest.mark.parametrize(("old", "new"), [(2, 5), (5, 2)])
def test_resize_active_changes_the_host_and_the_inventory(
        ctx: Context, sim: SimHost, old: int, new: int) -> None:
    define(ctx, "a", "enp5s0f0", "enp133s0f0", vfs=old, mode="netdev")
    pools.start(ctx, "a", timeout=T)
    first_rows = {(pf, index): bdf for pf, index, bdf, _, _ in vf_rows(ctx)}
    record = pools.resize(ctx, "a", new, timeout=T)
    assert (record.state, record.vfs_per_pf) == ("active", new)
    assert record.vfs.total == 2 * new
    for pci in (IXGBE0, I40E0):
        assert numvfs(sim, pci) == new
        assert [(index, bdf) for _, index, bdf, _, _ in vf_rows(ctx, pci)] == host_vfs(sim, pci)
    # VFs kept across the resize keep their addresses.
    for (pf, index), bdf in first_rows.items():
        if index < new:
            assert (pf, index, bdf) in [(p, i, b) for p, i, b, _, _ in vf_rows(ctx)]
    resizes = [(e.pf, (e.detail or {})["numvfs"]) for e in events(ctx)
               if e.action == "pf.resize"]
    assert resizes == [(IXGBE0, old), (I40E0, old), (IXGBE0, new), (I40E0, new)]
    assert actions(ctx)[-4:] == ["pool.resize", "pf.resize", "pf.resize", "pool.resize.apply"]


def test_resize_to_the_same_count_changes_nothing_on_the_host(ctx: Context,
                                                             sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=3)
    pools.start(ctx, "a", timeout=T)
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=5)
    assert pools.resize(ctx, "a", 3, timeout=T).changed == ()
    assert len(pending_faults(sim)) == 1


@pytest.mark.parametrize(("vfs", "message"), [
    (0, "--vfs must be 1-65535, not 0"),
    (64, "PF 0000:05:00.0 (enp5s0f0) supports at most 63 VFs; 64 requested"),
])
def test_resize_to_an_invalid_count(ctx: Context, sim: SimHost, vfs: int, message: str) -> None:
    define(ctx, "a", IXGBE0, vfs=3)
    pools.start(ctx, "a", timeout=T)
    with pytest.raises(InvalidInput) as caught:
        pools.resize(ctx, "a", vfs, timeout=T)
    assert str(caught.value) == message
    assert pools.info(ctx, "a").vfs_per_pf == 3
    assert numvfs(sim, IXGBE0) == 3
    assert "pool.resize" not in actions(ctx)


def test_resize_beyond_the_range(ctx: Context) -> None:
    define(ctx, "a", "enp133s0f1#0-7", vfs=3)
    with pytest.raises(InvalidInput) as caught:
        pools.resize(ctx, "a", 9, timeout=T)
    assert str(caught.value) == ("--vfs 9 does not fit VF range 0-7 of PF 0000:85:00.1 "
                                 "(enp133s0f1), which holds 8 VFs")


def test_resize_unknown_pool(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.resize(ctx, "nope", 2, timeout=T)


# --------------------------------------------------------------------------- list and info
def test_info_has_the_keys_of_design_md(ctx: Context) -> None:
    define(ctx, "a", "enp5s0f0", "enp133s0f1#8-15", vfs=2, vlan=5, qos=1, mtu=1500)
    record = pools.info(ctx, "a")
    assert set(record.document()) >= POOL_KEYS
    assert all(set(pf.document()) >= PF_KEYS for pf in record.pfs)
    assert set(record.vfs.as_dict()) == VFS_KEYS
    assert set(record.defaults.as_dict()) == DEFAULTS_KEYS
    assert record.defaults.as_dict() == {"vlan": 5, "qos": 1, "trust": None,
                                         "spoofchk": None, "min_tx_rate": None,
                                         "max_tx_rate": None, "mtu": 1500, "link_state": None}
    assert [{key: pf.document()[key] for key in PF_KEYS} for pf in record.pfs] == [
        {"pci": IXGBE0, "netdev": "enp5s0f0", "driver": "ixgbe", "numvfs": 0, "totalvfs": 63,
         "range": None},
        {"pci": I40E1, "netdev": "enp133s0f1", "driver": "i40e", "numvfs": 0, "totalvfs": 64,
         "range": "8-15"}]
    assert (record.state, record.method, record.mode, record.needs_start) == (
        "inactive", "auto", "vfio", False)


def test_list_shows_active_pools_and_all_with_include_inactive(ctx: Context) -> None:
    define(ctx, "b", IXGBE0, vfs=1)
    define(ctx, "a", IXGBE1, vfs=1)
    define(ctx, "c", I40E0, vfs=1)
    pools.start(ctx, "b", timeout=T)
    assert [r.name for r in pools.list_pools(ctx)] == ["b"]
    assert [(r.name, r.state) for r in pools.list_pools(ctx, include_inactive=True)] == [
        ("a", "inactive"), ("b", "active"), ("c", "inactive")]
    assert all(set(r.document()) >= POOL_KEYS
               for r in pools.list_pools(ctx, include_inactive=True))


def test_info_unknown_pool(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.info(ctx, "nope")


# --------------------------------------------------------------------------- events
def test_every_state_change_writes_an_event(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    pools.set_autostart(ctx, "a", True)
    pools.start(ctx, "a", timeout=T)
    pools.resize(ctx, "a", 3, timeout=T)
    pools.destroy(ctx, "a")
    pools.resize(ctx, "a", 1, timeout=T)
    pools.undefine(ctx, "a")
    assert actions(ctx) == [
        "pool.define", "pool.autostart", "pf.resize", "pool.start", "pool.resize",
        "pf.resize", "pool.resize.apply", "pool.destroy", "pool.resize", "pool.undefine"]
    assert {e.pool for e in events(ctx)} == {"a"}
    assert all(e.actor and e.at for e in events(ctx))


def test_events_outlive_the_pool(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    pools.undefine(ctx, "a")
    define(ctx, "a", IXGBE0, vfs=2)
    assert actions(ctx, "a") == ["pool.define", "pool.undefine", "pool.define"]


def test_several_profiles(make_sim: Callable[..., SimHost]) -> None:
    """The sysfs lifecycle on an 82576 (igb, 7 VFs), an E810 (ice) and a ConnectX-5."""
    sim = make_sim("intel-82576", "intel-e810", "mellanox-cx5")
    with open_context(sim=sim.root) as ctx:
        pfs = {pf.netdev: str(pf.pci) for pf in Sysfs(sim).pfs()}
        define(ctx, "igb", "enp5s0f0", vfs=7, mode="netdev")
        define(ctx, "ice", "enp6s0f1", vfs=4, mode="macvtap")
        define(ctx, "mlx5", "enp7s0f0np0", vfs=8)
        for name in ("igb", "ice", "mlx5"):
            record = pools.start(ctx, name, timeout=T)
            assert all(pf.method == "sysfs" for pf in record.pfs)
        assert numvfs(sim, pfs["enp5s0f0"]) == 7
        assert numvfs(sim, pfs["enp6s0f1"]) == 4
        assert numvfs(sim, pfs["enp7s0f0np0"]) == 8
        assert [vf.driver for vf in host_pf(sim, pfs["enp5s0f0"]).vfs] == ["igbvf"] * 7
        assert [vf.driver for vf in host_pf(sim, pfs["enp6s0f1"]).vfs] == ["iavf"] * 4
        assert [vf.driver for vf in host_pf(sim, pfs["enp7s0f0np0"]).vfs] == [None] * 8
        assert len(vf_rows(ctx)) == 19
        for name in ("igb", "ice", "mlx5"):
            pools.destroy(ctx, name)
        assert [pf.numvfs for pf in Sysfs(sim).pfs()] == [0] * len(pfs)
        assert vf_rows(ctx) == []
