"""A simulated SR-IOV host: a sysfs tree under a directory, and the kernel behind its writes.

The tree is laid out as on a real machine, so ``vfpool.host`` reads it with the same code it uses
on ``/``. Writes come through ``SimHost.write_attr`` (the ``KernelPort``), which applies the
kernel's and each driver's semantics from SRIOV-FACTS.md and raises ``OSError`` with the errno the
kernel would return. All mutable state that is not in the tree itself lives in ``sim.json``;
every mutation holds an exclusive lock, so concurrent CLI processes see one consistent host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from vfpool.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from vfpool.model.pci import PciAddress, vf_address
from vfpool.model.vfconfig import LINK_STATE_CODES, VfConfig
from vfpool.ports import CommandResult
from vfpool.sim.profiles import (
    DEFAULT_NICS,
    ONBOARD_NIC,
    PROFILES,
    VENDOR_NAMES,
    VF_CARDS,
    NicProfile,
    driver_id_table,
)
from vfpool.sim.spec import CardLayout, NicSpec, layout_host

STATE_FILE = "sim.json"
STATE_FORMAT = 1
DEVICES = "sys/devices/pci0000:00"
DRIVERS = "sys/bus/pci/drivers"
PAGE_SIZE = 4096
# Drivers that register netdevs when they bind a function.
NET_DRIVERS = frozenset({"igb", "ixgbe", "i40e", "ice", "mlx5_core", "mlx4_core", "igbvf",
                         "ixgbevf", "iavf", "e1000e"})
# Loaded at boot: the NIC drivers (udev loads them by modalias), not vfio-pci.
BOOT_MODULES = ("e1000e", "igb", "ixgbe", "i40e", "ice", "mlx5_core", "mlx4_core", "igbvf",
                "ixgbevf", "iavf")
OUI = {0x8086: (0xA0, 0x36, 0x9F), 0x15B3: (0x98, 0x03, 0x9B)}
_DEVICE_ATTR = re.compile(r"^sys/devices/pci0000:00/(?P<bdf>[^/]+)/(?P<attr>[^/]+)$")
_DRIVER_ATTR = re.compile(r"^sys/bus/pci/drivers/(?P<driver>[^/]+)/(?P<attr>[^/]+)$")

FaultKind = Literal["errno", "ignore", "no-netdev", "hang"]
HANG_LIMIT = 300.0  # a hung write gives up (ETIMEDOUT) after this many seconds
# VF config fields a PF driver has no ndo_set_vf_* callback for: rtnetlink's do_setvfinfo()
# (net/core/rtnetlink.c) answers EOPNOTSUPP. Rates are per part and per value: _rate_errno().
UNSUPPORTED_VF_FIELDS = {
    # igb_netdev_ops (igb/igb_main.c) has no ndo_set_vf_link_state; checked on the real igb.
    "igb": {"link_state"},
    # mlx4_netdev_ops_master (mlx4/en_netdev.c) has no ndo_set_vf_trust.
    "mlx4_core": {"trust"},
}
# PF drivers whose ndo_set_vf_mac() leaves a bound VF driver with its old MAC until the VF
# driver is probed again: igb_ndo_set_vf_mac() (igb/igb_main.c) and ixgbe_ndo_set_vf_mac()
# (ixgbe/ixgbe_sriov.c) both say "Reload the VF driver to make this change effective"; seen
# on the real igb. i40e and ice reset the VF themselves, so its driver takes the MAC at once.
MAC_AT_VF_PROBE = frozenset({"igb", "ixgbe"})
VF_DEFAULTS = {"vlan": 0, "qos": 0, "spoofchk": True, "trust": False, "link_state": "auto",
               "min_tx_rate": 0, "max_tx_rate": 0}


@dataclass
class Fault:
    """The next ``remaining`` writes to ``target`` misbehave.

    ``errno``: the write fails with that errno. ``ignore``: the write reports success and does
    nothing (bnxt_en with its PF down). ``no-netdev`` (on ``sriov_numvfs``): the VFs appear but
    their netdevs never do. ``hang``: the operation blocks until the fault is cleared (a stuck
    driver; lets a test kill a process mid-operation). On ``netlink:`` targets reads block too,
    as they do behind a driver that holds the RTNL lock. ``target`` is a path relative to the sim
    root, ``modprobe:MODULE``, or ``netlink:PF_NETDEV`` for VF configuration through that PF.
    """

    target: str
    kind: FaultKind
    errno: int | None
    remaining: int


def _oserror(code: int, path: Path | str) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _symlink(link: Path, target: str) -> None:
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def _module_name(name: str) -> str:
    return name.replace("-", "_")


class SimHost:
    """A simulated host rooted at ``root``; implements ``vfpool.ports.KernelPort``."""

    def __init__(self, root: Path) -> None:
        try:
            self.root = Path(os.path.realpath(root))
            found = (self.root / STATE_FILE).is_file()
        except PermissionError:
            raise PermissionDenied(f"cannot read the simulated host {root}: permission "
                                   "denied") from None
        if not found:
            raise NotFound(f"{root} is not a simulated host (no {STATE_FILE}); create one with "
                           f"`vfpool sim create {root}`")
        self._state: dict[str, Any] = {}

    @property
    def simulated(self) -> bool:
        return True

    @property
    def netns(self) -> str | None:
        """The throwaway network namespace whose veth links stand in for this host's VF
        netdevs (`sim create --netns`), for tests with real macvtaps and QEMU."""
        with self._locked(write=False) as state:
            name = state.get("netns")
            return str(name) if name else None

    # ------------------------------------------------------------------ building
    @classmethod
    def create(cls, root: Path, nics: list[str] | None = None, *, force: bool = False,
               netns: str | None = None) -> SimHost:
        try:
            return cls._create(Path(root), nics, force=force, netns=netns)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot create the simulated host in {root}: "
                                   f"{(exc.strerror or 'permission denied').lower()}") from None

    @classmethod
    def _create(cls, root: Path, nics: list[str] | None, *, force: bool,
                netns: str | None) -> SimHost:
        specs = [NicSpec.parse(text) for text in (nics or DEFAULT_NICS)]
        onboard = PciAddress.parse(ONBOARD_NIC.pci)
        layouts = layout_host(specs, reserved={onboard.routing_id})
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            if not force:
                raise Conflict(f"{root} already exists and is not empty; pass --force to "
                               "rebuild the simulated host there")
            if not (root / STATE_FILE).is_file():
                raise Conflict(f"refusing to replace {root}: it is not a simulated host (no "
                               f"{STATE_FILE})")
            shutil.rmtree(root)
        for folder in (DEVICES, "sys/devices/virtual/net", "sys/bus/pci/devices", DRIVERS,
                       "sys/class/net", "sys/module", "sys/kernel/iommu_groups",
                       "proc/sys/kernel/random", "etc/modprobe.d", "usr/share/misc",
                       "dev/vfio"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        _write(root / "sys/bus/pci/drivers_probe", "")
        _write(root / "sys/bus/pci/drivers_autoprobe", "1\n")
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "nics": [{"profile": c.spec.profile.name, "pci": str(c.pfs[0].pci),
                      "numa_node": c.spec.numa_node, "totalvfs": c.spec.totalvfs}
                     for c in layouts],
            "pfs": {},
            "next_ifindex": 2,
            "next_iommu_group": 1,
            "faults": [],
            "vf_config": {},
            "boot_count": 0,
            "netns": netns,
        }
        _write(root / STATE_FILE, json.dumps(state))
        host = cls(root)
        with host._locked():
            host._build(layouts)
            host._boot()
        return host

    def _build(self, layouts: list[CardLayout]) -> None:
        self._write_pci_ids(layouts)
        loopback = self.root / "sys/devices/virtual/net/lo"
        loopback.mkdir(parents=True)
        self._netdev_files(loopback, ifindex=1, mac="00:00:00:00:00:00", operstate="unknown",
                           mtu=65536)
        _symlink(self.root / "sys/class/net/lo", "../../devices/virtual/net/lo")
        onboard = PciAddress.parse(ONBOARD_NIC.pci)
        self._add_function(onboard, ONBOARD_NIC.vendor, ONBOARD_NIC.device, numa_node=0)
        self._state["onboard"] = {"pci": ONBOARD_NIC.pci, "netdevs": [ONBOARD_NIC.netdev]}
        for card in layouts:
            profile = card.spec.profile
            for pf in card.pfs:
                self._add_function(pf.pci, profile.vendor, profile.pf_device,
                                   numa_node=card.spec.numa_node)
                device = self._dev(str(pf.pci))
                _write(device / "sriov_totalvfs", f"{pf.totalvfs}\n")
                _write(device / "sriov_numvfs", "0\n")
                _write(device / "sriov_offset", f"{pf.offset}\n")
                _write(device / "sriov_stride", f"{pf.stride}\n")
                _write(device / "sriov_vf_device", f"{profile.vf_device:x}\n")
                _write(device / "sriov_drivers_autoprobe", "1\n")
                _write(device / "sriov_vf_total_msix", "0\n")
                self._state["pfs"][str(pf.pci)] = {
                    "profile": profile.name, "port": pf.port, "offset": pf.offset,
                    "stride": pf.stride, "totalvfs": pf.totalvfs, "netdevs": list(pf.netdevs),
                    "numa_node": card.spec.numa_node, "operstate": "up",
                }

    def _write_pci_ids(self, layouts: list[CardLayout]) -> None:
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
        _write(self.root / "usr/share/misc/pci.ids", "\n".join(lines) + "\n")

    def _add_function(self, address: PciAddress, vendor: int, device_id: int, *,
                      numa_node: int) -> Path:
        bdf = str(address)
        device = self._dev(bdf)
        device.mkdir(parents=True)
        _write(device / "vendor", f"0x{vendor:04x}\n")
        _write(device / "device", f"0x{device_id:04x}\n")
        _write(device / "class", "0x020000\n")
        _write(device / "numa_node", f"{numa_node}\n")
        _write(device / "driver_override", "(null)\n")
        _symlink(self.root / "sys/bus/pci/devices" / bdf, f"../../../devices/pci0000:00/{bdf}")
        return device

    # ------------------------------------------------------------------ state and locking
    @contextmanager
    def _locked(self, *, write: bool = True) -> Iterator[dict[str, Any]]:
        """The state under the sim's lock; saved again on the way out unless ``write`` is off
        (readers take a shared lock and never rewrite it)."""
        try:
            lock = open(self.root / ".sim.lock", "a+")  # noqa: SIM115 - closed below
        except PermissionError:
            raise PermissionDenied(f"the simulated host {self.root} belongs to uid "
                                   f"{self.root.stat().st_uid}; run as that user or as "
                                   "root") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            before = (self.root / STATE_FILE).read_text()
            self._state = json.loads(before)
            try:
                yield self._state
            finally:
                after = json.dumps(self._state, indent=1, sort_keys=True)
                if write and after != before:
                    temporary = self.root / f".{STATE_FILE}.tmp"
                    _write(temporary, after)
                    os.replace(temporary, self.root / STATE_FILE)

    def state(self) -> dict[str, Any]:
        """A copy of ``sim.json``, for tests and `sim show`."""
        with self._locked(write=False) as state:
            return json.loads(json.dumps(state))  # type: ignore[no-any-return]

    def _dev(self, bdf: str) -> Path:
        return self.root / DEVICES / bdf

    def _profile(self, pf_bdf: str) -> NicProfile:
        return PROFILES[self._state["pfs"][pf_bdf]["profile"]]

    def _read(self, path: Path) -> str:
        return path.read_text().strip()

    def _driver_of(self, bdf: str) -> str | None:
        link = self._dev(bdf) / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def _vfs_of(self, pf_bdf: str) -> list[tuple[int, str]]:
        device = self._dev(pf_bdf)
        found = []
        for entry in os.listdir(device):
            if entry.startswith("virtfn"):
                found.append((int(entry[6:]), os.path.basename(os.readlink(device / entry))))
        return sorted(found)

    def _physfn(self, bdf: str) -> str | None:
        link = self._dev(bdf) / "physfn"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def _loaded(self, driver: str) -> bool:
        return (self.root / DRIVERS / driver).is_dir()

    # ------------------------------------------------------------------ faults
    def inject_fault(self, target: str, *, kind: FaultKind = "errno", errno_code: int | None = None,
                     count: int = 1) -> Fault:
        """Make the next ``count`` writes to ``target`` fail or misbehave (see ``Fault``)."""
        if kind == "errno" and not errno_code:
            raise InvalidInput("an errno fault needs an errno, for example EIO")
        if count < 1:
            raise InvalidInput("a fault must apply to at least one write")
        key = self._fault_key(target)
        fault = Fault(key, kind, errno_code if kind == "errno" else None, count)
        with self._locked() as state:
            state["faults"].append(asdict(fault))
        return fault

    def clear_faults(self) -> None:
        with self._locked() as state:
            state["faults"] = []

    def _fault_key(self, target: str) -> str:
        if target.startswith("modprobe:"):
            return "modprobe:" + _module_name(target.split(":", 1)[1])
        if target.startswith("netlink:"):
            return target
        path = Path(target)
        full = path if path.is_absolute() else self.root / path
        real = Path(os.path.realpath(full))
        try:
            return str(real.relative_to(self.root))
        except ValueError:
            raise InvalidInput(f"fault target {target} is outside the simulated host") from None

    def _wait_while_hung(self, key: str) -> None:
        """Block, without holding the sim lock, while a ``hang`` fault names ``key``."""
        deadline = time.monotonic() + HANG_LIMIT
        while True:
            faults = json.loads((self.root / STATE_FILE).read_text())["faults"]
            if not any(f["target"] == key and f["kind"] == "hang" for f in faults):
                return
            if time.monotonic() >= deadline:
                raise _oserror(errno.ETIMEDOUT, key)
            time.sleep(0.02)

    def _take_fault(self, key: str) -> Fault | None:
        for index, raw in enumerate(self._state["faults"]):
            if raw["target"] == key and raw["kind"] != "hang":
                fault = Fault(**raw)
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._state["faults"][index]
                else:
                    self._state["faults"][index] = asdict(fault)
                return fault
        return None

    # ------------------------------------------------------------------ the kernel port
    def write_attr(self, path: Path, value: str) -> None:
        real = Path(os.path.realpath(path))
        try:
            key = str(real.relative_to(self.root))
        except ValueError:
            raise _oserror(errno.EACCES, path) from None
        self._wait_while_hung(key)
        with self._locked():
            fault = self._take_fault(key)
            if fault is not None and fault.kind == "errno":
                raise _oserror(fault.errno or errno.EIO, path)
            if fault is not None and fault.kind == "ignore":
                return
            self._store(key, real, value, no_netdev=fault is not None)

    def _store(self, key: str, real: Path, value: str, *, no_netdev: bool) -> None:
        device_attr = _DEVICE_ATTR.match(key)
        driver_attr = _DRIVER_ATTR.match(key)
        if device_attr is not None:
            bdf, attr = device_attr["bdf"], device_attr["attr"]
            if attr == "sriov_numvfs" and bdf in self._state["pfs"]:
                return self._store_numvfs(bdf, value, real, no_netdev=no_netdev)
            if attr == "sriov_drivers_autoprobe" and bdf in self._state["pfs"]:
                enabled = _kstrtobool(value)
                if enabled is None:
                    raise _oserror(errno.EINVAL, real)
                return _write(real, f"{int(enabled)}\n")
            if attr == "driver_override":
                text = value[:-1] if value.endswith("\n") else value
                if len(value) >= PAGE_SIZE:
                    raise _oserror(errno.EINVAL, real)
                return _write(real, f"{text or '(null)'}\n")
        elif driver_attr is not None and self._loaded(driver_attr["driver"]):
            driver, attr = driver_attr["driver"], driver_attr["attr"]
            if attr == "unbind":
                return self._store_unbind(driver, value.strip(), real)
            if attr == "bind":
                return self._store_bind(driver, value.strip(), real)
        elif key == "sys/bus/pci/drivers_probe":
            return self._store_drivers_probe(value.strip(), real)
        # Attributes without a store method: kernfs refuses the open for writing.
        raise _oserror(errno.EACCES if real.exists() else errno.ENOENT, real)

    def _store_numvfs(self, bdf: str, value: str, path: Path, *, no_netdev: bool) -> None:
        """drivers/pci/iov.c sriov_numvfs_store(), then the driver's sriov_configure()."""
        wanted = _kstrtou16(value)
        if wanted is None:
            raise _oserror(errno.EINVAL, path)
        device = self._dev(bdf)
        if wanted > int(self._read(device / "sriov_totalvfs")):
            raise _oserror(errno.ERANGE, path)
        current = int(self._read(device / "sriov_numvfs"))
        if wanted == current:
            return
        profile = self._profile(bdf)
        driver = self._driver_of(bdf)
        # No driver, or a driver without sriov_configure (mlx4_core): nothing can resize.
        if driver is None or not profile.sysfs_resize:
            raise _oserror(errno.ENOENT, path)
        if wanted == 0:
            return self._disable_vfs(bdf)
        if current:
            raise _oserror(errno.EBUSY, path)  # "Disable before enabling"
        if profile.driver_vf_limit is not None and wanted > profile.driver_vf_limit:
            raise _oserror(errno.EPERM, path)  # igb_pci_enable_sriov: more than 7
        autoprobe = self._read(device / "sriov_drivers_autoprobe") == "1"
        self._enable_vfs(bdf, wanted, probe=wanted if autoprobe else 0, netdevs=not no_netdev)

    def _store_unbind(self, driver: str, bdf: str, path: Path) -> None:
        if not self._dev(bdf).is_dir() or self._driver_of(bdf) != driver:
            raise _oserror(errno.ENODEV, path)
        self._unbind(bdf)

    def _store_bind(self, driver: str, bdf: str, path: Path) -> None:
        if not self._dev(bdf).is_dir() or not self._matches(driver, bdf):
            raise _oserror(errno.ENODEV, path)
        if self._driver_of(bdf) is not None:
            raise _oserror(errno.EBUSY, path)
        if not self._can_probe(bdf):
            raise _oserror(errno.ENODEV, path)
        self._bind(bdf, driver)

    def _store_drivers_probe(self, bdf: str, path: Path) -> None:
        if not self._dev(bdf).is_dir():
            raise _oserror(errno.ENODEV, path)
        self._probe(bdf)

    # ------------------------------------------------------------------ binding
    def _matches(self, driver: str, bdf: str) -> bool:
        """pci_match_device(): driver_override wins; otherwise the driver's id table."""
        override = self._read(self._dev(bdf) / "driver_override")
        if override != "(null)":
            return override == driver
        ids = (int(self._read(self._dev(bdf) / "vendor"), 16),
               int(self._read(self._dev(bdf) / "device"), 16))
        return ids in driver_id_table().get(driver, set())

    def _can_probe(self, bdf: str) -> bool:
        """pci_device_can_probe(): a VF whose PF has sriov_drivers_autoprobe=0 binds only
        through driver_override."""
        physfn = self._physfn(bdf)
        if physfn is None:
            return True
        return (self._read(self._dev(physfn) / "sriov_drivers_autoprobe") == "1"
                or self._read(self._dev(bdf) / "driver_override") != "(null)")

    def _probe(self, bdf: str) -> None:
        if self._driver_of(bdf) is not None or not self._can_probe(bdf):
            return
        for driver in sorted(driver_id_table()):
            if self._loaded(driver) and self._matches(driver, bdf):
                self._bind(bdf, driver)
                return

    def _bind(self, bdf: str, driver: str, *, netdevs: bool = True) -> None:
        device = self._dev(bdf)
        _symlink(device / "driver", f"../../../bus/pci/drivers/{driver}")
        _symlink(self.root / DRIVERS / driver / bdf, f"../../../../devices/pci0000:00/{bdf}")
        if driver == "vfio-pci":
            group = os.path.basename(os.readlink(device / "iommu_group"))
            _write(self.root / "dev/vfio" / group, "")
        elif driver in NET_DRIVERS and netdevs:
            for name, mac, operstate in self._netdev_names(bdf):
                self._add_netdev(bdf, name, mac, operstate)

    def _netdev_names(self, bdf: str) -> list[tuple[str, str, str]]:
        pfs = self._state["pfs"]
        if bdf in pfs:
            pf = pfs[bdf]
            vendor = PROFILES[pf["profile"]].vendor
            return [(name, _pf_mac(vendor, bdf, port), pf["operstate"])
                    for port, name in enumerate(pf["netdevs"])]
        physfn = self._physfn(bdf)
        if physfn is not None:
            index = next(i for i, vf in self._vfs_of(physfn) if vf == bdf)
            config = self._state["vf_config"].get(f"{physfn}/{index}", {})
            mac = config.get("mac") or _vf_mac(self._profile(physfn), bdf)
            return [(f"{pfs[physfn]['netdevs'][0]}v{index}", mac, "down")]
        onboard = self._state["onboard"]
        if bdf == onboard["pci"]:
            return [(onboard["netdevs"][0], _pf_mac(ONBOARD_NIC.vendor, bdf, 0), "up")]
        return []

    def _add_netdev(self, bdf: str, name: str, mac: str, operstate: str) -> None:
        net = self._dev(bdf) / "net" / name
        net.mkdir(parents=True)
        self._netdev_files(net, ifindex=self._state["next_ifindex"], mac=mac,
                           operstate=operstate, mtu=1500)
        self._state["next_ifindex"] += 1
        _symlink(net / "device", f"../../../{bdf}")
        _symlink(self.root / "sys/class/net" / name, f"../../devices/pci0000:00/{bdf}/net/{name}")

    @staticmethod
    def _netdev_files(net: Path, *, ifindex: int, mac: str, operstate: str, mtu: int) -> None:
        _write(net / "ifindex", f"{ifindex}\n")
        _write(net / "address", f"{mac}\n")
        _write(net / "operstate", f"{operstate}\n")
        _write(net / "mtu", f"{mtu}\n")
        _write(net / "type", "1\n" if mtu != 65536 else "772\n")

    def _unbind(self, bdf: str) -> None:
        device = self._dev(bdf)
        driver = self._driver_of(bdf)
        if driver is None:
            return
        if bdf in self._state["pfs"]:
            # The PF driver's remove() disables SR-IOV (pci_disable_sriov) on the way out.
            self._disable_vfs(bdf)
        for name in sorted(os.listdir(device / "net")) if (device / "net").is_dir() else []:
            (self.root / "sys/class/net" / name).unlink(missing_ok=True)
        shutil.rmtree(device / "net", ignore_errors=True)
        if driver == "vfio-pci":
            group = os.path.basename(os.readlink(device / "iommu_group"))
            (self.root / "dev/vfio" / group).unlink(missing_ok=True)
        (device / "driver").unlink()
        (self.root / DRIVERS / driver / bdf).unlink(missing_ok=True)

    # ------------------------------------------------------------------ VFs
    def _enable_vfs(self, pf_bdf: str, count: int, *, probe: int, netdevs: bool = True) -> None:
        """Create ``count`` VFs; the first ``probe`` of them are offered to drivers."""
        pf = self._state["pfs"][pf_bdf]
        profile = PROFILES[pf["profile"]]
        pf_address = PciAddress.parse(pf_bdf)
        for index in range(count):
            address = vf_address(pf_address, pf["offset"], pf["stride"], index)
            bdf = str(address)
            device = self._add_function(address, profile.vendor, profile.vf_device,
                                        numa_node=pf["numa_node"])
            _symlink(device / "physfn", f"../{pf_bdf}")
            _symlink(self._dev(pf_bdf) / f"virtfn{index}", f"../{bdf}")
            group = str(self._state["next_iommu_group"])
            self._state["next_iommu_group"] += 1
            group_dir = self.root / "sys/kernel/iommu_groups" / group / "devices"
            group_dir.mkdir(parents=True)
            _symlink(group_dir / bdf, f"../../../../devices/pci0000:00/{bdf}")
            _symlink(device / "iommu_group", f"../../../kernel/iommu_groups/{group}")
            if index < probe and self._can_probe(bdf):
                driver = next((d for d in sorted(driver_id_table())
                               if self._loaded(d) and self._matches(d, bdf)), None)
                if driver is not None:
                    self._bind(bdf, driver, netdevs=netdevs)
        _write(self._dev(pf_bdf) / "sriov_numvfs", f"{count}\n")

    def _disable_vfs(self, pf_bdf: str) -> None:
        for index, bdf in reversed(self._vfs_of(pf_bdf)):
            self._unbind(bdf)
            group_link = self._dev(bdf) / "iommu_group"
            group = os.path.basename(os.readlink(group_link))
            shutil.rmtree(self.root / "sys/kernel/iommu_groups" / group, ignore_errors=True)
            shutil.rmtree(self._dev(bdf))
            (self.root / "sys/bus/pci/devices" / bdf).unlink(missing_ok=True)
            (self._dev(pf_bdf) / f"virtfn{index}").unlink()
            # The PF driver frees its per-VF state (MAC, VLAN, …) with the VFs.
            self._state["vf_config"].pop(f"{pf_bdf}/{index}", None)
        _write(self._dev(pf_bdf) / "sriov_numvfs", "0\n")

    # ------------------------------------------------------------------ modules
    def modprobe(self, args: list[str]) -> CommandResult:
        argv = ("modprobe", *args)
        remove = "-r" in args or "--remove" in args
        names = [arg for arg in args if not arg.startswith("-")]
        if len(names) != 1:
            return CommandResult(argv, 1, "", "modprobe: ERROR: expected one module name\n")
        module = _module_name(names[0])
        drivers = {_module_name(driver): driver for driver in driver_id_table()}
        if module not in drivers:
            return CommandResult(argv, 1, "", f"modprobe: FATAL: Module {names[0]} not found "
                                 "in directory /lib/modules/sim\n")
        try:
            self._wait_while_hung(f"modprobe:{module}")  # a module init that never returns
        except OSError as exc:
            return CommandResult(argv, 1, "", f"modprobe: ERROR: could not insert '{module}': "
                                 f"{os.strerror(exc.errno or errno.ETIMEDOUT)}\n")
        with self._locked():
            fault = self._take_fault(f"modprobe:{module}")
            if fault is not None and fault.kind == "ignore":
                return CommandResult(argv, 0, "", "")
            if fault is not None and fault.kind == "errno":
                code = fault.errno or errno.EIO
                verb = "remove" if remove else "insert"
                return CommandResult(argv, 1, "", f"modprobe: ERROR: could not {verb} "
                                     f"'{module}': {os.strerror(code)}\n")
            if remove:
                self._unload(drivers[module])
                return CommandResult(argv, 0, "", "")
            error = self._load(drivers[module])
        if error:
            return CommandResult(argv, 1, "", f"modprobe: ERROR: could not insert '{module}': "
                                 f"{error}\n")
        return CommandResult(argv, 0, "", "")

    def _unload(self, driver: str) -> None:
        if not self._loaded(driver):
            return
        bound = [entry for entry in os.listdir(self.root / DRIVERS / driver)
                 if PciAddress.looks_like(entry)]
        # VFs first: a PF's remove() would take its VFs with it anyway.
        for bdf in sorted(bound, key=lambda b: b in self._state["pfs"]):
            if self._dev(bdf).is_dir():
                self._unbind(bdf)
        shutil.rmtree(self.root / DRIVERS / driver)
        shutil.rmtree(self.root / "sys/module" / _module_name(driver), ignore_errors=True)

    def module_options(self, module: str) -> dict[str, str]:
        """``options MODULE k=v`` from the sim's etc/modprobe.d/*.conf, as modprobe reads it."""
        options: dict[str, str] = {}
        folder = self.root / "etc/modprobe.d"
        for conf in sorted(folder.glob("*.conf")):
            for line in conf.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "options" and \
                        _module_name(words[1]) == module:
                    for word in words[2:]:
                        key, _, value = word.partition("=")
                        options[key] = value
        return options

    def _load(self, driver: str, *, at_boot: bool = False) -> str | None:
        """Load a module and bind what it matches. Returns an error text, like insmod's.

        A module loaded by hand (a reload) registers its PF netdevs administratively down, as
        the real igb does; at boot the host's network configuration keeps them as they were."""
        if self._loaded(driver):
            return None
        module = _module_name(driver)
        options = self.module_options(module)
        counts: dict[str, tuple[int, int]] = {}
        for pf_bdf in self._state["pfs"]:
            profile = self._profile(pf_bdf)
            if profile.pf_driver == driver and profile.module_param:
                parsed = _vf_counts(profile, options, self._state["pfs"][pf_bdf]["totalvfs"])
                if isinstance(parsed, int):
                    return os.strerror(parsed)  # a value the module cannot take
                counts[pf_bdf] = parsed
        folder = self.root / DRIVERS / driver
        folder.mkdir(parents=True)
        for attr in ("bind", "unbind", "new_id", "remove_id"):
            _write(folder / attr, "")
        parameters = self.root / "sys/module" / module / "parameters"
        parameters.mkdir(parents=True, exist_ok=True)
        for key, value in options.items():
            if driver == "igb" and key == "max_vfs" and value.isdigit() and int(value) > 7:
                # igb_probe_vfs() caps the module's own max_vfs at 7: the parameter reads 7.
                value = "7"
            _write(parameters / key, f"{value}\n")
        if not at_boot:
            for pf_bdf, pf in self._state["pfs"].items():
                if self._profile(pf_bdf).pf_driver == driver:
                    pf["operstate"] = "down"
        for entry in sorted(os.listdir(self.root / DEVICES)):
            if (self._driver_of(entry) is None and self._matches(driver, entry)
                    and self._can_probe(entry)):
                self._bind(entry, driver)
                if entry in counts and counts[entry][0]:
                    enabled, probed = counts[entry]
                    self._enable_vfs(entry, enabled, probe=probed)
        return None

    # ------------------------------------------------------------------ whole-host events
    def boot_id(self) -> str:
        return self._read(self.root / "proc/sys/kernel/random/boot_id")

    def _boot(self) -> None:
        self._state["boot_count"] += 1
        self._state["next_ifindex"] = 2
        _write(self.root / "proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")
        for module in BOOT_MODULES:
            if module in driver_id_table():
                self._load(module, at_boot=True)

    def reboot(self) -> None:
        """Power-cycle: VFs gone, overrides and VF config cleared, modules loaded afresh from
        etc/modprobe.d (so module-param VFs come back), and a new boot id."""
        with self._locked() as state:
            for driver in sorted(os.listdir(self.root / DRIVERS)):
                self._unload(driver)
            for bdf in os.listdir(self.root / DEVICES):
                _write(self._dev(bdf) / "driver_override", "(null)\n")
                if bdf in state["pfs"]:
                    _write(self._dev(bdf) / "sriov_drivers_autoprobe", "1\n")
            state["vf_config"] = {}
            self._boot()

    def set_operstate(self, netdev: str, operstate: Literal["up", "down"]) -> None:
        """Bring a PF port's link up or down (as a cable or `ip link set` would)."""
        with self._locked() as state:
            for pf in state["pfs"].values():
                if netdev in pf["netdevs"]:
                    pf["operstate"] = operstate
                    link = self.root / "sys/class/net" / netdev
                    if link.exists():
                        _write(link / "operstate", f"{operstate}\n")
                    return
        raise NotFound(f"no PF netdev {netdev!r} on the simulated host")

    # ------------------------------------------------------------------ the netlink port
    @property
    def netlink(self) -> SimHost:
        return self

    def _pf_by_netdev(self, netdev: str) -> str:
        for bdf, pf in self._state["pfs"].items():
            if netdev in pf["netdevs"]:
                return str(bdf)
        raise _oserror(errno.ENODEV, netdev)

    def _vf_config(self, pf_bdf: str, index: int, vf_bdf: str) -> dict[str, Any]:
        config = dict(VF_DEFAULTS)
        config["mac"] = _vf_mac(self._profile(pf_bdf), vf_bdf)
        config.update(self._state["vf_config"].get(f"{pf_bdf}/{index}", {}))
        return config

    def vf_configs(self, pf_netdev: str) -> dict[int, VfConfig]:
        self._wait_while_hung(f"netlink:{pf_netdev}")
        with self._locked(write=False):
            pf_bdf = self._pf_by_netdev(pf_netdev)
            return {index: VfConfig.from_dict(self._vf_config(pf_bdf, index, vf_bdf))
                    for index, vf_bdf in self._vfs_of(pf_bdf)}

    def set_vf(self, pf_netdev: str, index: int, field: str, config: VfConfig) -> None:
        """rtnetlink do_setvfinfo() and the PF driver's ndo_set_vf_* callbacks."""
        key = f"netlink:{pf_netdev}"
        self._wait_while_hung(key)
        with self._locked():
            fault = self._take_fault(key)
            if fault is not None and fault.kind == "errno":
                raise _oserror(fault.errno or errno.EIO, key)
            if fault is not None and fault.kind == "ignore":
                return
            pf_bdf = self._pf_by_netdev(pf_netdev)
            vf_link = self._dev(pf_bdf) / f"virtfn{index}"
            if not vf_link.is_symlink():
                raise _oserror(errno.EINVAL, key)  # a VF index at or above numvfs
            vfs = {index: os.path.basename(os.readlink(vf_link))}
            driver = self._profile(pf_bdf).pf_driver
            unsupported = UNSUPPORTED_VF_FIELDS.get(driver, set())
            changes: dict[str, Any] = {}
            if field == "mac":
                mac = config.mac or "00:00:00:00:00:00"
                if int(mac[:2], 16) & 1:
                    raise _oserror(errno.EINVAL, key)  # is_valid_ether_addr()
                changes["mac"] = mac
            elif field == "vlan":
                if (config.vlan or 0) > 4095 or (config.qos or 0) > 7:
                    raise _oserror(errno.EINVAL, key)
                changes.update(vlan=config.vlan or 0, qos=config.qos or 0)
            elif field == "rate":
                refused = _rate_errno(self._profile(pf_bdf), self._state["pfs"][pf_bdf],
                                      config.min_tx_rate or 0, config.max_tx_rate or 0)
                if refused:
                    raise _oserror(refused, key)
                changes.update(min_tx_rate=config.min_tx_rate or 0,
                               max_tx_rate=config.max_tx_rate or 0)
            elif field in ("spoofchk", "trust"):
                if field in unsupported:
                    raise _oserror(errno.EOPNOTSUPP, key)
                changes[field] = bool(getattr(config, field))
            elif field == "link_state":
                if "link_state" in unsupported:
                    raise _oserror(errno.EOPNOTSUPP, key)
                if (config.link_state or "auto") not in LINK_STATE_CODES:
                    raise _oserror(errno.EINVAL, key)
                changes["link_state"] = config.link_state or "auto"
            else:
                raise _oserror(errno.EINVAL, key)
            self._state["vf_config"].setdefault(f"{pf_bdf}/{index}", {}).update(changes)
            if "mac" in changes and driver not in MAC_AT_VF_PROBE:
                # The VF driver picks up the MAC the PF assigned (igb and ixgbe: only when the
                # VF driver is probed again, see model/drivers.py).
                for name in os.listdir(self._dev(vfs[index]) / "net") \
                        if (self._dev(vfs[index]) / "net").is_dir() else []:
                    _write(self._dev(vfs[index]) / "net" / name / "address",
                           f"{changes['mac']}\n")

    def set_link(self, netdev: str, *, mtu: int | None = None, up: bool | None = None) -> None:
        key = f"netlink:{netdev}"
        self._wait_while_hung(key)
        with self._locked():
            fault = self._take_fault(key)
            if fault is not None and fault.kind == "errno":
                raise _oserror(fault.errno or errno.EIO, key)
            net = self.root / "sys/class/net" / netdev
            if not net.exists():
                raise _oserror(errno.ENODEV, netdev)
            if mtu is not None:
                if not 68 <= mtu <= 9216:
                    raise _oserror(errno.EINVAL, netdev)
                _write(net / "mtu", f"{mtu}\n")
            if up is not None:
                _write(net / "operstate", "up\n" if up else "down\n")
                for pf in self._state["pfs"].values():
                    if netdev in pf["netdevs"]:
                        pf["operstate"] = "up" if up else "down"


