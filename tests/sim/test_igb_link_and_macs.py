"""Two behaviours of the 82576/I350 (igb, igbvf) that the real kernel showed the sim lacked:

- igbvf makes up a MAC at probe when the PF gives none and registers it with igb, whose VF list
  then shows it (a rebind keeps it; one the PF set wins; vfio-pci alone leaves zero);
- sizing closes and reopens the PF (igb_sriov_reinit), so its carrier drops and comes back a
  moment later, and rates are refused meanwhile (ixgbe and i40e bounce too; ice and mlx5 not).

Everything is read back as vfpool reads it: sysfs files, and the PF's VF list."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vfpool.host import binding, sriov
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.vfconfig import VfConfig
from vfpool.sim.host import SimHost

PF = PciAddress.parse("0000:03:00.0")
NETDEV = "enp3s0f0"
ZERO = "00:00:00:00:00:00"


@pytest.fixture
def igb(make_sim: Callable[..., SimHost]) -> SimHost:
    return make_sim("intel-82576@0000:03:00.0")


def _write(sim: SimHost, attr: str, value: str, pf: PciAddress = PF) -> None:
    sim.write_attr(Sysfs(sim).attr(pf, attr), value)


def _pf_mac(sim: SimHost, index: int) -> str:
    mac = sim.vf_configs(NETDEV)[index].mac
    assert mac is not None
    return mac


def _netdev_mac(sim: SimHost, index: int) -> str | None:
    vf = Sysfs(sim).virtfn(PF, index)
    assert vf is not None
    return vf.netdevs[0].mac if vf.netdevs else None


def _local_unicast(mac: str) -> bool:
    first = int(mac[:2], 16)
    return mac != ZERO and bool(first & 2) and not first & 1


def _rebind(sim: SimHost, index: int, driver: str = "igbvf") -> None:
    vf = Sysfs(sim).virtfn(PF, index)
    assert vf is not None
    binding.bind(Sysfs(sim), vf.pci, None)
    binding.bind(Sysfs(sim), vf.pci, driver)


def _carrier(sim: SimHost, netdev: str) -> str | None:
    path = sim.root / "sys/class/net" / netdev / "carrier"
    return path.read_text().strip() if path.exists() else None


def _operstate(sim: SimHost, netdev: str) -> str:
    return (sim.root / "sys/class/net" / netdev / "operstate").read_text().strip()


# --------------------------------------------------------------------------- igbvf's MAC
def test_igbvf_registers_a_random_local_unicast_mac_with_igb_at_probe(igb: SimHost) -> None:
    _write(igb, "sriov_numvfs", "2\n")
    macs = [_pf_mac(igb, index) for index in (0, 1)]
    assert all(_local_unicast(mac) for mac in macs)
    assert macs == [_netdev_mac(igb, 0), _netdev_mac(igb, 1)]  # the PF lists the VF's own
    assert macs[0] != macs[1]


def test_a_rebind_keeps_the_mac_and_the_pf_can_set_or_clear_it(igb: SimHost) -> None:
    _write(igb, "sriov_numvfs", "2\n")
    first = _pf_mac(igb, 0)
    _rebind(igb, 0)
    # igb_vf_reset_msg() answers igbvf's reset with the MAC it holds (the real igb kept it).
    assert (_pf_mac(igb, 0), _netdev_mac(igb, 0)) == (first, first)
    _write(igb, "sriov_numvfs", "0\n")
    _write(igb, "sriov_numvfs", "2\n")  # igb_vf_configure(): new VFs start at zero again
    assert _pf_mac(igb, 0) != first and _local_unicast(_pf_mac(igb, 0))
    igb.set_vf(NETDEV, 1, "mac", VfConfig(mac="02:00:00:00:20:01"))
    assert _netdev_mac(igb, 1) != "02:00:00:00:20:01"  # igb: only at the next probe
    for _ in range(2):
        _rebind(igb, 1)
        assert (_pf_mac(igb, 1), _netdev_mac(igb, 1)) == ("02:00:00:00:20:01",) * 2
    # A zero MAC (libvirt restoring a VF that had none) gives the VF back its own.
    igb.set_vf(NETDEV, 1, "mac", VfConfig(mac=ZERO))
    assert _pf_mac(igb, 1) == ZERO
    _rebind(igb, 1)
    assert _local_unicast(_pf_mac(igb, 1)) and _pf_mac(igb, 1) != "02:00:00:00:20:01"


def test_a_vf_only_vfio_pci_had_stays_at_zero(igb: SimHost) -> None:
    _write(igb, "sriov_drivers_autoprobe", "0\n")
    _write(igb, "sriov_numvfs", "1\n")
    vf = Sysfs(igb).virtfn(PF, 0)
    assert vf is not None
    binding.bind(Sysfs(igb), vf.pci, "vfio-pci")
    assert _pf_mac(igb, 0) == ZERO


def test_with_the_pf_down_igbvf_keeps_its_mac_to_itself(igb: SimHost) -> None:
    igb.set_link(NETDEV, up=False)  # igb answers the mailbox only while the PF is open
    _write(igb, "sriov_numvfs", "1\n")
    mac = _netdev_mac(igb, 0)
    assert mac is not None and _local_unicast(mac)
    assert _pf_mac(igb, 0) == ZERO


def test_after_a_reboot_module_param_vfs_are_probed_before_the_pfs_come_up(
        igb: SimHost) -> None:
    (igb.root / "etc/modprobe.d/igb.conf").write_text("options igb max_vfs=2\n")
    igb.reboot()
    assert [vf.driver for vf in Sysfs(igb).pf(PF).vfs] == ["igbvf", "igbvf"]
    assert [_pf_mac(igb, index) for index in (0, 1)] == [ZERO, ZERO]
    assert all(_local_unicast(_netdev_mac(igb, index) or ZERO) for index in (0, 1))
    assert _operstate(igb, NETDEV) == "up"  # the network configuration brought it back


def test_ixgbevf_vfs_keep_the_pfs_zero_mac(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-82599@0000:05:00.0")
    _write(sim, "sriov_numvfs", "1\n", PciAddress.parse("0000:05:00.0"))
    assert sim.vf_configs("enp5s0f0")[0].mac == ZERO


# --------------------------------------------------------------------------- the bounce
def test_sizing_drops_the_carrier_and_it_comes_back_by_itself(igb: SimHost) -> None:
    igb.set_link_bounce(NETDEV, 0.3)
    assert (_carrier(igb, NETDEV), _operstate(igb, NETDEV)) == ("1", "up")
    _write(igb, "sriov_drivers_autoprobe", "0\n")
    _write(igb, "sriov_numvfs", "1\n")
    assert (_carrier(igb, NETDEV), _operstate(igb, NETDEV)) == ("0", "down")
    assert sriov.carrier(Sysfs(igb), PF) is False
    with pytest.raises(OSError) as refused:  # igb_ndo_set_vf_bw(): no link, no rate
        igb.set_vf(NETDEV, 0, "rate", VfConfig(max_tx_rate=100))
    assert refused.value.errno == errno.EINVAL
    # Nothing else touches the sim: the file changes when the driver sees the link again.
    deadline = time.monotonic() + 5
    while _carrier(igb, NETDEV) != "1" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (_carrier(igb, NETDEV), _operstate(igb, NETDEV)) == ("1", "up")
    igb.set_vf(NETDEV, 0, "rate", VfConfig(max_tx_rate=100))
    assert igb.vf_configs(NETDEV)[0].max_tx_rate == 100
    _write(igb, "sriov_numvfs", "0\n")  # disabling bounces too (igb_pci_disable_sriov)
    assert _carrier(igb, NETDEV) == "0"


def test_a_carrier_that_never_returns_waits_for_the_cable(igb: SimHost) -> None:
    igb.set_link_bounce(NETDEV, None)
    _write(igb, "sriov_numvfs", "1\n")
    time.sleep(0.2)
    assert _carrier(igb, NETDEV) == "0"
    assert sriov.wait_for_carrier(Sysfs(igb), [PF], timeout=0.2) == {PF: False}
    igb.set_operstate(NETDEV, "up")
    assert _carrier(igb, NETDEV) == "1"


def test_a_port_that_is_down_is_only_reset(igb: SimHost) -> None:
    igb.set_link(NETDEV, up=False)
    assert _carrier(igb, NETDEV) is None  # reading carrier of a down netdev is EINVAL
    _write(igb, "sriov_numvfs", "1\n")
    assert (_carrier(igb, NETDEV), _operstate(igb, NETDEV)) == (None, "down")
    assert sriov.carrier(Sysfs(igb), PF) is None
    igb.set_link(NETDEV, up=True)
    assert _carrier(igb, NETDEV) == "1"


def test_a_pulled_cable_keeps_the_carrier_down_across_sizing(igb: SimHost) -> None:
    igb.set_operstate(NETDEV, "down")
    _write(igb, "sriov_numvfs", "1\n")
    time.sleep(0.2)
    assert _carrier(igb, NETDEV) == "0"


@pytest.mark.parametrize(("spec", "pf", "netdev", "bounces"), [
    ("intel-i350@0000:03:00.0", "0000:03:00.0", "enp3s0f0", True),
    ("intel-82599@0000:05:00.0", "0000:05:00.0", "enp5s0f0", True),
    ("intel-x710@0000:85:00.0", "0000:85:00.0", "enp133s0f0", True),
    ("intel-e810@0000:3b:00.0", "0000:3b:00.0", "enp59s0f0", False),
    ("mellanox-cx5@0000:01:00.0", "0000:01:00.0", "enp1s0f0np0", False),
])
def test_which_drivers_bounce_the_link_on_sizing(make_sim: Callable[..., SimHost], spec: str,
                                                 pf: str, netdev: str, bounces: bool) -> None:
    sim = make_sim(spec)
    sim.set_link_bounce(netdev, 30.0)
    _write(sim, "sriov_numvfs", "1\n", PciAddress.parse(pf))
    assert _carrier(sim, netdev) == ("0" if bounces else "1")


def test_another_process_sees_the_carrier_back_once_it_is_due(igb: SimHost,
                                                               tmp_path: Path) -> None:
    igb.set_link_bounce(NETDEV, 0.2)
    _write(igb, "sriov_numvfs", "1\n")
    other = SimHost(igb.root)  # a second process's view: its first change settles the link
    time.sleep(0.25)
    other.set_link(NETDEV, mtu=1500)
    assert _carrier(other, NETDEV) == "1"
