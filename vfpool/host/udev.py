"""PF discovery and device events through udev (pyudev).

On a real host udev is the authority on device names: it adds properties such as
``ID_NET_NAME_PATH`` and ``ID_MODEL_FROM_DATABASE`` that sysfs does not have. Discovery here
reads the ``pci`` and ``net`` subsystems and must agree with the sysfs reader
(``vfpool.host.sysfs.Sysfs``) on everything both can see; ``differences()`` checks that.

Events from the monitor become ``DeviceChange`` values, plain data keyed by PCI address, so
that ``vfpool.service.watch`` never sees a pyudev object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyudev

from vfpool.errors import HostError, describe_oserror
from vfpool.host.sysfs import shown_name
from vfpool.model.pci import PciAddress
from vfpool.model.snapshot import PfSnapshot

# The subsystems vfpool follows: PCI functions (PFs, VFs) and their netdevs.
SUBSYSTEMS = ("pci", "net")


@dataclass(frozen=True)
class UdevNetdev:
    name: str
    name_path: str | None  # ID_NET_NAME_PATH: systemd's path-based name (enp133s0f0)
    operstate: str | None
    carrier: str | None  # "1" or "0"; None while the link is administratively down


@dataclass(frozen=True)
class UdevPf:
    pci: PciAddress
    sys_path: str
    driver: str | None
    vendor: int | None
    device: int | None
    totalvfs: int
    numvfs: int
    numa_node: int | None  # None when the kernel says -1 (unknown)
    netdevs: tuple[UdevNetdev, ...] = ()
    model: str | None = None  # ID_MODEL_FROM_DATABASE, from udev's hwdb

    @property
    def netdev(self) -> str | None:
        return self.netdevs[0].name if self.netdevs else None


@dataclass(frozen=True)
class DeviceChange:
    """One udev event, reduced to what vfpool keys on.

    ``pci`` is the PCI function the event is about: the device itself for ``pci`` events,
    the function that owns the netdev for ``net`` events. It comes from the device path, so
    it is known for ``remove`` too, when sysfs no longer has the device.
    """

    action: str  # add, remove, change, bind, unbind, move, …
    subsystem: str
    sys_name: str  # a PCI address for pci, an interface name for net
    sys_path: str
    pci: PciAddress | None
    operstate: str | None = None  # net only, read when the event arrives
    carrier: str | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    text = str(value).strip()
    return text or None


def _attribute(device: Any, name: str) -> str | None:
    """A sysfs attribute as text; None when absent or unreadable (a device can vanish while
    we read, and ``carrier`` reads EINVAL while the link is down)."""
    try:
        return _text(device.attributes.get(name))
    except OSError:
        return None


def _int(text: str | None, base: int = 10) -> int | None:
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _property(device: Any, name: str) -> str | None:
    return _text(device.properties.get(name))


def pci_of_path(sys_path: str) -> PciAddress | None:
    """The PCI function in a device path: the last path component that is a PCI address.

    ``/sys/devices/pci0000:80/0000:80:03.0/0000:85:00.0/net/enp133s0f0`` → ``0000:85:00.0``.
    Works from the path alone, so it also names the device of a ``remove`` event.
    """
    for part in reversed(sys_path.rstrip("/").split("/")):
        # Sysfs names every PCI function with its domain; "05:00.0" is no device name.
        if part.count(":") == 2 and PciAddress.looks_like(part):
            return PciAddress.parse(part)
    return None


def _context(context: pyudev.Context | None) -> pyudev.Context:
    if context is not None:
        return context
    try:
        return pyudev.Context()
    except ImportError as exc:  # pyudev raises this when libudev.so.1 cannot be loaded
        raise HostError(f"cannot use udev: {exc}") from exc


class UdevDiscovery:
    """SR-IOV PFs as udev sees them."""

    def __init__(self, context: pyudev.Context | None = None) -> None:
        self.context = _context(context)

    def _netdevs_by_pci(self) -> dict[PciAddress, list[UdevNetdev]]:
        found: dict[PciAddress, list[UdevNetdev]] = {}
        for device in self.context.list_devices(subsystem="net"):
            parent = device.find_parent("pci")
            if parent is None or not PciAddress.looks_like(str(parent.sys_name)):
                continue  # a virtual netdev: lo, veth, bridges, macvtap
            found.setdefault(PciAddress.parse(str(parent.sys_name)), []).append(
                netdev_of(device))
        return found

    def pfs(self) -> list[UdevPf]:
        netdevs = self._netdevs_by_pci()
        found = []
        for device in self.context.list_devices(subsystem="pci"):
            name = str(device.sys_name)
            totalvfs = _attribute(device, "sriov_totalvfs")
            if totalvfs is None or not PciAddress.looks_like(name):
                continue  # not an SR-IOV PF (VFs have no sriov_totalvfs)
            pci = PciAddress.parse(name)
            vendor, device_id = self._ids(device)
            numa = _int(_attribute(device, "numa_node"))
            found.append(UdevPf(
                pci=pci,
                sys_path=str(device.sys_path),
                driver=_text(device.driver),
                vendor=vendor,
                device=device_id,
                totalvfs=_int(totalvfs) or 0,
                numvfs=_int(_attribute(device, "sriov_numvfs")) or 0,
                numa_node=None if numa is None or numa < 0 else numa,
                netdevs=tuple(sorted(netdevs.get(pci, []), key=lambda netdev: netdev.name)),
                model=_property(device, "ID_MODEL_FROM_DATABASE"),
            ))
        return sorted(found, key=lambda pf: pf.pci)

    @staticmethod
    def _ids(device: Any) -> tuple[int | None, int | None]:
        vendor = _int(_attribute(device, "vendor"), 16)
        device_id = _int(_attribute(device, "device"), 16)
        pci_id = _property(device, "PCI_ID")  # "8086:1572", set by the kernel's uevent
        if (vendor is None or device_id is None) and pci_id and ":" in pci_id:
            vendor_text, device_text = pci_id.split(":", 1)
            vendor = vendor if vendor is not None else _int(vendor_text, 16)
            device_id = device_id if device_id is not None else _int(device_text, 16)
        return vendor, device_id


def netdev_of(device: Any) -> UdevNetdev:
    return UdevNetdev(name=shown_name(str(device.sys_name)),
                      name_path=_property(device, "ID_NET_NAME_PATH"),
                      operstate=_attribute(device, "operstate"),
                      carrier=_attribute(device, "carrier"))


def change_of(device: Any) -> DeviceChange | None:
    """A monitor's device as a ``DeviceChange``; None for what vfpool does not follow."""
    subsystem = _text(device.subsystem)
    action = _text(device.action)
    if subsystem not in SUBSYSTEMS or action is None:
        return None
    sys_path = str(device.sys_path)
    change = DeviceChange(action=action, subsystem=subsystem,
                          sys_name=shown_name(str(device.sys_name)),
                          sys_path=sys_path, pci=pci_of_path(sys_path))
    if subsystem == "net" and action != "remove":
        netdev = netdev_of(device)
        change = DeviceChange(action=action, subsystem=subsystem, sys_name=change.sys_name,
                              sys_path=sys_path, pci=change.pci, operstate=netdev.operstate,
                              carrier=netdev.carrier)
    return change


