"""PF discovery through pyudev on a umockdev testbed agrees with the sysfs reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.udev.conftest import OTHER_PF, PF, VFS, Bed, PoolHost, mirror_sim
from vfpool.host.kernel import RealKernel
from vfpool.host.sysfs import Sysfs
from vfpool.host.udev import UdevDiscovery, UdevNetdev, UdevPf, differences, pci_of_path
from vfpool.model.pci import PciAddress
from vfpool.model.snapshot import PfSnapshot
from vfpool.sim.host import SimHost

ALL_PFS = ["0000:05:00.0", "0000:05:00.1", PF, OTHER_PF]


def test_discovery_agrees_with_sysfs_on_the_same_testbed(pool_host: PoolHost) -> None:
    found = UdevDiscovery().pfs()
    testbed_sysfs = Sysfs(RealKernel(pool_host.bed.root)).pfs()
    assert [str(pf.pci) for pf in found] == ALL_PFS
    assert [str(pf.pci) for pf in testbed_sysfs] == ALL_PFS
    assert differences(found, testbed_sysfs) == []
    # and with the simulated host the testbed was made from
    assert differences(found, Sysfs(SimHost(pool_host.sim_root)).pfs()) == []


def test_discovery_reads_attributes_links_and_udev_properties(pool_host: PoolHost) -> None:
    pf = {str(pf.pci): pf for pf in UdevDiscovery().pfs()}[PF]
    assert pf == UdevPf(
        pci=PciAddress.parse(PF), sys_path=f"/sys/devices/pci0000:00/{PF}", driver="i40e",
        vendor=0x8086, device=0x1572, totalvfs=64, numvfs=4, numa_node=1,
        netdevs=(UdevNetdev("enp133s0f0", "enp133s0f0", "up", "1"),),
        model="Ethernet Controller X710 for 10GbE SFP+")
    assert pf.netdev == "enp133s0f0"


def test_vfs_and_devices_without_sriov_are_not_pfs(pool_host: PoolHost) -> None:
    names = {str(pf.pci) for pf in UdevDiscovery().pfs()}
    assert not names & set(VFS)
    assert "0000:00:1f.6" not in names  # e1000e: a NIC, but no SR-IOV
    netdevs = {netdev.name for pf in UdevDiscovery().pfs() for netdev in pf.netdevs}
    assert "lo" not in netdevs and "eno1" not in netdevs


def test_a_pf_without_driver_or_netdev_agrees_too(sim_root: Path, bed: Bed) -> None:
    # An unbound PF: no driver link, no netdev, numa_node -1.
    sim = SimHost(sim_root)
    device = sim_root / "sys/bus/pci/devices" / OTHER_PF
    (device / "driver").unlink()
    (device / "numa_node").write_text("-1\n")
    for netdev in (device / "net").iterdir():
        (sim_root / "sys/class/net" / netdev.name).unlink()
        for entry in netdev.iterdir():
            entry.unlink()
        netdev.rmdir()
    mirror_sim(bed, sim_root)
    found = {str(pf.pci): pf for pf in UdevDiscovery().pfs()}
    assert (found[OTHER_PF].driver, found[OTHER_PF].netdevs, found[OTHER_PF].numa_node) == (
        None, (), None)
    assert differences(list(found.values()), Sysfs(sim).pfs()) == []


def _snapshot(**changes: object) -> PfSnapshot:
    values: dict[str, object] = dict(
        pci=PciAddress.parse(PF), vendor=0x8086, device=0x1572, driver="i40e", totalvfs=64,
        numvfs=4, offset=16, stride=1, vf_device=0x154C, numa_node=1, drivers_autoprobe=True)
    values.update(changes)
    return PfSnapshot(**values)  # type: ignore[arg-type]


def _udev_pf(**changes: object) -> UdevPf:
    values: dict[str, object] = dict(
        pci=PciAddress.parse(PF), sys_path="/sys/devices/x", driver="i40e", vendor=0x8086,
        device=0x1572, totalvfs=64, numvfs=4, numa_node=1)
    values.update(changes)
    return UdevPf(**values)  # type: ignore[arg-type]


@pytest.mark.without_umockdev
def test_differences_names_each_disagreement() -> None:
    other = PciAddress.parse(OTHER_PF)
    assert differences([_udev_pf(), _udev_pf(pci=other)], [_snapshot()]) == [
        f"{OTHER_PF}: seen by udev only"]
    assert differences([_udev_pf(driver=None, numvfs=0,
                                 netdevs=(UdevNetdev("enp133s0f0", None, "up", "1"),))],
                       [_snapshot()]) == [
        f"{PF}: driver is None in udev, 'i40e' in sysfs",
        f"{PF}: numvfs is 0 in udev, 4 in sysfs",
        f"{PF}: netdevs is ['enp133s0f0'] in udev, [] in sysfs",
    ]
    assert differences([], [_snapshot()]) == [f"{PF}: seen by sysfs only"]


@pytest.mark.without_umockdev
@pytest.mark.parametrize(("path", "expected"), [
    ("/sys/devices/pci0000:80/0000:80:03.0/0000:85:00.0", "0000:85:00.0"),
    ("/sys/devices/pci0000:80/0000:80:03.0/0000:85:00.0/net/enp133s0f0", "0000:85:00.0"),
    ("/sys/devices/pci0000:00/0000:00:01.0/0000:05:10.1/net/enp5s0f0v0", "0000:05:10.1"),
    ("/sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:02.0/0000:3e:00.1",
     "0000:3e:00.1"),
    ("/sys/devices/virtual/net/lo", None),
    ("/sys/devices/pci0000:00", None),
    ("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0", "0000:00:14.0"),
])
def test_pci_of_path(path: str, expected: str | None) -> None:
    found = pci_of_path(path)
    assert (str(found) if found is not None else None) == expected
