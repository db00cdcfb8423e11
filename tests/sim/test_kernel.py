"""The simulated kernel: sysfs write semantics and errnos, as drivers/pci/iov.c has them."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.sim.host import SimHost

PF0 = PciAddress.parse("0000:05:00.0")
PF1 = PciAddress.parse("0000:05:00.1")
VF0 = PciAddress.parse("0000:05:10.0")
VF1 = PciAddress.parse("0000:05:10.2")


def _numvfs(sysfs: Sysfs, pf: PciAddress = PF0) -> Path:
    return sysfs.attr(pf, "sriov_numvfs")


def _errno_of(sim: SimHost, path: Path, value: str) -> int | None:
    with pytest.raises(OSError) as excinfo:
        sim.write_attr(path, value)
    return excinfo.value.errno


def _vf_entries(sim: SimHost) -> dict[str, list[str]]:
    """Everything in the tree that names a VF of 82599 PF0 (bus 05, slots 0x10-0x1f)."""
    vf = ("0000:05:1",)
    return {
        "devices": sorted(e for e in os.listdir(sim.root / "sys/devices/pci0000:00")
                          if e.startswith(vf)),
        "bus": sorted(e for e in os.listdir(sim.root / "sys/bus/pci/devices")
                      if e.startswith(vf)),
        "virtfn": sorted(e for e in os.listdir(sim.root / "sys/devices/pci0000:00/0000:05:00.0")
                         if e.startswith("virtfn")),
        "net": sorted(e for e in os.listdir(sim.root / "sys/class/net")
                      if e.startswith("enp5s0f0v")),
        "ixgbevf": sorted(e for e in os.listdir(sim.root / "sys/bus/pci/drivers/ixgbevf")
                          if e.startswith(vf)),
    }


# --------------------------------------------------------------------------- sriov_numvfs
@pytest.mark.parametrize("value", ["abc", "-1", "70000", "65536", "\n", "1.5", "4 VFs",
                                   "0x", "1_0", "0b1", " 1"])
def test_numvfs_not_a_u16_is_einval(sim: SimHost, sysfs: Sysfs, value: str) -> None:
    # kstrtou16(buf, 0, ...): C integer syntax only, one trailing newline at most.
    assert _errno_of(sim, _numvfs(sysfs), value) == errno.EINVAL
    assert _numvfs(sysfs).read_text() == "0\n"
    assert sysfs.pf(PF0).vfs == ()


@pytest.mark.parametrize(("value", "count"), [("3", 3), ("3\n", 3), ("0x3", 3), ("+3", 3),
                                              ("010", 8)])
def test_numvfs_accepts_kstrtou16_spellings(sim: SimHost, sysfs: Sysfs, value: str,
                                            count: int) -> None:
    sim.write_attr(_numvfs(sysfs), value)
    assert _numvfs(sysfs).read_text() == f"{count}\n"
    assert len(sysfs.pf(PF0).vfs) == count


@pytest.mark.parametrize("value", ["64", "65535", "100"])
def test_numvfs_above_totalvfs_is_erange(sim: SimHost, sysfs: Sysfs, value: str) -> None:
    assert _errno_of(sim, _numvfs(sysfs), value) == errno.ERANGE
    assert _numvfs(sysfs).read_text() == "0\n"


def test_numvfs_at_totalvfs(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "63")
    pf = sysfs.pf(PF0)
    assert (pf.numvfs, len(pf.vfs)) == (63, 63)
    assert str(pf.vfs[-1].pci) == "0000:05:1f.4"


def test_writing_the_current_value_changes_nothing(sim: SimHost, sysfs: Sysfs) -> None:
    # ixgbe bounces the PF's carrier when it sizes (sim/link.py); that is not this test's
    # subject, so the carrier comes back at once here and both snapshots agree on it.
    sim.set_link_bounce("enp5s0f0", 0.0)
    sim.write_attr(_numvfs(sysfs), "0")
    assert _numvfs(sysfs).read_text() == "0\n"
    sim.write_attr(_numvfs(sysfs), "2")
    before = sysfs.pf(PF0)
    ifindexes = [vf.netdevs[0].ifindex for vf in before.vfs]
    sim.write_attr(_numvfs(sysfs), "2\n")
    after = sysfs.pf(PF0)
    assert after == before
    assert [vf.netdevs[0].ifindex for vf in after.vfs] == ifindexes


def test_nonzero_to_nonzero_is_ebusy(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "4")
    for value in ("2", "8", "63"):
        assert _errno_of(sim, _numvfs(sysfs), value) == errno.EBUSY
        assert _numvfs(sysfs).read_text() == "4\n"
    assert len(sysfs.pf(PF0).vfs) == 4
    # ERANGE is checked before EBUSY
    assert _errno_of(sim, _numvfs(sysfs), "64") == errno.ERANGE


def test_resize_through_zero(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "4")
    assert _numvfs(sysfs).read_text() == "4\n"
    sim.write_attr(_numvfs(sysfs), "0")
    assert _numvfs(sysfs).read_text() == "0\n"
    assert sysfs.pf(PF0).vfs == ()
    sim.write_attr(_numvfs(sysfs), "6")
    assert _numvfs(sysfs).read_text() == "6\n"
    assert [vf.netdev for vf in sysfs.pf(PF0).vfs] == [f"enp5s0f0v{i}" for i in range(6)]


def test_pfs_of_one_card_resize_independently(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs, PF0), "2")
    sim.write_attr(_numvfs(sysfs, PF1), "3")
    assert [str(vf.pci) for vf in sysfs.pf(PF1).vfs] == ["0000:05:10.1", "0000:05:10.3",
                                                         "0000:05:10.5"]
    sim.write_attr(_numvfs(sysfs, PF0), "0")
    assert len(sysfs.pf(PF1).vfs) == 3
    assert [vf.netdev for vf in sysfs.pf(PF1).vfs] == ["enp5s0f1v0", "enp5s0f1v1", "enp5s0f1v2"]


def test_vfs_appear_and_disappear_without_leftovers(sim: SimHost, sysfs: Sysfs) -> None:
    empty = _vf_entries(sim)
    assert empty == {"devices": [], "bus": [], "virtfn": [], "net": [], "ixgbevf": []}
    groups_before = sorted(os.listdir(sim.root / "sys/kernel/iommu_groups"))
    sim.write_attr(_numvfs(sysfs), "3")
    assert _vf_entries(sim) == {
        "devices": ["0000:05:10.0", "0000:05:10.2", "0000:05:10.4"],
        "bus": ["0000:05:10.0", "0000:05:10.2", "0000:05:10.4"],
        "virtfn": ["virtfn0", "virtfn1", "virtfn2"],
        "net": ["enp5s0f0v0", "enp5s0f0v1", "enp5s0f0v2"],
        "ixgbevf": ["0000:05:10.0", "0000:05:10.2", "0000:05:10.4"],
    }
    for vf in ("0000:05:10.0", "0000:05:10.2", "0000:05:10.4"):
        group = (sim.root / "sys/bus/pci/devices" / vf / "iommu_group").resolve()
        assert group.parent == sim.root / "sys/kernel/iommu_groups"
        assert (group / "devices" / vf).resolve() == sim.root / "sys/devices/pci0000:00" / vf
    sim.write_attr(_numvfs(sysfs), "0")
    assert _vf_entries(sim) == empty
    assert sorted(os.listdir(sim.root / "sys/kernel/iommu_groups")) == groups_before


def test_mlx4_has_no_sysfs_resize(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3@0000:07:00.0")
    path = Sysfs(sim).attr(PciAddress.parse("0000:07:00.0"), "sriov_numvfs")
    for value in ("1", "8", "63"):
        assert _errno_of(sim, path, value) == errno.ENOENT
    assert _errno_of(sim, path, "64") == errno.ERANGE  # the kernel checks totalvfs first
    sim.write_attr(path, "0")  # equal to the current value: success
    assert path.read_text() == "0\n"


def test_numvfs_without_a_driver_is_enoent(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(sim.root / "sys/bus/pci/drivers/ixgbe/unbind", "0000:05:00.0")
    assert not sysfs.attr(PF0, "driver").exists()
    assert _errno_of(sim, _numvfs(sysfs), "4") == errno.ENOENT
    assert _errno_of(sim, _numvfs(sysfs), "64") == errno.ERANGE
    sim.write_attr(_numvfs(sysfs), "0")
    assert _numvfs(sysfs).read_text() == "0\n"
    # PF1 keeps its driver and still resizes
    sim.write_attr(_numvfs(sysfs, PF1), "1")
    assert _numvfs(sysfs, PF1).read_text() == "1\n"


def test_unbinding_a_pf_disables_its_vfs(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "2")
    sim.write_attr(sim.root / "sys/bus/pci/drivers/ixgbe/unbind", "0000:05:00.0\n")
    assert _numvfs(sysfs).read_text() == "0\n"
    assert _vf_entries(sim)["devices"] == []
    assert "enp5s0f0" not in sysfs.netdev_names()
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", "0000:05:00.0")
    assert sysfs.pf(PF0).driver == "ixgbe"
    assert "enp5s0f0" in sysfs.netdev_names()


@pytest.mark.parametrize(("value", "errno_code"), [("8", errno.EPERM), ("9", errno.ERANGE)])
def test_igb_refuses_more_than_seven(make_sim: Callable[..., SimHost], value: str,
                                     errno_code: int) -> None:
    sim = make_sim("intel-82576@0000:03:00.0:totalvfs=8")
    sysfs = Sysfs(sim)
    path = sysfs.attr(PciAddress.parse("0000:03:00.0"), "sriov_numvfs")
    assert sysfs.attr(PciAddress.parse("0000:03:00.0"), "sriov_totalvfs").read_text() == "8\n"
    assert _errno_of(sim, path, value) == errno_code
    assert path.read_text() == "0\n"
    sim.write_attr(path, "7")
    assert path.read_text() == "7\n"
    assert {vf.driver for vf in sysfs.pf(PciAddress.parse("0000:03:00.0")).vfs} == {"igbvf"}


# --------------------------------------------------------------------------- autoprobe
def test_autoprobe_off_leaves_new_vfs_unbound(sim: SimHost, sysfs: Sysfs) -> None:
    autoprobe = sysfs.attr(PF0, "sriov_drivers_autoprobe")
    sim.write_attr(autoprobe, "0")
    assert autoprobe.read_text() == "0\n"
    assert sysfs.pf(PF0).drivers_autoprobe is False
    sim.write_attr(_numvfs(sysfs), "2")
    vfs = sysfs.pf(PF0).vfs
    assert [(str(vf.pci), vf.driver, vf.netdevs) for vf in vfs] == [
        ("0000:05:10.0", None, ()), ("0000:05:10.2", None, ())]
    assert not any(name.startswith("enp5s0f0v") for name in sysfs.netdev_names())
    # pci_device_can_probe(): with autoprobe off, a plain probe leaves the VF unbound …
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", "0000:05:10.0")
    assert sysfs.vf(0, VF0).driver is None
    # … and only a driver_override lets it bind.
    sim.write_attr(sysfs.attr(VF0, "driver_override"), "ixgbevf\n")
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", "0000:05:10.0")
    assert (sysfs.vf(0, VF0).driver, sysfs.vf(0, VF0).netdev) == ("ixgbevf", "enp5s0f0v0")
    assert sysfs.vf(1, VF1).driver is None
    # Autoprobe back on applies to VFs created afterwards.
    sim.write_attr(_numvfs(sysfs), "0")
    sim.write_attr(autoprobe, "1\n")
    sim.write_attr(_numvfs(sysfs), "1")
    assert sysfs.vf(0, VF0).driver == "ixgbevf"


@pytest.mark.parametrize("value", ["2", "maybe", "-1", "\n"])
def test_autoprobe_invalid_value_is_einval(sim: SimHost, sysfs: Sysfs, value: str) -> None:
    autoprobe = sysfs.attr(PF0, "sriov_drivers_autoprobe")
    assert _errno_of(sim, autoprobe, value) == errno.EINVAL
    assert autoprobe.read_text() == "1\n"


@pytest.mark.parametrize(("value", "stored"), [("0", "0\n"), ("n", "0\n"), ("1\n", "1\n"),
                                               ("y", "1\n"), ("Y", "1\n"), ("off", "0\n")])
def test_autoprobe_accepts_kstrtobool(sim: SimHost, sysfs: Sysfs, value: str,
                                      stored: str) -> None:
    autoprobe = sysfs.attr(PF0, "sriov_drivers_autoprobe")
    sim.write_attr(autoprobe, value)
    assert autoprobe.read_text() == stored


# --------------------------------------------------------------------------- vfio-pci
def _vf_dir(sim: SimHost, vf: PciAddress) -> Path:
    return sim.root / "sys/bus/pci/devices" / str(vf)


def _group(sim: SimHost, vf: PciAddress) -> str:
    return os.path.basename(os.readlink(_vf_dir(sim, vf) / "iommu_group"))


def _to_vfio(sim: SimHost, vf: PciAddress) -> None:
    """libvirt's way: override, unbind, drivers_probe."""
    sim.write_attr(_vf_dir(sim, vf) / "driver_override", "vfio-pci")
    sim.write_attr(_vf_dir(sim, vf) / "driver" / "unbind", str(vf))
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", str(vf))