def _rate_errno(profile: NicProfile, pf: dict[str, Any], min_rate: int,
                max_rate: int) -> int | None:
    """The PF driver's ndo_set_vf_rate() for one VF: None when it takes the rates, else the
    errno it returns. Checked against the real igb (82576) in tests/realkernel."""
    driver, link_up, speed = profile.pf_driver, pf["operstate"] == "up", profile.link_mbps
    if profile.vf_rate == "none":
        return errno.EOPNOTSUPP  # igb_ndo_set_vf_bw(): every igb part but the 82576
    if driver == "igb":
        # igb_ndo_set_vf_bw(): min_tx_rate, link down (STATUS.LU clear), above the link speed.
        if min_rate or not link_up or max_rate > speed:
            return errno.EINVAL
    elif driver == "ixgbe":
        # ixgbe_ndo_set_vf_bw() (ixgbe_sriov.c): link up at 10 Gb/s, no min_tx_rate, and a
        # max_tx_rate of 0 or in (10, link speed].
        if not link_up or speed != 10000 or min_rate or (
                max_rate and (max_rate <= 10 or max_rate > speed)):
            return errno.EINVAL
    elif driver == "i40e":
        # i40e_ndo_set_vf_bw() (i40e_virtchnl_pf.c): "Invalid min tx rate", and
        # i40e_set_bw_limit(): above the link speed.
        if min_rate or max_rate > speed:
            return errno.EINVAL
    elif driver == "mlx4_core" and min_rate:
        return errno.EPROTONOSUPPORT  # mlx4_set_vf_rate(): "Minimum BW share not supported"
    elif driver in ("ice", "mlx5_core") and max_rate and min_rate > max_rate:
        return errno.EINVAL  # ice_set_vf_bw(), mlx5 esw_qos: min above max
    return None


