"""Read PFs and VFs from sysfs under one root. The same code runs on ``/`` and on a sim."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from vfpool.errors import InvalidInput, NotFound
from vfpool.host.pciids import PciIds
from vfpool.model.pci import PciAddress
from vfpool.model.snapshot import Netdev, PciFunction, PfLink, PfSnapshot, VfSnapshot
from vfpool.ports import KernelPort

IFNAMSIZ = 16


def valid_ifname(name: str) -> bool:
    """The kernel's dev_valid_name(): 1 to 15 bytes, not . or .., no '/', ':' or white space."""
    return (0 < len(name.encode()) < IFNAMSIZ and name not in (".", "..")
            and not any(ch == "/" or ch == ":" or ch.isspace() for ch in name))


def shown_name(name: str) -> str:
    """A netdev's name as vfpool records and shows it. Linux takes any bytes in a name but
    '/', ':', white space and NUL, and Python lists the bytes that are not UTF-8 as lone
    surrogates, which no database text (and no JSON) can hold: those bytes are written as
    ``\\xNN`` (``b"bad\\xff"`` is shown ``bad\\xff``). Such a name is shown, not used: an
    operation by that name finds no such interface."""
    if name.isascii():
        return name  # most names: no encoding at all
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _netdev_names(net: str | Path) -> tuple[str, ...]:
    """The names of the netdevs in a device's ``net/`` folder, as vfpool shows them."""
    return tuple(shown_name(name) for name in _listdir(net))


def _read(path: str | Path) -> str | None:
    """An attribute's text, or None when it is absent (a VF can vanish while we read). Read
    with plain system calls: a text file object cost more than the reading, on the lease
    path's six reads of a VF's ``driver_override``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 8192):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def _read_int(path: str | Path, base: int = 10, default: int = 0) -> int:
    return _int(_read(path), base, default)


def _int(text: str | None, base: int = 10, default: int = 0) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text, base)
    except ValueError:
        return default


def _link_name(path: str | Path) -> str | None:
    """The last part of a link's target, or None when there is no link."""
    try:
        return os.readlink(path).rpartition("/")[2]
    except OSError:
        return None


