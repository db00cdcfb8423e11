"""The simulated host's modules (modprobe and module parameters), reboots and injected faults."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from vfpool.errors import InvalidInput
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.sim.host import SimHost

PF0 = PciAddress.parse("0000:05:00.0")
PF1 = PciAddress.parse("0000:05:00.1")
X710_PF0 = PciAddress.parse("0000:85:00.0")
VF0 = PciAddress.parse("0000:05:10.0")
NUMVFS_REL = "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs"


def _options(sim: SimHost, text: str) -> None:
    (sim.root / "etc/modprobe.d/x.conf").write_text(text)


def _numvfs(sysfs: Sysfs, pf: PciAddress = PF0) -> Path:
    return sysfs.attr(pf, "sriov_numvfs")


def _reload(sim: SimHost, module: str) -> None:
    assert sim.modprobe(["-r", module]).returncode == 0
    result = sim.modprobe([module])
    assert (result.returncode, result.stderr) == (0, "")


# --------------------------------------------------------------------------- modprobe
def test_modprobe_r_ixgbe_takes_down_both_ports(sim: SimHost, sysfs: Sysfs) -> None:
    sim.write_attr(_numvfs(sysfs, PF0), "2")
    sim.write_attr(_numvfs(sysfs, PF1), "1")
    result = sim.modprobe(["-r", "ixgbe"])
    assert (result.argv, result.returncode) == (("modprobe", "-r", "ixgbe"), 0)
    assert not (sim.root / "sys/bus/pci/drivers/ixgbe").exists()
    assert not (sim.root / "sys/module/ixgbe").exists()
    for pf_address in (PF0, PF1):
        pf = sysfs.pf(pf_address)
        assert (pf.driver, pf.netdevs, pf.numvfs, pf.vfs) == (None, (), 0, ())
    assert not any(name.startswith("enp5s0") for name in sysfs.netdev_names())
    assert not any(entry.startswith("0000:05:1") for entry
                   in os.listdir(sim.root / "sys/bus/pci/devices"))
    assert not any(entry.startswith("0000:05:1") for entry
                   in os.listdir(sim.root / "sys/bus/pci/drivers/ixgbevf"))
    # Other drivers' ports stay up.
    assert sysfs.pf(X710_PF0).driver == "i40e"
    assert {"enp133s0f0", "enp133s0f1", "eno1"} <= set(sysfs.netdev_names())
    # Unloading an unloaded module is not an error.
    assert sim.modprobe(["-r", "ixgbe"]).returncode == 0


def test_ixgbe_max_vfs_brings_both_ports_back_with_vfs(sim: SimHost, sysfs: Sysfs) -> None:
    _options(sim, "# sized at load\noptions ixgbe max_vfs=4\n")
    assert sim.module_options("ixgbe") == {"max_vfs": "4"}
    _reload(sim, "ixgbe")
    assert (sim.root / "sys/module/ixgbe/parameters/max_vfs").read_text() == "4\n"
    for pf_address, netdev in ((PF0, "enp5s0f0"), (PF1, "enp5s0f1")):
        pf = sysfs.pf(pf_address)
        assert (pf.driver, pf.netdev, pf.numvfs) == ("ixgbe", netdev, 4)
        assert [(vf.driver, vf.netdev) for vf in pf.vfs] == [
            ("ixgbevf", f"{netdev}v{i}") for i in range(4)]
    assert _numvfs(sysfs).read_text() == "4\n"
    # The X710 has no module parameter and is untouched.
    assert sysfs.pf(X710_PF0).numvfs == 0


def test_modprobe_of_a_loaded_module_does_nothing(sim: SimHost, sysfs: Sysfs) -> None:
    _options(sim, "options ixgbe max_vfs=4\n")
    assert sim.modprobe(["ixgbe"]).returncode == 0
    assert sysfs.pf(PF0).numvfs == 0


def test_modprobe_dashes_and_underscores_name_one_module(sim: SimHost, sysfs: Sysfs) -> None:
    assert sim.modprobe(["vfio_pci"]).returncode == 0
    assert (sim.root / "sys/bus/pci/drivers/vfio-pci").is_dir()
    assert sim.modprobe(["--remove", "vfio-pci"]).returncode == 0
    assert not (sim.root / "sys/bus/pci/drivers/vfio-pci").exists()


def test_module_options_are_read_like_modprobe(sim: SimHost) -> None:
    (sim.root / "etc/modprobe.d/a.conf").write_text(
        "options ixgbe max_vfs=2  # first\n"
        "options igb max_vfs=5\n"
        "#options ixgbe max_vfs=9\n"
        "blacklist ixgbevf\n")
    (sim.root / "etc/modprobe.d/b.conf").write_text(
        "options ixgbe max_vfs=3 allow_unsupported_sfp=1\n")
    (sim.root / "etc/modprobe.d/c.conf.disabled").write_text("options ixgbe max_vfs=7\n")
    assert sim.module_options("ixgbe") == {"max_vfs": "3", "allow_unsupported_sfp": "1"}
    assert sim.module_options("igb") == {"max_vfs": "5"}
    assert sim.module_options("i40e") == {}


@pytest.mark.parametrize(("spec", "value", "count"), [
    ("intel-i350@0000:03:00.0", "9", 7),  # igb clamps to 7
    ("intel-82576@0000:03:00.0", "63", 7),
    ("intel-82576@0000:03:00.0", "3", 3),
    ("intel-i350@0000:03:00.0", "0", 0),
])
def test_igb_max_vfs(make_sim: Callable[..., SimHost], spec: str, value: str,
                     count: int) -> None:
    sim = make_sim(spec)
    _options(sim, f"options igb max_vfs={value}\n")
    _reload(sim, "igb")
    sysfs = Sysfs(sim)
    for pf in sysfs.pfs(with_vfs=True):
        assert (pf.driver, pf.numvfs, len(pf.vfs)) == ("igb", count, count)
        assert {vf.driver for vf in pf.vfs} <= {"igbvf"}


def test_max_vfs_above_totalvfs_enables_no_vfs(make_sim: Callable[..., SimHost]) -> None:
    # pci_enable_sriov() refuses more VFs than TotalVFs; ixgbe logs "Failed to enable PCI
    # sriov" and runs without VFs. VFs past TotalVFs would also land on the X710's addresses.
    sim = make_sim("intel-82599@0000:05:00.0:totalvfs=8", "intel-x710@0000:05:12.0:totalvfs=4")
    sysfs = Sysfs(sim)
    _options(sim, "options ixgbe max_vfs=20\n")
    _reload(sim, "ixgbe")
    for pf_address in (PF0, PF1):
        pf = sysfs.pf(pf_address)
        assert (pf.driver, pf.totalvfs, pf.numvfs, pf.vfs) == ("ixgbe", 8, 0, ())
    x710 = sysfs.pf(PciAddress.parse("0000:05:12.0"))
    assert (x710.device, x710.driver) == (0x1572, "i40e")


def test_mlx4_num_vfs_and_probe_vf(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3@0000:07:00.0")
    _options(sim, "options mlx4_core num_vfs=4 probe_vf=2\n")
    _reload(sim, "mlx4_core")
    sysfs = Sysfs(sim)
    pf = sysfs.pf(PciAddress.parse("0000:07:00.0"))
    assert (pf.driver, pf.numvfs) == ("mlx4_core", 4)
    assert [n.name for n in pf.netdevs] == ["enp7s0", "enp7s0d1"]
    assert [(str(vf.pci), vf.driver) for vf in pf.vfs] == [
        ("0000:07:00.1", "mlx4_core"), ("0000:07:00.2", "mlx4_core"),
        ("0000:07:00.3", None), ("0000:07:00.4", None)]
    assert [vf.netdev for vf in pf.vfs] == ["enp7s0v0", "enp7s0v1", None, None]
    # Still no sysfs resize path, even with VFs enabled.
    with pytest.raises(OSError) as excinfo:
        sim.write_attr(sysfs.attr(pf.pci, "sriov_numvfs"), "0")
    assert excinfo.value.errno == errno.ENOENT


def test_mlx4_per_port_arrays_are_summed(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3@0000:07:00.0")
    _options(sim, "options mlx4_core num_vfs=2,1,1 probe_vf=1,0,0\n")
    _reload(sim, "mlx4_core")
    pf = Sysfs(sim).pf(PciAddress.parse("0000:07:00.0"))
    assert pf.numvfs == 4
    assert [vf.driver for vf in pf.vfs] == ["mlx4_core", None, None, None]


@pytest.mark.parametrize(("module", "options", "reason"), [
    ("ixgbe", "options ixgbe max_vfs=four\n", "Invalid argument"),
    ("ixgbe", "options ixgbe max_vfs=-1\n", "Invalid argument"),
    ("igb", "options igb max_vfs=2,2\n", "Invalid argument"),
    ("mlx4_core", "options mlx4_core num_vfs=1,2,3,4\n", "Invalid argument"),
    ("mlx4_core", "options mlx4_core num_vfs=4 probe_vf=x\n", "Invalid argument"),
    ("mlx4_core", "options mlx4_core num_vfs=300\n", ""),  # not a byte
])
def test_unparsable_module_option_fails_to_insert(make_sim: Callable[..., SimHost],
                                                  module: str, options: str,
                                                  reason: str) -> None:
    sim = make_sim("intel-82599@0000:05:00.0", "intel-i350@0000:03:00.0",
                   "mellanox-cx3@0000:07:00.0")
    _options(sim, options)
    assert sim.modprobe(["-r", module]).returncode == 0
    result = sim.modprobe([module])
    assert result.returncode == 1
    assert f"could not insert '{module}'" in result.stderr
    assert reason in result.stderr
    assert not (sim.root / "sys/bus/pci/drivers" / module).exists()
    assert not any(pf.driver == module for pf in Sysfs(sim).pfs())


def test_unknown_module_is_not_found(sim: SimHost) -> None:
    result = sim.modprobe(["bnxt_foo"])
    assert result.returncode == 1
    assert "Module bnxt_foo not found" in result.stderr
    assert not (sim.root / "sys/bus/pci/drivers/bnxt_foo").exists()
    assert sim.modprobe(["-r", "nosuchmod"]).returncode == 1


def test_modprobe_needs_one_module_name(sim: SimHost) -> None:
    assert sim.modprobe([]).returncode == 1
    assert sim.modprobe(["ixgbe", "igb"]).returncode == 1


# --------------------------------------------------------------------------- reboot
def test_reboot(sim: SimHost, sysfs: Sysfs) -> None:
    boot_id = sysfs.boot_id()
    sim.write_attr(_numvfs(sysfs, PF0), "2")
    sim.write_attr(_numvfs(sysfs, X710_PF0), "3")
    sim.write_attr(sysfs.attr(PF1, "sriov_drivers_autoprobe"), "0")
    assert sim.modprobe(["vfio-pci"]).returncode == 0
    vf_dir = sim.root / "sys/bus/pci/devices" / str(VF0)
    sim.write_attr(vf_dir / "driver_override", "vfio-pci")
    sim.write_attr(vf_dir / "driver" / "unbind", str(VF0))
    sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", str(VF0))
    assert sysfs.vf(0, VF0).driver == "vfio-pci"
    sim.write_attr(sysfs.attr(PF1, "driver_override"), "ixgbe")

    sim.reboot()

    assert sysfs.boot_id() != boot_id
    assert [(str(pf.pci), pf.numvfs, len(pf.vfs)) for pf in sysfs.pfs(with_vfs=True)] == [
        ("0000:05:00.0", 0, 0), ("0000:05:00.1", 0, 0), ("0000:85:00.0", 0, 0),
        ("0000:85:00.1", 0, 0)]
    assert not vf_dir.exists()
    assert not (sim.root / "sys/bus/pci/drivers/vfio-pci").exists()
    assert not (sim.root / "sys/module/vfio_pci").exists()
    assert os.listdir(sim.root / "dev/vfio") == []
    assert sysfs.attr(PF1, "driver_override").read_text() == "(null)\n"
    assert sysfs.pf(PF1).drivers_autoprobe is True
    assert [pf.driver for pf in sysfs.pfs()] == ["ixgbe", "ixgbe", "i40e", "i40e"]
    assert sysfs.netdev_names() == ["eno1", "enp133s0f0", "enp133s0f1", "enp5s0f0",
                                    "enp5s0f1", "lo"]


def test_reboot_keeps_module_parameter_vfs(sim: SimHost, sysfs: Sysfs) -> None:
    _options(sim, "options ixgbe max_vfs=3\n")
    sim.write_attr(_numvfs(sysfs, X710_PF0), "5")
    sim.reboot()
    assert [pf.numvfs for pf in sysfs.pfs()] == [3, 3, 0, 0]
    assert [(vf.driver, vf.netdev) for vf in sysfs.pf(PF1).vfs] == [
        ("ixgbevf", "enp5s0f1v0"), ("ixgbevf", "enp5s0f1v1"), ("ixgbevf", "enp5s0f1v2")]


def test_reboot_gives_each_boot_a_new_id(sim: SimHost) -> None:
    seen = {sim.boot_id()}
    for _ in range(3):
        sim.reboot()
        seen.add(sim.boot_id())
    assert len(seen) == 4
    assert sim.state()["boot_count"] == 4


def test_cli_reboot(cli: Callable[..., CliResult], sim_root: Path) -> None:
    sim = SimHost(sim_root)
    sysfs = Sysfs(sim)
    _options(sim, "options ixgbe max_vfs=2\n")
    sim.write_attr(_numvfs(sysfs, X710_PF0), "4")
    sim.modprobe(["vfio-pci"])
    boot_id = sim.boot_id()
    result = cli("sim", "reboot", str(sim_root))
    assert result.exit_code == 0, result.stderr
    new_id = sim.boot_id()
    assert new_id != boot_id
    assert new_id in result.stderr + result.stdout
    assert [pf.numvfs for pf in sysfs.pfs()] == [2, 2, 0, 0]
    assert not (sim_root / "sys/bus/pci/drivers/vfio-pci").exists()


def test_cli_reboot_of_a_non_sim_is_not_found(cli: Callable[..., CliResult],
                                              tmp_path: Path) -> None:
    result = cli("sim", "reboot", str(tmp_path))
    assert result.exit_code == 3
    assert "is not a simulated host" in result.stderr


# --------------------------------------------------------------------------- faults
def test_errno_fault_fails_exactly_count_writes(sim: SimHost, sysfs: Sysfs) -> None:
    fault = sim.inject_fault(NUMVFS_REL, kind="errno", errno_code=errno.EIO, count=2)
    assert (fault.target, fault.kind, fault.errno, fault.remaining) == (
        "sys/devices/pci0000:00/0000:05:00.0/sriov_numvfs", "errno", errno.EIO, 2)
    for _ in range(2):
        with pytest.raises(OSError) as excinfo:
            sim.write_attr(_numvfs(sysfs), "4")
        assert excinfo.value.errno == errno.EIO
        assert _numvfs(sysfs).read_text() == "0\n"
    sim.write_attr(_numvfs(sysfs), "4")
    assert _numvfs(sysfs).read_text() == "4\n"
    assert sim.state()["faults"] == []


def test_fault_applies_only_to_its_target(sim: SimHost, sysfs: Sysfs) -> None:
    sim.inject_fault(str(_numvfs(sysfs, PF0)), kind="errno", errno_code=errno.EBUSY)
    sim.write_attr(_numvfs(sysfs, PF1), "1")
    assert _numvfs(sysfs, PF1).read_text() == "1\n"
    with pytest.raises(OSError) as excinfo:
        sim.write_attr(_numvfs(sysfs, PF0), "1")
    assert excinfo.value.errno == errno.EBUSY


def test_ignore_fault_reports_success_and_does_nothing(sim: SimHost, sysfs: Sysfs) -> None:
    sim.inject_fault(NUMVFS_REL, kind="ignore")
    sim.write_attr(_numvfs(sysfs), "4")  # no error, like bnxt_en with its PF down
    assert _numvfs(sysfs).read_text() == "0\n"
    assert sysfs.pf(PF0).vfs == ()
    sim.write_attr(_numvfs(sysfs), "4")
    assert _numvfs(sysfs).read_text() == "4\n"


def test_no_netdev_fault_creates_vfs_without_netdevs(sim: SimHost, sysfs: Sysfs) -> None:
    sim.inject_fault(NUMVFS_REL, kind="no-netdev")
    sim.write_attr(_numvfs(sysfs), "2")
    pf = sysfs.pf(PF0)
    assert pf.numvfs == 2
    assert [(vf.driver, vf.netdevs) for vf in pf.vfs] == [("ixgbevf", ()), ("ixgbevf", ())]
    assert not any(name.startswith("enp5s0f0v") for name in sysfs.netdev_names())


def test_modprobe_fault(sim: SimHost, sysfs: Sysfs) -> None:
    sim.inject_fault("modprobe:ixgbe", kind="errno", errno_code=errno.EIO)
    assert sim.modprobe(["-r", "ixgbe"]).returncode == 1  # the fault takes the next call
    assert sysfs.pf(PF0).driver == "ixgbe"
    assert sim.modprobe(["-r", "ixgbe"]).returncode == 0
    sim.inject_fault("modprobe:ixgbe", kind="errno", errno_code=errno.EIO)
    result = sim.modprobe(["ixgbe"])
    assert result.returncode == 1
    assert "could not insert 'ixgbe'" in result.stderr
    assert os.strerror(errno.EIO) in result.stderr
    assert sysfs.pf(PF0).driver is None
    assert sim.modprobe(["ixgbe"]).returncode == 0
    assert sysfs.pf(PF0).driver == "ixgbe"


def test_faults_survive_across_simhost_objects(sim_root: Path) -> None:
    SimHost(sim_root).inject_fault(NUMVFS_REL, kind="errno", errno_code=errno.EAGAIN, count=2)
    with pytest.raises(OSError) as excinfo:
        SimHost(sim_root).write_attr(sim_root / NUMVFS_REL, "1")
    assert excinfo.value.errno == errno.EAGAIN
    assert [f["remaining"] for f in SimHost(sim_root).state()["faults"]] == [1]
    with pytest.raises(OSError) as excinfo:
        SimHost(sim_root).write_attr(sim_root / NUMVFS_REL, "1")
    assert excinfo.value.errno == errno.EAGAIN
    SimHost(sim_root).write_attr(sim_root / NUMVFS_REL, "1")
    assert (sim_root / NUMVFS_REL).read_text() == "1\n"


def test_clear_faults(sim: SimHost, sysfs: Sysfs) -> None:
    sim.inject_fault(NUMVFS_REL, kind="errno", errno_code=errno.EIO, count=5)
    sim.clear_faults()
    sim.write_attr(_numvfs(sysfs), "1")
    assert _numvfs(sysfs).read_text() == "1\n"


@pytest.mark.parametrize(("target", "kwargs", "message"), [
    (NUMVFS_REL, {"kind": "errno"}, "needs an errno"),
    (NUMVFS_REL, {"kind": "errno", "errno_code": errno.EIO, "count": 0}, "at least one"),
    ("../../etc/passwd", {"kind": "ignore"}, "outside the simulated host"),
])
def test_invalid_faults(sim: SimHost, target: str, kwargs: dict[str, Any],
                        message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sim.inject_fault(target, **kwargs)
    assert sim.state()["faults"] == []


def test_cli_fault(cli: Callable[..., CliResult], sim_root: Path) -> None:
    result = cli("sim", "fault", str(sim_root), NUMVFS_REL, "--errno", "EIO")
    assert result.exit_code == 0, result.stderr
    sim = SimHost(sim_root)
    assert sim.state()["faults"] == [{
        "target": "sys/devices/pci0000:00/0000:05:00.0/sriov_numvfs", "kind": "errno",
        "errno": errno.EIO, "remaining": 1}]
    with pytest.raises(OSError) as excinfo:
        sim.write_attr(sim_root / NUMVFS_REL, "2")
    assert excinfo.value.errno == errno.EIO
    sim.write_attr(sim_root / NUMVFS_REL, "2")
    assert (sim_root / NUMVFS_REL).read_text() == "2\n"


@pytest.mark.parametrize(("args", "message"), [
    ((), "give exactly one of --errno, --ignore, --no-netdev and --hang"),
    (("--errno", "EIO", "--ignore"),
     "give exactly one of --errno, --ignore, --no-netdev and --hang"),
    (("--errno", "ENOTANERRNO"),
     "unknown errno 'ENOTANERRNO'; use a name such as EIO or EBUSY"),
])
def test_cli_fault_invalid(cli: Callable[..., CliResult], sim_root: Path,
                           args: tuple[str, ...], message: str) -> None:
    result = cli("sim", "fault", str(sim_root), NUMVFS_REL, *args)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert SimHost(sim_root).state()["faults"] == []
