"""Leases in all three modes on real VFs: what the kernel shows while leased, and that a
release puts back the saved config and driver."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES

pytestmark = pytest.mark.usefixtures("baseline")
PF0 = PF_ADDRESSES[0]
Cli = Callable[..., Any]
MAC = "02:5e:00:00:00:11"


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.stdout}"
    return result


def start_pool(cli: Cli, name: str, mode: str, *extra: str, vfs: int = 2) -> None:
    ok(cli("pool", "define", name, "--pf", realhost.pf_netdev(PF0), "--vfs", str(vfs),
           "--method", "sysfs", "--mode", mode, *extra))
    ok(cli("pool", "start", name))


def test_netdev_lease_applies_config_and_release_restores_it(vfpool_cli: Cli) -> None:
    start_pool(vfpool_cli, "n", "netdev", "--vlan", "100", "--trust", "--no-spoofchk")
    before = realhost.vfinfo(PF0)
    lease = ok(vfpool_cli("lease", "acquire", "n", "--owner", "vm1", "--mac", MAC,
                          "--json")).json()[0]
    index, vf = lease["vf"]["index"], lease["vf"]["pci"]
    leased = realhost.vfinfo(PF0)[index]
    assert (leased["mac"], leased["vlan"], leased["trust"], leased["spoofchk"]) == (
        MAC, 100, True, False)
    assert realhost.driver(vf) == "igbvf"
    assert lease["vf"]["netdev"] in realhost.netdevs_of(vf)
    ok(vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"]))
    assert realhost.vfinfo(PF0)[index] == before[index]
    assert realhost.driver(vf) == "igbvf"


def test_netdev_lease_vf_netdev_carries_the_lease_mac(vfpool_cli: Cli) -> None:
    start_pool(vfpool_cli, "n", "netdev")
    lease = ok(vfpool_cli("lease", "acquire", "n", "--owner", "vm1", "--mac", MAC,
                          "--json")).json()[0]
    netdev = lease["vf"]["netdev"]
    assert realhost.read(f"/sys/class/net/{netdev}/address") == MAC
    vf = lease["vf"]["pci"]
    ok(vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"]))
    # The next user of the VF must not find the lease's MAC on it.
    realhost.wait_for("igbvf back on the VF", lambda: bool(realhost.netdevs_of(vf)))
    [after] = realhost.netdevs_of(vf)
    assert realhost.read(f"/sys/class/net/{after}/address") != MAC


def test_vfio_lease_binds_vfio_pci_and_release_gives_igbvf_back(vfpool_cli: Cli) -> None:
    # VFs that exist bound to igbvf (autoprobe on) before a vfio pool takes them in place.
    (realhost.DEVICES / PF0 / "sriov_numvfs").write_text("2\n")
    realhost.wait_for("igbvf on both VFs", lambda: all(
        realhost.driver(vf) == "igbvf" for vf in realhost.virtfns(PF0)))
    start_pool(vfpool_cli, "v", "vfio")
    lease = ok(vfpool_cli("lease", "acquire", "v", "--owner", "vm1", "--json")).json()[0]
    vf = lease["vf"]["pci"]
    assert realhost.driver(vf) == "vfio-pci"
    group = os.path.basename(os.readlink(realhost.DEVICES / vf / "iommu_group"))
    assert os.path.exists(f"/dev/vfio/{group}")  # the IOMMU group QEMU opens
    ok(vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"]))
    assert realhost.driver(vf) == "igbvf"
    assert realhost.attr(vf, "driver_override") == "(null)"
    assert realhost.netdevs_of(vf)


def test_vfio_lease_on_unbound_vfs_leaves_them_unbound(vfpool_cli: Cli) -> None:
    start_pool(vfpool_cli, "v", "vfio")
    # vfio hand-off sizes with autoprobe off: the VFs come up with no driver.
    assert realhost.attr(PF0, "sriov_drivers_autoprobe") == "0"
    assert [realhost.driver(vf) for vf in realhost.virtfns(PF0)] == [None, None]
    lease = ok(vfpool_cli("lease", "acquire", "v", "--owner", "vm1", "--json")).json()[0]
    vf = lease["vf"]["pci"]
    assert realhost.driver(vf) == "vfio-pci"
    ok(vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"]))
    assert realhost.driver(vf) is None
    assert realhost.attr(vf, "driver_override") == "(null)"


def test_macvtap_lease_on_a_real_vf_netdev(vfpool_cli: Cli) -> None:
    start_pool(vfpool_cli, "t", "macvtap", "--vlan", "42")
    before = realhost.vfinfo(PF0)
    lease = ok(vfpool_cli("lease", "acquire", "t", "--owner", "vm1", "--mac", MAC,
                          "--json")).json()[0]
    index, vf = lease["vf"]["index"], lease["vf"]["pci"]
    assert realhost.driver(vf) == "igbvf"
    assert lease["vf"]["netdev"] in realhost.netdevs_of(vf)
    assert (realhost.vfinfo(PF0)[index]["mac"], realhost.vfinfo(PF0)[index]["vlan"]) == (MAC, 42)
    args = ok(vfpool_cli("vm", "args", str(lease["id"]))).stdout
    assert "tap" in args and MAC in args
    ok(vfpool_cli("lease", "release", "--owner", "vm1"))
    # A probed igbvf registers a random MAC of its own with igb (igbvf_reset: init_hw sends
    # it over the mailbox), so "as before" is that MAC, not zeros.
    after = realhost.vfinfo(PF0)[index]
    assert (after["vlan"], after["mac"]) == (0, before[index]["mac"])