class UdevMonitor:
    """udev events for the ``pci`` and ``net`` subsystems, polled with a timeout so that the
    caller can notice a stop request (SIGTERM) between events."""

    def __init__(self, context: pyudev.Context | None = None) -> None:
        self.context = _context(context)
        try:
            self._monitor = pyudev.Monitor.from_netlink(self.context)
            for subsystem in SUBSYSTEMS:
                self._monitor.filter_by(subsystem)
        except OSError as exc:
            raise HostError(f"cannot listen to udev events: {describe_oserror(exc)}",
                            errno=exc.errno) from exc

    def start(self) -> None:
        """Start receiving; events from before this call are not seen."""
        try:
            self._monitor.start()
        except OSError as exc:
            raise HostError(f"cannot listen to udev events: {describe_oserror(exc)}",
                            errno=exc.errno) from exc

    def poll(self, timeout: float) -> DeviceChange | None:
        """The next event within ``timeout`` seconds; None on a timeout or an ignored event."""
        try:
            device = self._monitor.poll(timeout=timeout)
        except OSError as exc:
            raise HostError(f"reading a udev event failed: {describe_oserror(exc)}",
                            errno=exc.errno) from exc
        if device is None:
            return None
        return change_of(device)


def _names(netdevs: Iterable[Any]) -> list[str]:
    return sorted(str(netdev.name) for netdev in netdevs)


def differences(udev_pfs: Sequence[UdevPf], sysfs_pfs: Sequence[PfSnapshot]) -> list[str]:
    """Where udev and sysfs disagree about the PFs, one line each; empty when they agree.

    Compared: the PCI addresses, and per PF the driver, vendor and device ids, totalvfs,
    numvfs, NUMA node and netdev names. (The model name is not: udev takes it from its hwdb,
    sysfs from pci.ids, and the two databases word some names differently.)
    """
    by_udev = {pf.pci: pf for pf in udev_pfs}
    by_sysfs = {pf.pci: pf for pf in sysfs_pfs}
    problems = [f"{pci}: seen by udev only" for pci in sorted(by_udev.keys() - by_sysfs.keys())]
    problems += [f"{pci}: seen by sysfs only" for pci in sorted(by_sysfs.keys() - by_udev.keys())]
    for pci in sorted(by_udev.keys() & by_sysfs.keys()):
        seen_by_udev, seen_by_sysfs = by_udev[pci], by_sysfs[pci]
        pairs: list[tuple[str, object, object]] = [
            ("driver", seen_by_udev.driver, seen_by_sysfs.driver),
            ("vendor", seen_by_udev.vendor, seen_by_sysfs.vendor),
            ("device", seen_by_udev.device, seen_by_sysfs.device),
            ("totalvfs", seen_by_udev.totalvfs, seen_by_sysfs.totalvfs),
            ("numvfs", seen_by_udev.numvfs, seen_by_sysfs.numvfs),
            ("numa_node", seen_by_udev.numa_node, seen_by_sysfs.numa_node),
            ("netdevs", _names(seen_by_udev.netdevs), _names(seen_by_sysfs.netdevs)),
        ]
        problems += [f"{pci}: {name} is {by_udev_value!r} in udev, {by_sysfs_value!r} in sysfs"
                     for name, by_udev_value, by_sysfs_value in pairs
                     if by_udev_value != by_sysfs_value]
    return problems
