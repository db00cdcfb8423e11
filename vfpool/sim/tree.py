"""The simulated host's sysfs tree: its layout, how it is built, and the reads the kernel makes.

The tree is laid out as on a real machine (``sys/devices/pci0000:00/BDF``, ``sys/bus/pci``,
``sys/class/net``, ``sys/kernel/iommu_groups``, ``dev/vfio``, ...), so ``vfpool.host`` reads it
with the same code it uses on ``/``. ``Tree`` pairs the tree with the state of the operation in
progress (``vfpool.sim.state``), which holds what a file cannot: profiles, ports, counters.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from vfpool.model.pci import PciAddress
from vfpool.sim import link
from vfpool.sim.profiles import ONBOARD_NIC, PROFILES, VENDOR_NAMES, VF_CARDS, NicProfile
from vfpool.sim.spec import CardLayout

DEVICES = "sys/devices/pci0000:00"
DRIVERS = "sys/bus/pci/drivers"
FOLDERS = (DEVICES, "sys/devices/virtual/net", "sys/bus/pci/devices", DRIVERS, "sys/class/net",
           "sys/module", "sys/kernel/iommu_groups", "proc/sys/kernel/random", "etc/modprobe.d",
           "usr/share/misc", "dev/vfio")
OUI = {0x8086: (0xA0, 0x36, 0x9F), 0x15B3: (0x98, 0x03, 0x9B)}


def oserror(code: int, path: Path | str) -> OSError:
    """The error the kernel returns; ``OSError`` picks its subclass (ENOENT: FileNotFoundError)."""
    return OSError(code, os.strerror(code), str(path))


def write(path: Path, text: str) -> None:
    path.write_text(text)


def symlink(link: Path, target: str) -> None:
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def module_name(name: str) -> str:
    """modprobe's spelling of a module: dashes and underscores name the same one."""
    return name.replace("-", "_")


def make_skeleton(root: Path) -> None:
    """The empty folders and bus files of a host with no devices yet."""
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    write(root / "sys/bus/pci/drivers_probe", "")
    write(root / "sys/bus/pci/drivers_autoprobe", "1\n")


def pf_mac(vendor: int, bdf: str, port: int) -> str:
    """A PF port's permanent MAC: the vendor's OUI, then the port's bus, devfn and number."""
    first, second, third = OUI.get(vendor, (0x02, 0x00, 0x00))
    address = PciAddress.parse(bdf)
    return (f"{first:02x}:{second:02x}:{third:02x}:{address.bus:02x}:"
            f"{address.slot << 3 | address.func:02x}:{port:02x}")


def vf_mac(profile: NicProfile, bdf: str) -> str:
    """A VF's MAC before its PF sets one."""
    if profile.vf_mac_zero:
        return "00:00:00:00:00:00"  # fresh Intel VFs, until the PF sets a MAC
    digest = zlib.crc32(bdf.encode()).to_bytes(4, "big")
    return "02:" + ":".join(f"{byte:02x}" for byte in digest) + ":01"


