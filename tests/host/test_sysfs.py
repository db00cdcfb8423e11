"""The simulated sysfs tree, and Sysfs reading it (and the real one) into snapshots."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from vfpool.errors import InvalidInput, NotFound
from vfpool.host import binding
from vfpool.host.kernel import RealKernel
from vfpool.host.sysfs import Sysfs, valid_ifname
from vfpool.model.pci import PciAddress
from vfpool.model.snapshot import PfSnapshot
from vfpool.sim.host import SimHost

PF0 = PciAddress.parse("0000:05:00.0")
PF1 = PciAddress.parse("0000:05:00.1")
X710_PF0 = PciAddress.parse("0000:85:00.0")
VF0 = PciAddress.parse("0000:05:10.0")
VF1 = PciAddress.parse("0000:05:10.2")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _enable(sim: SimHost, pf: PciAddress, count: int) -> None:
    sim.write_attr(Sysfs(sim).attr(pf, "sriov_numvfs"), str(count))


def _text(path: Path) -> str:
    return path.read_text()


# --------------------------------------------------------------------------- PF files
@pytest.mark.parametrize(("bdf", "vendor", "device", "numa", "totalvfs", "offset", "stride",
                          "vf_device"), [
    ("0000:05:00.0", "0x8086", "0x10fb", "0", "63", "128", "2", "10ed"),
    ("0000:05:00.1", "0x8086", "0x10fb", "0", "63", "128", "2", "10ed"),
    ("0000:85:00.0", "0x8086", "0x1572", "1", "64", "16", "1", "154c"),
    ("0000:85:00.1", "0x8086", "0x1572", "1", "64", "79", "1", "154c"),
])
def test_pf_attribute_files(sysfs: Sysfs, bdf: str, vendor: str, device: str, numa: str,
                            totalvfs: str, offset: str, stride: str, vf_device: str) -> None:
    address = PciAddress.parse(bdf)
    expected = {
        "vendor": f"{vendor}\n", "device": f"{device}\n", "class": "0x020000\n",
        "numa_node": f"{numa}\n", "sriov_totalvfs": f"{totalvfs}\n", "sriov_numvfs": "0\n",
        "sriov_offset": f"{offset}\n", "sriov_stride": f"{stride}\n",
        "sriov_vf_device": f"{vf_device}\n", "sriov_drivers_autoprobe": "1\n",
        "sriov_vf_total_msix": "0\n", "driver_override": "(null)\n",
    }
    assert {name: _text(sysfs.attr(address, name)) for name in expected} == expected


@pytest.mark.parametrize(("bdf", "driver"), [("0000:05:00.0", "ixgbe"),
                                              ("0000:85:00.1", "i40e"),
                                              ("0000:00:1f.6", "e1000e")])
def test_driver_link(sim: SimHost, sysfs: Sysfs, bdf: str, driver: str) -> None:
    link = sysfs.attr(PciAddress.parse(bdf), "driver")
    assert os.readlink(link) == f"../../../bus/pci/drivers/{driver}"
    assert link.resolve() == sim.root / "sys/bus/pci/drivers" / driver
    # and the driver lists the device back
    assert (sim.root / "sys/bus/pci/drivers" / driver / bdf).resolve() == \
        sim.root / "sys/devices/pci0000:00" / bdf


def test_bus_devices_are_links_into_the_tree(sim: SimHost, sysfs: Sysfs) -> None:
    for address in (PF0, PF1, X710_PF0, PciAddress.parse("0000:00:1f.6")):
        entry = sim.root / "sys/bus/pci/devices" / str(address)
        assert entry.is_symlink()
        assert entry.resolve() == sim.root / "sys/devices/pci0000:00" / str(address)
        assert entry.resolve().is_dir()


@pytest.mark.parametrize(("name", "bdf"), [("enp5s0f0", "0000:05:00.0"),
                                            ("enp5s0f1", "0000:05:00.1"),
                                            ("enp133s0f0", "0000:85:00.0"),
                                            ("enp133s0f1", "0000:85:00.1"),
                                            ("eno1", "0000:00:1f.6")])
def test_class_net_links_resolve_into_the_device(sim: SimHost, sysfs: Sysfs, name: str,
                                                 bdf: str) -> None:
    entry = sim.root / "sys/class/net" / name
    assert entry.is_symlink()
    device = sim.root / "sys/devices/pci0000:00" / bdf
    assert entry.resolve() == device / "net" / name
    assert (entry / "device").resolve() == device
    assert sysfs.netdev_device(name) == PciAddress.parse(bdf)


def test_netdev_names(sysfs: Sysfs) -> None:
    assert sysfs.netdev_names() == ["eno1", "enp133s0f0", "enp133s0f1", "enp5s0f0",
                                    "enp5s0f1", "lo"]
    assert sysfs.netdev_device("lo") is None


def test_pf_netdev_snapshot(sysfs: Sysfs) -> None:
    netdev = sysfs.pf(PF0).netdevs[0]
    assert netdev.name == "enp5s0f0"
    assert netdev.mtu == 1500
    assert netdev.operstate == "up"
    assert netdev.ifindex is not None and netdev.ifindex > 1
    assert netdev.mac is not None and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", netdev.mac)
    other = sysfs.pf(PF1).netdevs[0]
    assert (other.ifindex, other.mac) != (netdev.ifindex, netdev.mac)


def test_set_operstate_reaches_the_snapshot(sim: SimHost, sysfs: Sysfs) -> None:
    sim.set_operstate("enp5s0f1", "down")
    assert sysfs.pf(PF1).link == "down"
    assert sysfs.pf(PF0).link == "up"
    with pytest.raises(NotFound):
        sim.set_operstate("enp9s9f9", "down")


# --------------------------------------------------------------------------- VFs
def test_enabling_vfs_creates_links_and_netdevs(sim: SimHost, sysfs: Sysfs) -> None:
    _enable(sim, PF0, 2)
    pf_dir = sysfs.device_dir(PF0)
    assert os.readlink(pf_dir / "virtfn0") == "../0000:05:10.0"
    assert os.readlink(pf_dir / "virtfn1") == "../0000:05:10.2"
    assert not (pf_dir / "virtfn2").exists()
    for vf in (VF0, VF1):
        vf_dir = sysfs.device_dir(vf)
        assert os.readlink(vf_dir / "physfn") == "../0000:05:00.0"
        assert (vf_dir / "physfn").resolve() == pf_dir.resolve()
        assert _text(vf_dir / "vendor") == "0x8086\n"
        assert _text(vf_dir / "device") == "0x10ed\n"
        assert _text(vf_dir / "numa_node") == "0\n"
        assert not (vf_dir / "sriov_numvfs").exists()
        assert not (vf_dir / "sriov_totalvfs").exists()
    for index, vf in enumerate((VF0, VF1)):
        name = f"enp5s0f0v{index}"
        assert (sim.root / "sys/class/net" / name).resolve() == \
            sysfs.device_dir(vf).resolve() / "net" / name
        assert sysfs.netdev_device(name) == vf


def test_pf_snapshot_with_vfs(sim: SimHost, sysfs: Sysfs) -> None:
    _enable(sim, PF0, 3)
    pf = sysfs.pf(PF0)
    assert pf.numvfs == 3
    assert [(vf.index, str(vf.pci), vf.driver, vf.netdev) for vf in pf.vfs] == [
        (0, "0000:05:10.0", "ixgbevf", "enp5s0f0v0"),
        (1, "0000:05:10.2", "ixgbevf", "enp5s0f0v1"),
        (2, "0000:05:10.4", "ixgbevf", "enp5s0f0v2"),
    ]
    # Fresh Intel VFs read an all-zero MAC until the PF sets one.
    assert {vf.netdevs[0].mac for vf in pf.vfs} == {"00:00:00:00:00:00"}
    assert sysfs.pf(PF0, with_vfs=False).vfs == ()
    assert sysfs.pf(PF1).vfs == ()


def test_vfs_are_sorted_by_index_past_ten(sim: SimHost, sysfs: Sysfs) -> None:
    _enable(sim, PF0, 12)
    assert [vf.index for vf in sysfs.pf(PF0).vfs] == list(range(12))
    assert sysfs.pf(PF0).vfs[10].netdev == "enp5s0f0v10"


def test_a_virtfn_link_that_leaves_the_pfs_folder_is_not_followed(
        sim: SimHost, sysfs: Sysfs, tmp_path: Path) -> None:
    """A VF is read by the address its ``virtfn`` link names, under the root: a link that
    points anywhere else, here an absolute one out of the root, is not followed."""
    _enable(sim, PF0, 2)
    trap = tmp_path / "elsewhere" / str(VF1)
    trap.mkdir(parents=True)
    os.symlink("../../../bus/pci/drivers/vfio-pci", trap / "driver")
    pf_dir = sysfs.device_dir(PF0)
    (pf_dir / "virtfn1").unlink()
    os.symlink(trap, pf_dir / "virtfn1")
    assert [(vf.index, str(vf.pci), vf.driver, vf.netdev) for vf in sysfs.pf(PF0).vfs] == [
        (0, "0000:05:10.0", "ixgbevf", "enp5s0f0v0"),
        (1, "0000:05:10.2", "ixgbevf", "enp5s0f0v1"),  # the root's VF, not the trap's
    ]
    os.unlink(sysfs.device_dir(VF0) / "driver")
    assert [vf.driver for vf in sysfs.pf(PF0).vfs] == [None, "ixgbevf"]  # reads as unbound


def test_a_pfs_many_vfs_read_their_drivers_from_the_drivers_folders_alike(
        make_sim: Callable[..., SimHost]) -> None:
    """From BULK_DRIVERS VFs on, a PF's VFs take their drivers from the drivers' folders
    (one listing each) instead of a lookup per VF: the snapshot is the same either way."""
    sim = make_sim("intel-e810@0000:3b:00.0:totalvfs=128")
    sysfs = Sysfs(sim)
    pf = sysfs.pfs()[0].pci
    _enable(sim, pf, Sysfs.BULK_DRIVERS + 6)
    vfs = sysfs.pf(pf).vfs
    binding.bind(sysfs, vfs[3].pci, None)
    binding.bind(sysfs, vfs[5].pci, "vfio-pci")
    one_by_one = Sysfs(sim)
    one_by_one.BULK_DRIVERS = 10**6
    bulk = Sysfs(sim).pf(pf)
    assert bulk == one_by_one.pf(pf)
    drivers = [vf.driver for vf in bulk.vfs]
    assert (drivers[3], drivers[5], drivers.count("iavf")) == (None, "vfio-pci", len(vfs) - 2)
    assert bulk.vfs[0].netdev == "enp59s0f0v0" and bulk.vfs[3].netdevs == ()
    assert Sysfs(sim).bound_devices()[str(pf)] == "ice"


@pytest.mark.parametrize(("spec", "vf_driver", "first_vf", "vf_netdev"), [
    ("intel-82599@0000:05:00.0", "ixgbevf", "0000:05:10.0", "enp5s0f0v0"),
    ("intel-x710@0000:85:00.0", "iavf", "0000:85:02.0", "enp133s0f0v0"),
    ("intel-e810@0000:3b:00.0", "iavf", "0000:3b:01.0", "enp59s0f0v0"),
    ("intel-i350@0000:03:00.0", "igbvf", "0000:03:10.0", "enp3s0f0v0"),
    ("intel-82576@0000:03:00.0", "igbvf", "0000:03:10.0", "enp3s0f0v0"),
    ("mellanox-cx5@0000:01:00.0", "mlx5_core", "0000:01:00.2", "enp1s0f0np0v0"),
])
def test_vf_driver_and_netdev_per_family(make_sim: Callable[..., SimHost], spec: str,
                                         vf_driver: str, first_vf: str, vf_netdev: str) -> None:
    sim = make_sim(spec)
    sysfs = Sysfs(sim)
    pf_address = sysfs.pfs()[0].pci
    _enable(sim, pf_address, 1)
    (vf,) = sysfs.pf(pf_address).vfs
    assert (str(vf.pci), vf.driver, vf.netdev) == (first_vf, vf_driver, vf_netdev)


def test_mlx5_vf_macs_are_not_zero(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx5@0000:01:00.0")
    _enable(sim, PciAddress.parse("0000:01:00.0"), 2)
    macs = [vf.netdevs[0].mac for vf in Sysfs(sim).pf(PciAddress.parse("0000:01:00.0")).vfs]
    assert "00:00:00:00:00:00" not in macs
    assert len(set(macs)) == 2


# --------------------------------------------------------------------------- snapshots
def test_pfs_snapshot_fields(sysfs: Sysfs) -> None:
    found = sysfs.pfs()
    assert all(isinstance(pf, PfSnapshot) for pf in found)
    first = found[0]
    assert first == sysfs.pf(PF0, with_vfs=False)
    assert (str(first.pci), first.vendor, first.device, first.driver) == (
        "0000:05:00.0", 0x8086, 0x10FB, "ixgbe")
    assert (first.totalvfs, first.numvfs, first.offset, first.stride) == (63, 0, 128, 2)
    assert (first.vf_device, first.numa_node, first.drivers_autoprobe) == (0x10ED, 0, True)
    assert first.model == "82599ES 10-Gigabit SFI/SFP+ Network Connection"
    assert first.label == "0000:05:00.0 (enp5s0f0)"
    assert [pf.numa_node for pf in found] == [0, 0, 1, 1]


def test_numa_minus_one_reads_as_none(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-82599@0000:05:00.0:numa=-1")
    assert _text(sim.root / "sys/bus/pci/devices/0000:05:00.0/numa_node") == "-1\n"
    assert [pf.numa_node for pf in Sysfs(sim).pfs()] == [None, None]


def test_pf_of_a_non_pf_is_not_found(sim: SimHost, sysfs: Sysfs) -> None:
    with pytest.raises(NotFound):
        sysfs.pf(PciAddress.parse("0000:00:1f.6"))
    with pytest.raises(NotFound):
        sysfs.pf(PciAddress.parse("0000:42:00.0"))


def test_pf_without_driver(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(sim.root / "sys/bus/pci/drivers/ixgbe/unbind", str(PF1))
    pf = sysfs.pf(PF1)
    assert (pf.driver, pf.netdevs, pf.netdev, pf.link) == (None, (), None, None)
    assert pf.label == "0000:05:00.1"
    assert "enp5s0f1" not in sysfs.netdev_names()


def test_mlx4_pf_has_two_netdevs_that_both_resolve_to_it(
        make_sim: Callable[..., SimHost]) -> None:
    sysfs = Sysfs(make_sim("mellanox-cx3@0000:07:00.0"))
    pf_address = PciAddress.parse("0000:07:00.0")
    (pf,) = sysfs.pfs()
    assert [n.name for n in pf.netdevs] == ["enp7s0", "enp7s0d1"]
    assert pf.netdev == "enp7s0"
    assert (pf.driver, pf.totalvfs, pf.offset, pf.stride) == ("mlx4_core", 63, 1, 1)
    for name in ("enp7s0", "enp7s0d1"):
        assert sysfs.netdev_device(name) == pf_address
        assert sysfs.resolve_pf(name).pci == pf_address


def test_pfs_on_the_real_machine() -> None:
    found = Sysfs(RealKernel(Path("/"))).pfs()
    assert isinstance(found, list)
    assert all(isinstance(pf, PfSnapshot) and pf.totalvfs >= 1 for pf in found)


def test_boot_id_reads_back(sim: SimHost, sysfs: Sysfs) -> None:
    boot_id = sysfs.boot_id()
    assert UUID.match(boot_id)
    assert boot_id == sim.boot_id()
    assert _text(sim.root / "proc/sys/kernel/random/boot_id") == boot_id + "\n"


def test_boot_id_missing(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no boot id"):
        Sysfs(RealKernel(tmp_path)).boot_id()


def test_empty_root_has_no_pfs(tmp_path: Path) -> None:
    sysfs = Sysfs(RealKernel(tmp_path))
    assert (sysfs.pfs(), sysfs.pci_addresses(), sysfs.netdev_names()) == ([], [], [])


# --------------------------------------------------------------------------- resolve_pf
@pytest.mark.parametrize(("text", "bdf"), [
    ("0000:05:00.0", "0000:05:00.0"),
    ("05:00.0", "0000:05:00.0"),
    ("05:00.1", "0000:05:00.1"),
    ("0000:85:00.1", "0000:85:00.1"),
    ("enp5s0f0", "0000:05:00.0"),
    ("enp133s0f1", "0000:85:00.1"),
    (" enp5s0f1\n", "0000:05:00.1"),
])
def test_resolve_pf(sysfs: Sysfs, text: str, bdf: str) -> None:
    pf = sysfs.resolve_pf(text)
    assert str(pf.pci) == bdf
    assert pf.totalvfs >= 1


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b", "", "has space", "x" * 16,
                                  "0000:05:20.0", "."])
def test_resolve_pf_invalid_text(sysfs: Sysfs, text: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        sysfs.resolve_pf(text)
    assert excinfo.value.exit_code == 2


@pytest.mark.parametrize("text", ["enp9s0f0", "0000:42:00.0", "42:00.0", "ens1"])
def test_resolve_pf_unknown(sysfs: Sysfs, text: str) -> None:
    with pytest.raises(NotFound) as excinfo:
        sysfs.resolve_pf(text)
    assert excinfo.value.exit_code == 3


@pytest.mark.parametrize("text", ["eno1", "0000:00:1f.6"])
def test_resolve_pf_non_sriov_names_the_driver(sysfs: Sysfs, text: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        sysfs.resolve_pf(text)
    assert str(excinfo.value) == "0000:00:1f.6 (eno1) is not SR-IOV capable (driver e1000e)"
    assert excinfo.value.exit_code == 2


def test_resolve_pf_loopback(sysfs: Sysfs) -> None:
    with pytest.raises(InvalidInput, match="interface lo is not a PCI device") as excinfo:
        sysfs.resolve_pf("lo")
    assert excinfo.value.exit_code == 2


@pytest.mark.parametrize("text", ["0000:05:10.2", "05:10.2", "enp5s0f0v1"])
def test_resolve_pf_refuses_a_vf(sim: SimHost, sysfs: Sysfs, text: str) -> None:
    _enable(sim, PF0, 2)
    with pytest.raises(InvalidInput) as excinfo:
        sysfs.resolve_pf(text)
    assert str(excinfo.value) == "0000:05:10.2 (enp5s0f0v1) is a VF of PF 0000:05:00.0, not a PF"


# (name, valid per the kernel's dev_valid_name())
IFNAMES = [
    ("enp5s0f0", True),
    ("enp133s0f0v63", True),
    ("enp1s0f0np0", True),
    ("eth0", True),
    ("a", True),
    ("x" * 15, True),
    ("x" * 16, False),  # IFNAMSIZ counts the NUL
    ("é" * 7, True),  # 14 bytes
    ("é" * 8, False),  # 16 bytes
    ("", False),
    (".", False),
    ("..", False),
    ("...", True),
    ("a/b", False),
    ("../../etc/passwd", False),
    ("vlan:1", False),
    ("eth 0", False),
    ("eth0\n", False),
    ("\teth0", False),
    ("br-lan.100", True),
    ("veth@peer", True),
]


@pytest.mark.parametrize(("name", "valid"), IFNAMES)
def test_valid_ifname(name: str, valid: bool) -> None:
    assert valid_ifname(name) is valid


def test_a_netdev_counts_as_handled_once_udev_has_its_entry(sim: SimHost, sysfs: Sysfs) -> None:
    [netdev] = sysfs.pf(PciAddress.parse("0000:05:00.0")).netdevs
    assert netdev.ifindex is not None
    # No udev running under this root (no control socket): nothing to wait for.
    assert sysfs.udev_done_with(netdev)
    udev = sim.root / "run/udev"
    (udev / "data").mkdir(parents=True)
    (udev / "control").touch()
    assert not sysfs.udev_done_with(netdev)  # udev runs and has not handled it yet
    (udev / "data" / f"n{netdev.ifindex}").write_text("I:1\n")
    assert sysfs.udev_done_with(netdev)
