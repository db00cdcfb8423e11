"""PF discovery: udev's enumeration merged with the sysfs reader's details."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from vfpool.host.sysfs import Sysfs
from vfpool.host.udev import UdevDiscovery, UdevPf
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


def test_this_machine_is_discovered_through_udev(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """On the real machine discover() takes the udev path (no fallback to sysfs alone), and
    finds exactly the PCI functions the kernel gives an sriov_totalvfs file, in order; each
    carries the totalvfs the kernel reports. (CI machines usually have no SR-IOV NIC, so the
    list may be empty; udev's own enumeration is checked against umockdev in tests/udev/.)"""
    try:
        import pyudev

        pyudev.Context()
    except ImportError as exc:
        pytest.skip(f"libudev cannot be loaded here, so there is no udev path to take: {exc}")
    kernel = {PciAddress.parse(path.parent.name): int(path.read_text())
              for path in Path("/sys/bus/pci/devices").glob("*/sriov_totalvfs")}
    # Watch (not replace) udev's enumeration, to see that discover() asked udev.
    enumerated: list[list[UdevPf]] = []
    real_pfs = UdevDiscovery.pfs

    def watched(self: UdevDiscovery) -> list[UdevPf]:
        enumerated.append(real_pfs(self))
        return enumerated[-1]

    monkeypatch.setattr(UdevDiscovery, "pfs", watched)
    with open_context(db=f"sqlite:///{tmp_path / 'x.db'}") as ctx, \
            caplog.at_level(logging.DEBUG, logger="vfpool.service.pfs"):
        found = discover(ctx)
    assert "udev unavailable" not in caplog.text
    assert [[pf.pci for pf in pfs] for pfs in enumerated] == [sorted(kernel)]
    assert [pf.pci for pf in found] == sorted(kernel)
    assert {pf.pci: pf.totalvfs for pf in found} == kernel