class Tree:
    """The sysfs tree under ``root``, with ``state``: the sim state of the locked operation."""

    def __init__(self, root: Path, state: dict[str, Any]) -> None:
        self.root = root
        self.state = state

    # ------------------------------------------------------------------ reads
    def dev(self, bdf: str) -> Path:
        return self.root / DEVICES / bdf

    def read(self, path: Path) -> str:
        return path.read_text().strip()

    def profile(self, pf_bdf: str) -> NicProfile:
        return PROFILES[self.state["pfs"][pf_bdf]["profile"]]

    def driver_of(self, bdf: str) -> str | None:
        link = self.dev(bdf) / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def vfs_of(self, pf_bdf: str) -> list[tuple[int, str]]:
        device = self.dev(pf_bdf)
        found = []
        for entry in os.listdir(device):
            if entry.startswith("virtfn"):
                found.append((int(entry[6:]), os.path.basename(os.readlink(device / entry))))
        return sorted(found)

    def vf_of(self, pf_bdf: str, index: int) -> str | None:
        """VF ``index`` of the PF, or None at or above numvfs (one readlink)."""
        try:
            return os.path.basename(os.readlink(self.dev(pf_bdf) / f"virtfn{index}"))
        except FileNotFoundError:
            return None

    def physfn(self, bdf: str) -> str | None:
        link = self.dev(bdf) / "physfn"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def loaded(self, driver: str) -> bool:
        return (self.root / DRIVERS / driver).is_dir()

    def pf_by_netdev(self, netdev: str) -> str | None:
        for bdf, pf in self.state["pfs"].items():
            if netdev in pf["netdevs"]:
                return str(bdf)
        return None

    # ------------------------------------------------------------------ building
    def build(self, layouts: list[CardLayout]) -> None:
        """The devices of a new host: loopback, the onboard NIC, and each card's PFs."""
        self.write_pci_ids(layouts)
        loopback = self.root / "sys/devices/virtual/net/lo"
        loopback.mkdir(parents=True)
        self.netdev_files(loopback, ifindex=1, mac="00:00:00:00:00:00", operstate="unknown",
                          mtu=65536, carrier="1")
        symlink(self.root / "sys/class/net/lo", "../../devices/virtual/net/lo")
        onboard = PciAddress.parse(ONBOARD_NIC.pci)
        self.add_function(onboard, ONBOARD_NIC.vendor, ONBOARD_NIC.device, numa_node=0)
        self.state["onboard"] = {"pci": ONBOARD_NIC.pci, "netdevs": [ONBOARD_NIC.netdev]}
        for card in layouts:
            profile = card.spec.profile
            for pf in card.pfs:
                self.add_function(pf.pci, profile.vendor, profile.pf_device,
                                  numa_node=card.spec.numa_node)
                device = self.dev(str(pf.pci))
                write(device / "sriov_totalvfs", f"{pf.totalvfs}\n")
                write(device / "sriov_numvfs", "0\n")
                write(device / "sriov_offset", f"{pf.offset}\n")
                write(device / "sriov_stride", f"{pf.stride}\n")
                write(device / "sriov_vf_device", f"{profile.vf_device:x}\n")
                write(device / "sriov_drivers_autoprobe", "1\n")
                write(device / "sriov_vf_total_msix", "0\n")
                self.state["pfs"][str(pf.pci)] = {
                    "profile": profile.name, "port": pf.port, "offset": pf.offset,
                    "stride": pf.stride, "totalvfs": pf.totalvfs, "netdevs": list(pf.netdevs),
                    "numa_node": card.spec.numa_node, "operstate": "up", "admin": True,
                    "cable": True,
                }

    def write_pci_ids(self, layouts: list[CardLayout]) -> None:
        # The profile's names reach `pf list` through the same pci.ids lookup as on a real host.
        by_vendor: dict[int, dict[int, str]] = {
            ONBOARD_NIC.vendor: {ONBOARD_NIC.device: ONBOARD_NIC.card}}
        for card in layouts:
            profile = card.spec.profile
            devices = by_vendor.setdefault(profile.vendor, {})
            devices[profile.pf_device] = profile.card
            devices[profile.vf_device] = VF_CARDS[profile.vf_device]
        lines = ["# pci.ids of a vfpool simulated host: only the devices it has"]
        for vendor in sorted(by_vendor):
            lines.append(f"{vendor:04x}  {VENDOR_NAMES[vendor]}")
            lines.extend(f"\t{device:04x}  {name}" for device, name
                         in sorted(by_vendor[vendor].items()))
        write(self.root / "usr/share/misc/pci.ids", "\n".join(lines) + "\n")

    def add_function(self, address: PciAddress, vendor: int, device_id: int, *,
                     numa_node: int) -> Path:
        bdf = str(address)
        device = self.dev(bdf)
        device.mkdir(parents=True)
        write(device / "vendor", f"0x{vendor:04x}\n")
        write(device / "device", f"0x{device_id:04x}\n")
        write(device / "class", "0x020000\n")
        write(device / "numa_node", f"{numa_node}\n")
        write(device / "driver_override", "(null)\n")
        symlink(self.root / "sys/bus/pci/devices" / bdf, f"../../../devices/pci0000:00/{bdf}")
        return device

    # ------------------------------------------------------------------ netdevs
    def netdev_names(self, bdf: str) -> list[tuple[str, str, str, str | None]]:
        """(name, MAC, operstate, carrier) of each netdev a net driver registers for ``bdf``;
        the carrier is None where the kernel's read of it fails (the netdev is not up)."""
        pfs = self.state["pfs"]
        if bdf in pfs:
            pf = pfs[bdf]
            vendor = PROFILES[pf["profile"]].vendor
            return [(name, pf_mac(vendor, bdf, port), link.operstate(pf), link.carrier_text(pf))
                    for port, name in enumerate(pf["netdevs"])]
        physfn = self.physfn(bdf)
        if physfn is not None:
            index = next(i for i, vf in self.vfs_of(physfn) if vf == bdf)
            config = self.state["vf_config"].get(f"{physfn}/{index}", {})
            mac = config.get("mac") or vf_mac(self.profile(physfn), bdf)
            return [(f"{pfs[physfn]['netdevs'][0]}v{index}", mac, "down", None)]
        onboard = self.state["onboard"]
        if bdf == onboard["pci"]:
            return [(onboard["netdevs"][0], pf_mac(ONBOARD_NIC.vendor, bdf, 0), "up", "1")]
        return []

    def add_netdev(self, bdf: str, name: str, mac: str, operstate: str,
                   carrier: str | None = None) -> None:
        net = self.dev(bdf) / "net" / name
        net.mkdir(parents=True)
        self.netdev_files(net, ifindex=self.state["next_ifindex"], mac=mac,
                          operstate=operstate, mtu=1500, carrier=carrier)
        self.state["next_ifindex"] += 1
        symlink(net / "device", f"../../../{bdf}")
        symlink(self.root / "sys/class/net" / name, f"../../devices/pci0000:00/{bdf}/net/{name}")

    @staticmethod
    def netdev_files(net: Path, *, ifindex: int, mac: str, operstate: str, mtu: int,
                     carrier: str | None = None) -> None:
        write(net / "ifindex", f"{ifindex}\n")
        write(net / "address", f"{mac}\n")
        write(net / "operstate", f"{operstate}\n")
        if carrier is not None:
            write(net / "carrier", f"{carrier}\n")
        write(net / "mtu", f"{mtu}\n")
        write(net / "type", "1\n" if mtu != 65536 else "772\n")