def test_bind_vf_to_vfio_pci_and_back(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "2")
    assert sim.modprobe(["vfio-pci"]).returncode == 0
    assert (sim.root / "sys/bus/pci/drivers/vfio-pci").is_dir()
    group = _group(sim, VF0)
    assert not (sim.root / "dev/vfio" / group).exists()

    _to_vfio(sim, VF0)
    vf = sysfs.vf(0, VF0)
    assert (vf.driver, vf.netdevs) == ("vfio-pci", ())
    assert os.readlink(_vf_dir(sim, VF0) / "driver") == "../../../bus/pci/drivers/vfio-pci"
    assert (_vf_dir(sim, VF0) / "driver_override").read_text() == "vfio-pci\n"
    assert "enp5s0f0v0" not in sysfs.netdev_names()
    assert not (sim.root / "sys/bus/pci/drivers/ixgbevf" / str(VF0)).exists()
    assert (sim.root / "sys/bus/pci/drivers/vfio-pci" / str(VF0)).is_symlink()
    assert (sim.root / "dev/vfio" / group).exists()
    # the other VF is untouched
    assert (sysfs.vf(1, VF1).driver, sysfs.vf(1, VF1).netdev) == ("ixgbevf", "enp5s0f0v1")

    # undo: clear the override, unbind, probe again
    sim.write_attr(_vf_dir(sim, VF0) / "driver_override", "\n")
    assert (_vf_dir(sim, VF0) / "driver_override").read_text() == "(null)\n"
    sim.write_attr(sim.root / "sys/bus/pci/drivers/vfio-pci/unbind", str(VF0))
    assert not (sim.root / "dev/vfio" / group).exists()
    assert sysfs.vf(0, VF0).driver is None
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", str(VF0))
    vf = sysfs.vf(0, VF0)
    assert (vf.driver, vf.netdev) == ("ixgbevf", "enp5s0f0v0")
    assert "enp5s0f0v0" in sysfs.netdev_names()