def _listdir(path: str | Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


@functools.lru_cache(maxsize=8192)
def _named(text: str) -> tuple[PciAddress, str] | None:
    """``text`` parsed as a PCI address, with its canonical name (the device's folder), or
    None when it does not look like one. Cached: a PF's 256 VF links name the same addresses
    at every read (PciAddress is immutable)."""
    if not PciAddress.looks_like(text):
        return None
    address = PciAddress.parse(text)
    return address, str(address)


def _address(text: str) -> PciAddress | None:
    named = _named(text)
    return named[0] if named else None


def _by_index(vf: VfSnapshot) -> int:
    return vf.index


class Sysfs:
    """Snapshots of the PCI and net devices under ``kernel.root``."""

    BULK_DRIVERS = 64  # VFs of one PF from which their drivers are read in bulk (_vfs_of)

    def __init__(self, kernel: KernelPort) -> None:
        self.kernel = kernel
        self.root = kernel.root
        self.pci_devices = self.root / "sys/bus/pci/devices"
        self._devices = str(self.pci_devices)
        self.class_net = self.root / "sys/class/net"
        self._drivers = str(self.root / "sys/bus/pci/drivers")
        self._pciids: PciIds | None = None

    # -- paths: always built from enumerated, parsed addresses, never from user text
    def device_dir(self, address: PciAddress) -> Path:
        return self.pci_devices / str(address)

    def attr(self, address: PciAddress, name: str) -> Path:
        return self.device_dir(address) / name

    # -- enumeration
    def pci_addresses(self) -> list[PciAddress]:
        found = []
        for entry in _listdir(self.pci_devices):
            address = _address(entry)
            if address is not None:
                found.append(address)
        return sorted(found)

    def netdev_names(self) -> list[str]:
        return _listdir(self.class_net)

    def pci_function(self, address: PciAddress) -> PciFunction:
        device = self.device_dir(address)
        physfn = _link_name(device / "physfn")
        return PciFunction(
            pci=address,
            driver=_link_name(device / "driver"),
            netdevs=_netdev_names(device / "net"),
            sriov=(device / "sriov_totalvfs").exists(),
            physfn=PciAddress.parse(physfn) if physfn else None,
        )

    def driver_override(self, address: PciAddress) -> str | None:
        """The device's driver_override; None when unset (the kernel prints "(null)")."""
        text = _read(f"{self._devices}/{address}/driver_override")
        return None if text in (None, "", "(null)") else text

    def netdev_device(self, name: str) -> PciAddress | None:
        """The PCI function behind an enumerated netdev, or None for a virtual one (lo, veth)."""
        target = _link_name(self.class_net / name / "device")
        if target is None or not PciAddress.looks_like(target):
            return None
        return PciAddress.parse(target)

    def netdev(self, device: str | Path, name: str) -> Netdev:
        base = os.path.join(device, "net", name)
        ifindex = _read(base + "/ifindex")
        mtu = _read(base + "/mtu")
        return Netdev(
            name=shown_name(name),
            ifindex=int(ifindex) if ifindex and ifindex.isdigit() else None,
            mac=_read(base + "/address"),
            operstate=_read(base + "/operstate") or "unknown",
            mtu=int(mtu) if mtu and mtu.isdigit() else None,
        )

    def _netdevs(self, device: str | Path) -> tuple[Netdev, ...]:
        return tuple(self.netdev(device, name)
                     for name in _listdir(os.path.join(device, "net")))

    def vf(self, index: int, address: PciAddress, name: str | None = None) -> VfSnapshot:
        """VF ``index`` at ``address`` (``name``: the address as its folder's name, when the
        caller has it): its driver link and its ``net/`` folder, read on string paths
        (pathlib's joins were most of the CPU of reading a PF's 256 VFs). A VF without a
        driver has no netdev (a netdev lives from its driver's probe to its remove), so its
        ``net/`` is not listed: a vfio PF's 256 unbound VFs cost one system call each. The
        kernel removes the ``driver`` link before it calls the driver's remove, so a VF read
        during an unbind reads as unbound, without the netdev that is about to go."""
        name = name or str(address)
        return self._vf(index, address, name, _link_name(f"{self._devices}/{name}/driver"))

    def _vf(self, index: int, address: PciAddress, name: str,
            driver: str | None) -> VfSnapshot:
        """VF ``index`` at ``address`` (its folder ``name``) with ``driver``: only a bound VF
        has a ``net/`` folder to list."""
        if driver is None:
            return VfSnapshot(index, address, None)
        return VfSnapshot(index, address, driver, self._netdevs(f"{self._devices}/{name}"))

    def virtfn(self, pf: PciAddress, index: int) -> VfSnapshot | None:
        """One VF of a PF by index, without reading the others."""
        target = _link_name(f"{self._devices}/{pf}/virtfn{index}")
        named = _named(target) if target else None
        return None if named is None else self.vf(index, *named)

    def bound_devices(self) -> dict[str, str]:
        """Every bound PCI device, by name, with its driver's name. The kernel links a bound
        device in its driver's folder beside the device's own ``driver`` link, and removes
        both before the driver's remove runs (driver_sysfs_add/remove): one listing per
        driver here stands for a lookup per device."""
        bound: dict[str, str] = {}
        try:
            drivers = os.listdir(self._drivers)
        except (FileNotFoundError, NotADirectoryError):
            return bound
        for driver in drivers:
            try:
                entries = os.listdir(f"{self._drivers}/{driver}")
            except (FileNotFoundError, NotADirectoryError):  # unloaded since the listing
                continue
            for entry in entries:
                named = _named(entry) if entry[:1].isdigit() else None
                if named is not None:
                    bound[named[1]] = driver
        return bound

    def _vfs_of(self, folder: str) -> list[VfSnapshot]:
        """The VFs behind a PF's ``virtfn<N>`` links, by index (each link's address parsed
        once per process: the two regex matches per VF were a large part of a read).

        The links are read relative to the PF's folder, held open (the kernel walks one name
        per read, not the whole path through ``bus/pci/devices`` and its link); a VF is read
        by its parsed address under this root, never by following the link. The VFs' drivers
        come from the drivers' folders (``bound_devices``) for a PF with ``BULK_DRIVERS`` VFs
        or more: a lookup of each absent ``driver`` link of 1,024 new unbound VFs cost 4-5 ms
        of a pool start's read-back, the first time."""
        try:
            names = os.listdir(folder)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return []
        links = [entry for entry in names if entry.startswith("virtfn") and entry[6:].isdigit()]
        bound = self.bound_devices() if len(links) >= self.BULK_DRIVERS else None
        vfs = []
        try:
            for entry in links:
                try:
                    target = os.readlink(entry, dir_fd=fd)
                except OSError:  # gone since the listing
                    continue
                named = _named(target.rpartition("/")[2])
                if named is None:
                    continue
                index = int(entry[6:])
                address, name = named
                vfs.append(self._vf(index, address, name, bound.get(name)) if bound is not None
                           else self.vf(index, address, name))
        finally:
            os.close(fd)
        vfs.sort(key=_by_index)
        return vfs

    def pf(self, address: PciAddress, *, with_vfs: bool = True) -> PfSnapshot:
        # String paths: a PF's dozen pathlib joins cost more than their reads.
        device = f"{self._devices}/{address}"
        totalvfs = _read(device + "/sriov_totalvfs")
        if totalvfs is None:
            raise NotFound(f"{address} is not an SR-IOV PF on this host")
        vendor = _read_int(device + "/vendor", 16)
        device_id = _read_int(device + "/device", 16)
        vf_device = _read(device + "/sriov_vf_device")
        numa = _read_int(device + "/numa_node", default=-1)
        vfs = self._vfs_of(device) if with_vfs else []
        return PfSnapshot(
            pci=address,
            vendor=vendor,
            device=device_id,
            driver=_link_name(device + "/driver"),
            totalvfs=_int(totalvfs),
            numvfs=_read_int(device + "/sriov_numvfs"),
            offset=_read_int(device + "/sriov_offset"),
            stride=_read_int(device + "/sriov_stride"),
            vf_device=int(vf_device, 16) if vf_device else None,
            numa_node=None if numa < 0 else numa,
            drivers_autoprobe=_read(device + "/sriov_drivers_autoprobe") != "0",
            netdevs=self._netdevs(device),
            vfs=tuple(vfs),
            model=self.pciids.device_name(vendor, device_id),
        )

    def pfs(self, *, with_vfs: bool = False) -> list[PfSnapshot]:
        return [self.pf(address, with_vfs=with_vfs) for address in self.pci_addresses()
                if os.path.exists(os.path.join(self._devices, str(address), "sriov_totalvfs"))]

    def udev_runs(self) -> bool:
        """Whether a udev handles this host's devices (``run/udev/control``); a container or
        a simulated host has none, and nothing there renames a netdev."""
        return (self.root / "run/udev/control").exists()

    def udev_done_with(self, netdev: Netdev) -> bool:
        """Whether udev has handled this netdev (renamed it, ran its rules): its database
        entry ``run/udev/data/n<ifindex>`` exists. Without a udev there is nothing to wait
        for."""
        if netdev.ifindex is None or not self.udev_runs():
            return True
        return (self.root / "run/udev/data" / f"n{netdev.ifindex}").exists()

    @property
    def pciids(self) -> PciIds:
        if self._pciids is None:
            self._pciids = PciIds(self.root / "usr/share/misc/pci.ids")
        return self._pciids

    def boot_id(self) -> str:
        text = _read(self.root / "proc/sys/kernel/random/boot_id")
        if not text:
            raise NotFound(f"no boot id at {self.root / 'proc/sys/kernel/random/boot_id'}")
        return text

    # -- resolving what the user typed
    def resolve_pf(self, text: str) -> PfSnapshot:
        """A PF named by PCI address or netdev name, resolved against the enumeration.

        Raises InvalidInput (exit 2) for text that cannot name a PF, or that names a device
        without SR-IOV; NotFound (exit 3) for a well-formed name that nothing on the host has.
        """
        name = text.strip()
        address: PciAddress | None = None
        if PciAddress.looks_like(name):
            wanted = PciAddress.parse(name)
            if wanted not in self.pci_addresses():
                raise NotFound(f"no PCI device {wanted} on this host")
            address = wanted
        elif valid_ifname(name):
            if name not in self.netdev_names():
                raise NotFound(f"no PF named {name!r}: no such PCI address or network "
                               "interface on this host")
            address = self.netdev_device(name)
            if address is None:
                raise InvalidInput(f"interface {name} is not a PCI device, so it cannot be a "
                                   "PF")
        else:
            raise InvalidInput(f"invalid PF {name!r}: expected a PCI address such as "
                               "0000:05:00.0 or an interface name such as enp5s0f0")
        function = self.pci_function(address)
        label = f"{address} ({function.netdevs[0]})" if function.netdevs else str(address)
        if function.physfn is not None:
            raise InvalidInput(f"{label} is a VF of PF {function.physfn}, not a PF")
        if not function.sriov:
            driver = f" (driver {function.driver})" if function.driver else ""
            raise InvalidInput(f"{label} is not SR-IOV capable{driver}")
        return self.pf(address)

    # -- the lease path
    def pf_link(self, address: PciAddress) -> PfLink:
        """A PF's driver and netdev names only: three system calls, where ``pf()`` reads a
        dozen attributes and each netdev's."""
        device = f"{self._devices}/{address}"
        if not os.path.exists(device + "/sriov_totalvfs"):
            raise NotFound(f"{address} is not an SR-IOV PF on this host")
        return PfLink(pci=address, driver=_link_name(device + "/driver"),
                      netdevs=_netdev_names(device + "/net"))

    def driver(self, address: PciAddress) -> str | None:
        """The driver a PCI function is bound to, None when unbound (one readlink)."""
        return _link_name(f"{self._devices}/{address}/driver")