def _kstrtou16(value: str) -> int | None:
    """lib/kstrtox.c kstrtou16(s, 0): an optional '+', then 0x-hex, 0-octal or decimal digits,
    at most one trailing newline, nothing else; None where the kernel returns an error.

    sriov_numvfs_store() turns any kstrtou16() error into EINVAL, its ERANGE for 65536 too
    (checked on the real igb by tests/realkernel's sizing scenario)."""
    text = value[:-1] if value.endswith("\n") else value
    text = text[1:] if text.startswith("+") else text
    if text[:2].lower() == "0x":
        digits, base = text[2:], 16
    elif text.startswith("0") and len(text) > 1:
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    allowed = "0123456789abcdef"[:base]
    if not digits or any(ch not in allowed for ch in digits.lower()):
        return None
    number = int(digits, base)
    return number if number <= 0xFFFF else None


def _kstrtobool(value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("1", "y", "yes", "on", "true"):
        return True
    if text in ("0", "n", "no", "off", "false"):
        return False
    return None


def _vf_counts(profile: NicProfile, options: dict[str, str],
               totalvfs: int) -> tuple[int, int] | int:
    """(VFs to enable, VFs to probe in the host) from a PF driver's module options, or the
    errno that makes the module load fail."""
    if profile.module_param is None:
        return (0, 0)
    raw = options.get(profile.module_param, "0")
    if profile.module_param_kind == "scalar":
        if not raw.isdigit():
            return errno.EINVAL
        # igb and ixgbe clamp an oversized max_vfs to their limit and warn.
        count = min(int(raw), profile.driver_vf_limit or totalvfs)
        # pci_enable_sriov() refuses more than TotalVFs; the driver loads with no VFs.
        return (count, count) if count <= totalvfs else (0, 0)
    # mlx4_core: num_vfs and probe_vf are "port1,port2,port1+2" byte arrays, or one number.
    totals = _byte_array(raw)
    probes = _byte_array(options.get("probe_vf", "0"))
    for parsed in (totals, probes):
        if isinstance(parsed, int):
            return parsed
    assert isinstance(totals, list) and isinstance(probes, list)
    enabled = sum(totals)
    if enabled > totalvfs:
        return (0, 0)
    return (enabled, min(sum(probes), enabled))


def _byte_array(text: str) -> list[int] | int:
    """param_array_set() over param_set_byte(): ERANGE above 255, EINVAL for non-numbers."""
    parts = text.split(",")
    if len(parts) > 3 or not all(part.isdigit() for part in parts):
        return errno.EINVAL
    if any(int(part) > 255 for part in parts):
        return errno.ERANGE
    return [int(part) for part in parts]


def _pf_mac(vendor: int, bdf: str, port: int) -> str:
    first, second, third = OUI.get(vendor, (0x02, 0x00, 0x00))
    address = PciAddress.parse(bdf)
    return (f"{first:02x}:{second:02x}:{third:02x}:{address.bus:02x}:"
            f"{address.slot << 3 | address.func:02x}:{port:02x}")


def _vf_mac(profile: NicProfile, bdf: str) -> str:
    if profile.vf_mac_zero:
        return "00:00:00:00:00:00"  # fresh Intel VFs, until the PF sets a MAC
    digest = zlib.crc32(bdf.encode()).to_bytes(4, "big")
    return "02:" + ":".join(f"{byte:02x}" for byte in digest) + ":01"