def test_override_to_an_unloaded_vfio_pci_leaves_the_vf_unbound(sim: SimHost,
                                                                sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "1")
    assert not (sim.root / "sys/bus/pci/drivers/vfio-pci").exists()
    _to_vfio(sim, VF0)  # drivers_probe succeeds even when nothing matches
    vf = sysfs.vf(0, VF0)
    assert (vf.driver, vf.netdevs) == (None, ())
    assert not (_vf_dir(sim, VF0) / "driver").exists()
    assert os.listdir(sim.root / "dev/vfio") == []
    # Loading vfio-pci attaches the device whose override names it.
    assert sim.modprobe(["vfio-pci"]).returncode == 0
    assert sysfs.vf(0, VF0).driver == "vfio-pci"
    assert (sim.root / "dev/vfio" / _group(sim, VF0)).exists()


def test_disabling_vfs_releases_vfio_groups(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "2")
    sim.modprobe(["vfio-pci"])
    _to_vfio(sim, VF0)
    _to_vfio(sim, VF1)
    assert len(os.listdir(sim.root / "dev/vfio")) == 2
    sim.write_attr(_numvfs(sysfs), "0")
    assert os.listdir(sim.root / "dev/vfio") == []
    assert sorted(os.listdir(sim.root / "sys/bus/pci/drivers/vfio-pci")) == [
        "bind", "new_id", "remove_id", "unbind"]


