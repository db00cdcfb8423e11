"""PF discovery on the real kernel: vfpool's sysfs reader, pyudev with a real udevd, and the
CLI, each checked against sysfs and `ip -j link` read directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES
from vfpool.host.kernel import RealKernel
from vfpool.host.sysfs import Sysfs
from vfpool.host.udev import UdevDiscovery, differences
from vfpool.model.pci import PciAddress

pytestmark = pytest.mark.usefixtures("baseline")


def kernel_pfs() -> dict[str, dict[str, Any]]:
    """Every SR-IOV PF as sysfs and iproute2 show it, without vfpool."""
    found = {}
    for bdf in sorted(p.name for p in realhost.DEVICES.iterdir()):
        if realhost.attr(bdf, "sriov_totalvfs") is None:
            continue
        netdevs = [link["ifname"] for link in realhost.ip_links()
                   if link.get("parentdev") == bdf]
        found[bdf] = {"driver": realhost.driver(bdf),
                      "vendor": int(realhost.attr(bdf, "vendor") or "0", 16),
                      "device": int(realhost.attr(bdf, "device") or "0", 16),
                      "totalvfs": int(realhost.attr(bdf, "sriov_totalvfs") or 0),
                      "numvfs": realhost.numvfs(bdf), "netdevs": netdevs}
    return found


def test_sysfs_reader_finds_both_igb_pfs() -> None:
    kernel = kernel_pfs()
    assert sorted(kernel) == list(PF_ADDRESSES)
    seen = {str(pf.pci): pf for pf in Sysfs(RealKernel()).pfs()}
    assert sorted(seen) == sorted(kernel)
    for bdf, facts in kernel.items():
        pf = seen[bdf]
        assert (pf.driver, pf.vendor, pf.device, pf.totalvfs, pf.numvfs) == (
            facts["driver"], facts["vendor"], facts["device"], facts["totalvfs"],
            facts["numvfs"]) == ("igb", 0x8086, 0x10C9, 7, 0)
        assert [netdev.name for netdev in pf.netdevs] == facts["netdevs"]
        assert pf.offset == 128 and pf.stride == 2  # the 82576's VF geometry


def test_the_drivers_folders_name_each_bound_vf_as_its_driver_link_does() -> None:
    """Sysfs reads a large PF's VF drivers from the drivers' folders (bound_devices): the
    real kernel links each bound device there, and only while it is bound."""
    pf = PF_ADDRESSES[0]
    (realhost.DEVICES / pf / "sriov_numvfs").write_text("4\n")
    realhost.wait_for("igbvf bound to 4 VFs", lambda: len(realhost.virtfns(pf)) == 4 and all(
        realhost.driver(vf) == "igbvf" for vf in realhost.virtfns(pf)))
    vfs = realhost.virtfns(pf)
    (realhost.DEVICES / vfs[1] / "driver" / "unbind").write_text(vfs[1])
    realhost.run("udevadm", "settle", "--timeout=60", check=False)
    bound = Sysfs(RealKernel()).bound_devices()
    assert [bound.get(vf) for vf in vfs] == [realhost.driver(vf) for vf in vfs] == [
        "igbvf", None, "igbvf", "igbvf"]
    assert bound[pf] == "igb"
    in_bulk, one_by_one = Sysfs(RealKernel()), Sysfs(RealKernel())
    in_bulk.BULK_DRIVERS, one_by_one.BULK_DRIVERS = 1, 10**6
    address = PciAddress.parse(pf)
    assert [(str(vf.pci), vf.driver) for vf in in_bulk.pf(address).vfs] == [
        (str(vf.pci), vf.driver) for vf in one_by_one.pf(address).vfs] == [
        (vf, driver) for vf, driver in zip(vfs, ["igbvf", None, "igbvf", "igbvf"], strict=True)]


def test_pyudev_with_a_real_udevd_agrees_with_sysfs() -> None:
    udev_pfs = UdevDiscovery().pfs()
    assert differences(udev_pfs, Sysfs(RealKernel()).pfs()) == []
    for pf in udev_pfs:
        facts = realhost.run("udevadm", "info", "--query=property",
                             f"/sys/class/net/{pf.netdev}").stdout
        properties = dict(line.split("=", 1) for line in facts.splitlines() if "=" in line)
        # udev names the ports by path (systemd's net_id), and the names are the netdevs'.
        assert [netdev.name_path for netdev in pf.netdevs] == [properties["ID_NET_NAME_PATH"]]
        assert pf.netdev == properties["ID_NET_NAME_PATH"]
        # ID_MODEL_FROM_DATABASE comes from the hwdb compiled into the guest layer.
        assert pf.model == "82576 Gigabit Network Connection"


def test_pf_list_json_matches_the_kernel(vfpool_cli: Callable[..., Any]) -> None:
    result = vfpool_cli("pf", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["pci"]: row for row in result.json()}
    for bdf, facts in kernel_pfs().items():
        row = rows[bdf]
        assert (row["driver"], row["totalvfs"], row["numvfs"], row["netdev"]) == (
            facts["driver"], facts["totalvfs"], facts["numvfs"], facts["netdevs"][0])
        assert row["link"] == realhost.read(f"/sys/class/net/{row['netdev']}/operstate")
