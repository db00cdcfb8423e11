"""Deterministic races. A `--hang` fault holds one operation inside its window while another
runs; then the fault is cleared and both finish. After each: no VF has two live leases, and
the host equals the store for every leased VF (tests/races/__init__.py).

The windows are the ones issue 9 found: destroy and resize between their lease check and the
PF going through 0 VFs, a module reload, reconcile stuck in netlink, and a release stuck in
its restore.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.races import (
    Background,
    assert_consistent,
    background,
    holds,
    holds_acquirer_lock,
    live_leases,
    pf_lock,
    start_pool,
    vf_lock,
    vfpool,
    wait_until,
)
from vfpool.sim.host import SimHost

X710_0, X710_1 = "0000:85:00.0", "0000:85:00.1"
IXGBE_0 = "0000:05:00.0"


def _numvfs(pci: str) -> str:
    return f"sys/bus/pci/devices/{pci}/sriov_numvfs"


def _waiting_for_pf(root: Path, acquirer: Background, pci: str) -> Callable[[], bool]:
    """The acquirer has begun (it holds its own lock) but not got the PF lock."""
    return lambda: holds_acquirer_lock(root, acquirer) and not holds(acquirer, pf_lock(root, pci))


def test_destroy_force_vs_acquire_never_leaves_a_lease_behind(sim: SimHost) -> None:
    root = sim.root
    start_pool(root, "p", "enp133s0f0", vfs=4, mode="vfio")
    first = vfpool(root, "lease", "acquire", "p", "--owner", "a", "--json").json()[0]
    sim.inject_fault(_numvfs(X710_0), kind="hang")
    with background(root, "pool", "destroy", "p", "--force") as destroy:
        # Inside its window: the lease released, the PF about to go through 0 VFs.
        wait_until("destroy holding the PF with the lease released",
                   lambda: holds(destroy, pf_lock(root, X710_0))
                   and not live_leases(root), destroy)
        with background(root, "lease", "acquire", "p", "--owner", "b", "--json") as acquire:
            wait_until("the acquire waiting for the PF", _waiting_for_pf(root, acquire, X710_0),
                       acquire)
            assert live_leases(root) == []
            sim.clear_faults()
            assert destroy.finish().returncode == 0
            late = acquire.finish()
    assert late.returncode == 4, late.describe()
    assert late.stderr == ("error: pool 'p' is not active; start it with `vfpool pool start p`"
                           "\n")
    assert live_leases(root) == []
    assert vfpool(root, "pool", "start", "p").returncode == 0
    again = vfpool(root, "lease", "acquire", "p", "--owner", "c", "--json").json()
    assert again[0]["vf"]["pci"] == first["vf"]["pci"]  # the lowest index is free again
    assert [lease.owner for lease in assert_consistent(root)] == ["c"]
    assert vfpool(root, "reconcile").stdout == "nothing to repair\n"


def test_resize_vs_acquire_keeps_the_config_of_the_lease(sim: SimHost) -> None:
    root = sim.root
    start_pool(root, "p", "enp133s0f0", vfs=2, mode="netdev", vlan=55)
    sim.inject_fault(_numvfs(X710_0), kind="hang")
    with background(root, "pool", "resize", "p", "--vfs", "3") as resize:
        wait_until("resize holding the PF", lambda: holds(resize, pf_lock(root, X710_0)),
                   resize)
        with background(root, "lease", "acquire", "p", "--owner", "b", "--json") as acquire:
            wait_until("the acquire waiting for the PF", _waiting_for_pf(root, acquire, X710_0),
                       acquire)
            sim.clear_faults()
            assert resize.finish().returncode == 0
            lease = acquire.finish().json()[0]
    assert lease["vlan"] == 55
    live = assert_consistent(root)
    assert [(row.id, row.vlan) for row in live] == [(lease["id"], 55)]
    info = vfpool(root, "pool", "info", "p", "--json").json()
    assert info["vfs"] == {"total": 3, "free": 2, "leased": 1, "reserved": 0, "unusable": 0}
    assert vfpool(root, "reconcile").stdout == "nothing to repair\n"


def test_resize_with_allow_disruption_loses_the_leases_it_resets(sim: SimHost) -> None:
    root = sim.root
    start_pool(root, "p", "enp133s0f0", vfs=2, mode="netdev", vlan=55)
    lease = vfpool(root, "lease", "acquire", "p", "--owner", "a", "--json").json()[0]
    refused = vfpool(root, "pool", "resize", "p", "--vfs", "3")
    assert refused.returncode == 4
    assert "--allow-disruption" in refused.stderr
    resized = vfpool(root, "pool", "resize", "p", "--vfs", "3", "--allow-disruption", "--json")
    assert resized.json()["lost"] == [lease["id"]]
    assert resized.stderr == (f"note: lease(s) {lease['id']} lost: --allow-disruption reset "
                              "their VFs\n")
    shown = vfpool(root, "lease", "show", str(lease["id"]), "--json").json()
    assert shown["state"] == "lost"
    assert live_leases(root) == []
    assert_consistent(root)
    # The reset VF is free with fresh config, and can be leased again.
    again = vfpool(root, "lease", "acquire", "p", "--owner", "b", "--json").json()[0]
    assert again["vf"]["pci"] == lease["vf"]["pci"]
    assert_consistent(root)


def test_module_reload_vs_acquire(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-i350")
    root = sim.root
    ports = ("0000:05:00.0", "0000:05:00.1")
    start_pool(root, "m", "enp5s0f0", "enp5s0f1", vfs=2, method="module-param", mode="netdev",
               vlan=9)
    held = vfpool(root, "lease", "acquire", "m", "--owner", "a", "--json").json()[0]
    sim.inject_fault("modprobe:igb", kind="hang")
    with background(root, "pool", "resize", "m", "--vfs", "3", "--allow-disruption",
                    "--json") as reload:
        wait_until("the reload holding both ports",
                   lambda: all(holds(reload, pf_lock(root, pci)) for pci in ports), reload)
        with background(root, "lease", "acquire", "m", "--owner", "b", "--json") as acquire:
            wait_until("the acquire waiting for the ports",
                       _waiting_for_pf(root, acquire, ports[0]), acquire)
            sim.clear_faults()
            resized = reload.finish().json()
            late = acquire.finish().json()[0]
    assert resized["lost"] == [held["id"]]
    live = assert_consistent(root)
    assert [row.id for row in live] == [late["id"]]
    assert vfpool(root, "reconcile").stdout == "nothing to repair\n"


def test_reconcile_stuck_in_netlink_blocks_neither_acquire_nor_define(sim: SimHost) -> None:
    root = sim.root
    start_pool(root, "a", "enp133s0f0", vfs=2, mode="vfio")
    start_pool(root, "b", "enp5s0f0", vfs=2, mode="vfio")
    vfpool(root, "lease", "acquire", "a", "--owner", "x", "--json").json()
    sim.inject_fault("netlink:enp133s0f0", kind="hang")
    with background(root, "reconcile", "--json") as reconcile:
        wait_until("reconcile holding the PF", lambda: holds(reconcile, pf_lock(root, X710_0)),
                   reconcile)
        # With a 5 s deadline, a store held by the stuck reconcile would fail these (exit 4).
        define = vfpool(root, "pool", "define", "c", "--pf", "enp133s0f1", "--vfs", "2",
                        VFPOOL_LOCK_TIMEOUT="5")
        assert define.returncode == 0, define.describe()
        lease = vfpool(root, "lease", "acquire", "b", "--owner", "y", "--json",
                       VFPOOL_LOCK_TIMEOUT="5")
        assert lease.returncode == 0, lease.describe()
        assert reconcile.running()
        sim.clear_faults()
        assert reconcile.finish().json()["findings"] == []
    assert sorted(row.owner for row in assert_consistent(root)) == ["x", "y"]


def test_release_vs_reconcile(sim: SimHost) -> None:
    root = sim.root
    start_pool(root, "v", "enp133s0f0", vfs=2, mode="vfio")
    before = SimHost(root).vf_configs("enp133s0f0")[0]
    lease = vfpool(root, "lease", "acquire", "v", "--owner", "a", "--json").json()[0]
    vf = lease["vf"]["pci"]
    # The release's restore unbinds the VF from vfio-pci: hold it there.
    sim.inject_fault("sys/bus/pci/drivers/vfio-pci/unbind", kind="hang")
    with background(root, "lease", "release", str(lease["id"]), "--token",
                    lease["token"]) as release:
        wait_until("the release holding the VF", lambda: holds(release, vf_lock(root, vf)),
                   release)
        # Reconcile sees a release under way: it neither waits for it nor finishes it.
        report = vfpool(root, "reconcile", "--json", VFPOOL_LOCK_TIMEOUT="5").json()
        assert report["findings"] == []
        assert [row.state for row in live_leases(root)] == ["active"]
        sim.clear_faults()
        done = release.finish()
    assert done.returncode == 0, done.describe()
    assert live_leases(root) == []
    assert SimHost(root).vf_configs("enp133s0f0")[0] == before
    assert vfpool(root, "reconcile").stdout == "nothing to repair\n"
    assert_consistent(root)


@pytest.mark.parametrize("first", ["v", "m"])
def test_pools_sharing_a_pf_start_in_either_order(sim: SimHost, first: str) -> None:
    """A vfio pool and a macvtap pool split one PF: each order of starts works, the macvtap
    pool's VFs have netdevs, and after a reboot `--autostarted` brings both back."""
    root = sim.root
    for name, pf, mode in (("v", "enp133s0f0#0-3", "vfio"), ("m", "enp133s0f0#4-7", "macvtap")):
        start_pool(root, name, pf, vfs=4, mode=mode, autostart=True, start=False)
    for name in (first, "m" if first == "v" else "v"):
        call = vfpool(root, "pool", "start", name)
        assert call.returncode == 0, call.describe()
    macvtap = vfpool(root, "lease", "acquire", "m", "--owner", "a", "--json").json()[0]
    vfio = vfpool(root, "lease", "acquire", "v", "--owner", "b", "--json").json()[0]
    assert macvtap["vf"]["netdev"] is not None
    assert (vfio["vf"]["index"], macvtap["vf"]["index"]) == (0, 4)
    assert_consistent(root)
    sim.reboot()
    started = vfpool(root, "pool", "start", "--autostarted", "--json").json()
    # m's start sizes the PF for both pools, so v finds its VFs back in place.
    assert [(row["name"], row["result"]) for row in started] == [("m", "started"),
                                                                 ("v", "already active")]
    assert vfpool(root, "reconcile").returncode == 0  # the leases from before the reboot
    assert live_leases(root) == []
    again = vfpool(root, "lease", "acquire", "m", "--owner", "c", "--json").json()[0]
    assert again["vf"]["pci"] == macvtap["vf"]["pci"] and again["vf"]["netdev"] is not None
    assert_consistent(root)