def test_unbind_from_the_wrong_driver_is_enodev(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "1")
    assert _errno_of(sim, sim.root / "sys/bus/pci/drivers/iavf/unbind",
                     str(VF0)) == errno.ENODEV
    assert _errno_of(sim, sim.root / "sys/bus/pci/drivers/ixgbevf/unbind",
                     "0000:42:00.0") == errno.ENODEV
    assert sysfs.vf(0, VF0).driver == "ixgbevf"


def test_bind_while_bound_is_ebusy(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "1")
    assert _errno_of(sim, sim.root / "sys/bus/pci/drivers/ixgbevf/bind",
                     str(VF0)) == errno.EBUSY
    assert sysfs.vf(0, VF0).driver == "ixgbevf"


def test_bind_to_a_driver_that_does_not_match_is_enodev(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs), "1")
    sim.write_attr(_vf_dir(sim, VF0) / "driver" / "unbind", str(VF0))
    assert _errno_of(sim, sim.root / "sys/bus/pci/drivers/iavf/bind", str(VF0)) == errno.ENODEV
    assert sysfs.vf(0, VF0).driver is None
    sim.write_attr(sim.root / "sys/bus/pci/drivers/ixgbevf/bind", str(VF0))
    assert (sysfs.vf(0, VF0).driver, sysfs.vf(0, VF0).netdev) == ("ixgbevf", "enp5s0f0v0")


