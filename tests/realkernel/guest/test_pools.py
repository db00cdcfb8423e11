"""The pool lifecycle on the real igb, with both resize methods, read back from sysfs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES

pytestmark = pytest.mark.usefixtures("baseline")
PF0, PF1 = PF_ADDRESSES
Cli = Callable[..., Any]


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.stdout}"
    return result


def test_sysfs_pool_define_start_resize_destroy_undefine(vfpool_cli: Cli) -> None:
    """vfio mode: the VFs come up with autoprobe off and no driver (as vfio hand-off wants)."""
    pf = realhost.pf_netdev(PF0)
    ok(vfpool_cli("pool", "define", "s", "--pf", pf, "--vfs", "3", "--method", "sysfs",
                  "--mode", "vfio"))
    assert realhost.numvfs(PF0) == 0  # define touches nothing
    ok(vfpool_cli("pool", "start", "s"))
    assert realhost.numvfs(PF0) == 3
    assert realhost.attr(PF0, "sriov_drivers_autoprobe") == "0"
    vfs = realhost.virtfns(PF0)
    assert vfs == ["0000:00:13.0", "0000:00:13.2", "0000:00:13.4"]  # offset 128, stride 2
    assert [realhost.driver(vf) for vf in vfs] == [None] * 3
    info = ok(vfpool_cli("pool", "info", "s", "--json")).json()
    assert info["state"] == "active" and info["vfs"]["total"] == 3 == info["vfs"]["free"]
    ok(vfpool_cli("pool", "resize", "s", "--vfs", "4"))
    assert realhost.numvfs(PF0) == 4 and len(realhost.virtfns(PF0)) == 4
    ok(vfpool_cli("pool", "destroy", "s"))
    assert realhost.numvfs(PF0) == 0 and realhost.virtfns(PF0) == []
    ok(vfpool_cli("pool", "undefine", "s"))
    assert ok(vfpool_cli("pool", "list", "--all", "--json")).json() == []


def test_a_netdev_pool_waits_for_igbvf_netdevs(vfpool_cli: Cli) -> None:
    ok(vfpool_cli("pool", "define", "n", "--pf", realhost.pf_netdev(PF0), "--vfs", "1",
                  "--method", "sysfs", "--mode", "netdev"))
    ok(vfpool_cli("pool", "start", "n"))
    [vf] = realhost.virtfns(PF0)
    assert realhost.driver(vf) == "igbvf" and realhost.netdevs_of(vf)


def test_sysfs_errors_reach_the_user_with_the_kernels_errno(vfpool_cli: Cli) -> None:
    pf = realhost.pf_netdev(PF0)
    result = vfpool_cli("pool", "define", "big", "--pf", pf, "--vfs", "8", "--method", "sysfs")
    assert result.exit_code != 0
    assert "7" in result.stderr  # the PF's totalvfs is named
    assert realhost.numvfs(PF0) == 0


def test_module_param_pool_reloads_igb_behind_its_guard(vfpool_cli: Cli) -> None:
    pf0, pf1 = realhost.pf_netdev(PF0), realhost.pf_netdev(PF1)
    ok(vfpool_cli("pool", "define", "m", "--pf", pf0, "--vfs", "2", "--method",
                  "module-param", "--mode", "netdev"))
    # PF1 is up and in no pool: a reload of igb takes it down, so vfpool refuses.
    refused = vfpool_cli("pool", "start", "m")
    assert refused.exit_code == 4, refused.stderr
    assert pf1 in refused.stderr and "--allow-disruption" in refused.stderr
    assert not realhost.MODPROBE_CONF.exists() and realhost.numvfs(PF0) == 0
    ok(vfpool_cli("pool", "start", "m", "--allow-disruption"))
    assert realhost.MODPROBE_CONF.read_text().splitlines()[-1] == "options igb max_vfs=2"
    assert realhost.read("/sys/module/igb/parameters/max_vfs") == "2"
    # A scalar max_vfs sizes every port the driver serves.
    assert [realhost.numvfs(pf) for pf in PF_ADDRESSES] == [2, 2]
    realhost.run("ip", "link", "set", realhost.pf_netdev(PF0), "up")
    lease = ok(vfpool_cli("lease", "acquire", "m", "--owner", "vm1", "--json")).json()[0]
    # A leased VF on igb blocks the next reload, even with the other port in no pool.
    resized = vfpool_cli("pool", "resize", "m", "--vfs", "3")
    assert resized.exit_code == 4, resized.stderr
    assert lease["vf"]["pci"] in resized.stderr
    assert realhost.read("/sys/module/igb/parameters/max_vfs") == "2"
    ok(vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"]))
    ok(vfpool_cli("pool", "destroy", "m", "--allow-disruption"))
    assert [realhost.numvfs(pf) for pf in PF_ADDRESSES] == [0, 0]
    assert not realhost.MODPROBE_CONF.exists()
