"""PF discovery: udev's enumeration merged with the sysfs reader's details."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vfpool.host.sysfs import Sysfs
from vfpool.host.udev import UdevPf
from vfpool.model.pci import PciAddress
from vfpool.service.context import Context, open_context
from vfpool.service.pfs import discover, merge_udev


def _udev(pf_pci: str, model: str | None) -> UdevPf:
    return UdevPf(pci=PciAddress.parse(pf_pci), sys_path=f"/sys/devices/{pf_pci}", driver="i40e",
                  vendor=0x8086, device=0x1572, totalvfs=64, numvfs=0, numa_node=1, model=model)


def test_udev_decides_which_pfs_and_fills_in_missing_models(sysfs: Sysfs) -> None:
    sysfs_pfs = [replace(pf, model=None) if str(pf.pci) == "0000:85:00.1" else pf
                 for pf in sysfs.pfs()]
    merged = merge_udev(sysfs_pfs, [_udev("0000:85:00.1", "Ethernet Controller X710 (hwdb)"),
                                    _udev("0000:85:00.0", "ignored: sysfs has a name")])
    assert [(str(pf.pci), pf.model) for pf in merged] == [
        ("0000:85:00.0", "Ethernet Controller X710 for 10GbE SFP+"),
        ("0000:85:00.1", "Ethernet Controller X710 (hwdb)")]


def test_a_pf_udev_lists_but_sysfs_lost_is_left_out(sysfs: Sysfs) -> None:
    assert merge_udev(sysfs.pfs(), [_udev("0000:99:00.0", "gone")]) == []


def test_a_simulated_host_is_discovered_through_sysfs_alone(ctx: Context) -> None:
    assert [str(pf.pci) for pf in discover(ctx)] == [
        "0000:05:00.0", "0000:05:00.1", "0000:85:00.0", "0000:85:00.1"]


def test_this_machine_is_discovered_through_udev(tmp_path: Path) -> None:
    ctx = open_context(db=f"sqlite:///{tmp_path / 'x.db'}")
    found = discover(ctx)  # no SR-IOV NICs here: the point is that the udev path runs
    assert all(pf.totalvfs >= 1 for pf in found)
    assert [pf.pci for pf in found] == sorted(pf.pci for pf in found)
