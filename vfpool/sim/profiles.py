"""NIC profiles of real cards, with the ids and SR-IOV geometry from SRIOV-FACTS.md."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

# How the VF ranges of a card's PFs sit in routing-id space.
#  interleaved: every PF has the same offset and the stride leaves room for the others
#               (82576: PF0 → 10.0, 10.2 …; PF1 → 10.1, 10.3 …).
#  sequential:  stride 1; each PF's range starts after the previous PF's totalvfs
#               (X710, E810, ConnectX-5: "PF1 offset 9 when PF0 has 8").
Layout = Literal["interleaved", "sequential"]


@dataclass(frozen=True)
class NicProfile:
    name: str
    card: str  # the device name as pci.ids has it
    vendor: int
    pf_device: int
    vf_device: int
    pf_driver: str
    vf_driver: str
    totalvfs: int
    offset: int
    stride: int
    layout: Layout
    pfs: int  # PCI functions with SR-IOV
    ports_per_pf: int = 1  # mlx4: one PF serves both ports
    port_name: str = ""  # phys_port_name suffix in the PF netdev name (mlx5: "np0")
    # Module parameter that sizes the VFs at load time, and its shape. None: sysfs only.
    module_param: str | None = None
    module_param_kind: Literal["scalar", "mlx4-array"] | None = None
    # Hard driver cap checked in sriov_configure after the kernel's totalvfs check
    # (igb_pci_enable_sriov returns -EPERM above 7).
    driver_vf_limit: int | None = None
    # The driver has no sriov_configure callback: sysfs writes give ENOENT (mlx4_core).
    sysfs_resize: bool = True
    vf_mac_zero: bool = True  # fresh Intel VFs read 00:00:00:00:00:00 until the PF sets one
    link_mbps: int = 10000  # the PF's link speed: drivers refuse VF rates above it
    # VF tx rate limiting (ndo_set_vf_rate) on this part: "none" (EOPNOTSUPP for any rate),
    # "max" (a nonzero min_tx_rate is refused) or "min-max". See host.py _rate_errno().
    vf_rate: Literal["none", "max", "min-max"] = "min-max"
    # The PF driver closes and reopens the port when SR-IOV is enabled or disabled, so a port
    # that is up loses its carrier for a moment (vfpool/sim/link.py):
    #  igb:  igb_pci_enable_sriov() and igb_pci_disable_sriov() call igb_sriov_reinit()
    #        (igb/igb_main.c): igb_close() then igb_open() when netif_running();
    #  ixgbe: ixgbe_pci_sriov_enable() and, when the flags change, ixgbe_pci_sriov_disable()
    #        call ixgbe_sriov_reinit() -> ixgbe_setup_tc() (ixgbe/ixgbe_main.c), which does
    #        ixgbe_close() then ixgbe_open();
    #  i40e: i40e_pci_sriov_configure() (i40e/i40e_virtchnl_pf.c) turns VEB mode on before the
    #        first VFs and off after the last, each with i40e_do_reset_safe(pf,
    #        I40E_PF_RESET_AND_REBUILD_FLAG): the PF's VSIs go down and are rebuilt.
    # Not ice (ice_sriov_configure() -> ice_ena_vfs() only masks the PF's interrupts while it
    # creates the VFs) nor mlx5 (mlx5_sriov_enable() -> mlx5_device_enable_sriov(): the
    # E-Switch and the VFs' HCAs; the uplink netdev stays open). mlx4_core cannot resize.
    sizing_bounce: bool = False


PROFILES: dict[str, NicProfile] = {
    profile.name: profile
    for profile in (
        # igb_ndo_set_vf_bw() (drivers/net/ethernet/intel/igb/igb_main.c): only the 82576 has
        # VF rate limiting, max only; every other igb part returns EOPNOTSUPP.
        NicProfile("intel-82576", "82576 Gigabit Network Connection", 0x8086, 0x10C9,
                   0x10CA, "igb", "igbvf", 7, 128, 2, "interleaved", 2,
                   module_param="max_vfs", module_param_kind="scalar", driver_vf_limit=7,
                   link_mbps=1000, vf_rate="max", sizing_bounce=True),
        NicProfile("intel-i350", "I350 Gigabit Network Connection", 0x8086, 0x1521,
                   0x1520, "igb", "igbvf", 7, 128, 4, "interleaved", 2,
                   module_param="max_vfs", module_param_kind="scalar", driver_vf_limit=7,
                   link_mbps=1000, vf_rate="none", sizing_bounce=True),
        # ixgbe_ndo_set_vf_bw() (ixgbe/ixgbe_sriov.c): max only, at a 10 Gb/s link.
        NicProfile("intel-82599", "82599ES 10-Gigabit SFI/SFP+ Network Connection",
                   0x8086, 0x10FB, 0x10ED, "ixgbe", "ixgbevf", 63, 128, 2, "interleaved", 2,
                   module_param="max_vfs", module_param_kind="scalar", driver_vf_limit=63,
                   link_mbps=10000, vf_rate="max", sizing_bounce=True),
        # i40e_ndo_set_vf_bw() (i40e/i40e_virtchnl_pf.c): a nonzero min_tx_rate is EINVAL.
        NicProfile("intel-x710", "Ethernet Controller X710 for 10GbE SFP+", 0x8086,
                   0x1572, 0x154C, "i40e", "iavf", 64, 16, 1, "sequential", 2,
                   link_mbps=10000, vf_rate="max", sizing_bounce=True),
        # ice_set_vf_bw() (ice/ice_sriov.c): min and max.
        NicProfile("intel-e810", "Ethernet Controller E810-XXV for SFP", 0x8086, 0x159B,
                   0x1889, "ice", "iavf", 64, 8, 1, "sequential", 2, link_mbps=25000),
        # mlx5_eswitch_set_vport_rate() (mlx5/core/esw/qos.c): min and max.
        NicProfile("mellanox-cx5", "MT27800 Family [ConnectX-5]", 0x15B3, 0x1017,
                   0x1018, "mlx5_core", "mlx5_core", 8, 2, 1, "sequential", 2,
                   port_name="np0", vf_mac_zero=False, link_mbps=25000),
        # mlx4_set_vf_rate() (mlx4/cmd.c): max only; a min_tx_rate is EPROTONOSUPPORT.
        NicProfile("mellanox-cx3", "MT27500 Family [ConnectX-3]", 0x15B3, 0x1003,
                   0x1004, "mlx4_core", "mlx4_core", 63, 1, 1, "sequential", 1, ports_per_pf=2,
                   module_param="num_vfs", module_param_kind="mlx4-array", sysfs_resize=False,
                   vf_mac_zero=False, link_mbps=40000, vf_rate="max"),
    )
}

VENDOR_NAMES = {0x8086: "Intel Corporation", 0x15B3: "Mellanox Technologies"}

# VF device names as pci.ids has them.
VF_CARDS = {
    0x10CA: "82576 Virtual Function",
    0x1520: "I350 Ethernet Controller Virtual Function",
    0x10ED: "82599 Ethernet Controller Virtual Function",
    0x154C: "Ethernet Virtual Function 700 Series",
    0x1889: "Ethernet Adaptive Virtual Function",
    0x1018: "MT27800 Family [ConnectX-5 Virtual Function]",
    0x1004: "MT27500/MT27520 Family [ConnectX-3/ConnectX-3 Pro Virtual Function]",
}

DEFAULT_NICS = ("intel-82599@0000:05:00.0:numa=0", "intel-x710@0000:85:00.0:numa=1")

@dataclass(frozen=True)
class OnboardNic:
    """A non-SR-IOV onboard NIC every simulated host has, so "not SR-IOV capable" is testable."""

    pci: str = "0000:00:1f.6"
    vendor: int = 0x8086
    device: int = 0x15B7
    driver: str = "e1000e"
    netdev: str = "eno1"
    card: str = "Ethernet Connection (2) I219-LM"


ONBOARD_NIC = OnboardNic()


@functools.cache
def driver_id_table() -> dict[str, set[tuple[int, int]]]:
    """Every driver a simulated host knows, with the (vendor, device) ids it binds.

    vfio-pci binds nothing by id; it takes devices through driver_override.
    """
    table: dict[str, set[tuple[int, int]]] = {
        "vfio-pci": set(),
        ONBOARD_NIC.driver: {(ONBOARD_NIC.vendor, ONBOARD_NIC.device)},
    }
    for profile in PROFILES.values():
        table.setdefault(profile.pf_driver, set()).add((profile.vendor, profile.pf_device))
        table.setdefault(profile.vf_driver, set()).add((profile.vendor, profile.vf_device))
    return table


def profile_for_driver(driver: str) -> list[NicProfile]:
    return [p for p in PROFILES.values() if p.pf_driver == driver]