def test_drivers_probe_of_an_unknown_device_is_enodev(sim: SimHost) -> None:
    assert _errno_of(sim, sim.root / "sys/bus/pci/drivers_probe",
                     "0000:42:00.0") == errno.ENODEV


# --------------------------------------------------------------------------- refused writes
@pytest.mark.parametrize("attr", ["sriov_totalvfs", "vendor", "device", "class", "numa_node",
                                  "sriov_offset", "sriov_stride", "sriov_vf_device"])
def test_read_only_attribute_is_eacces(sim: SimHost, sysfs: Sysfs, attr: str) -> None:
    path = sysfs.attr(PF0, attr)
    before = path.read_text()
    assert _errno_of(sim, path, "1") == errno.EACCES
    assert path.read_text() == before


def test_missing_attribute_is_enoent(sim: SimHost, sysfs: Sysfs) -> None:
    assert _errno_of(sim, sysfs.attr(PF0, "no_such_attr"), "1") == errno.ENOENT
    assert not sysfs.attr(PF0, "no_such_attr").exists()


def test_path_outside_the_sim_is_eacces(sim: SimHost, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.write_text("0\n")
    assert _errno_of(sim, outside, "1") == errno.EACCES
    assert _errno_of(sim, sim.root / ".." / "elsewhere", "1") == errno.EACCES
    assert outside.read_text() == "0\n"


def test_oserror_carries_the_path(sim: SimHost, sysfs: Sysfs) -> None:
    with pytest.raises(OSError) as excinfo:
        sim.write_attr(_numvfs(sysfs), "64")
    assert excinfo.value.strerror == os.strerror(errno.ERANGE)
    assert excinfo.value.filename is not None
    assert excinfo.value.filename.endswith("sriov_numvfs")


def test_clearing_the_override_and_unbinding_leaves_the_vf_driverless_until_a_probe(
        sim: SimHost, sysfs: Sysfs) -> None:
    """The vfio release path, step by step as the real igb guest showed it (tests/realkernel,
    scenario "binding"): nothing re-probes a VF by itself after its override is cleared and
    vfio-pci lets go; only a write to drivers_probe brings the VF driver back."""
    from vfpool.host import binding

    sim.write_attr(_numvfs(sysfs), "1")
    vf = sysfs.pf(PF0).vfs[0].pci
    device = sim.root / "sys/bus/pci/devices" / str(vf)
    binding.bind(sysfs, vf, "vfio-pci")
    assert sysfs.pci_function(vf).driver == "vfio-pci"
    sim.write_attr(device / "driver_override", "\n")
    sim.write_attr(sim.root / "sys/bus/pci/drivers/vfio-pci/unbind", str(vf))
    assert sysfs.pci_function(vf).driver is None
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", str(vf))
    assert sysfs.pci_function(vf).driver == "ixgbevf"
    # host.binding's restore does the probe itself, and leaves no override behind once the
    # caller puts the saved one (none) back, as a lease release does.
    binding.bind(sysfs, vf, "vfio-pci")
    binding.bind(sysfs, vf, "ixgbevf")
    binding.set_override(sysfs, vf, None)
    assert (sysfs.pci_function(vf).driver, sysfs.driver_override(vf)) == ("ixgbevf", None)


# --------------------------------------------------------------------------- VF MAC via the PF
@pytest.mark.parametrize(("pf_netdev", "live"), [("enp5s0f0", False), ("enp133s0f0", True)])
def test_a_bound_vf_takes_a_mac_set_through_the_pf_as_its_driver_does(
        sim: SimHost, sysfs: Sysfs, pf_netdev: str, live: bool) -> None:
    # ixgbe (like igb) hands the MAC to the VF only when the VF driver probes again; i40e
    # resets the VF itself, so its iavf netdev changes at once.
    from vfpool.model.vfconfig import VfConfig
    pf = next(pf for pf in sysfs.pfs() if pf.netdev == pf_netdev)
    sim.write_attr(sysfs.attr(pf.pci, "sriov_numvfs"), "1")
    [vf] = sysfs.pf(pf.pci).vfs
    before = vf.netdevs[0].mac
    sim.set_vf(pf_netdev, 0, "mac", VfConfig(mac="52:54:00:12:34:56"))
    [vf] = sysfs.pf(pf.pci).vfs
    assert vf.netdevs[0].mac == ("52:54:00:12:34:56" if live else before)
    driver = vf.driver
    assert driver is not None
    sim.write_attr(sim.root / "sys/bus/pci/drivers" / driver / "unbind", str(vf.pci))
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", str(vf.pci))
    [vf] = sysfs.pf(pf.pci).vfs
    assert vf.netdevs[0].mac == "52:54:00:12:34:56"
