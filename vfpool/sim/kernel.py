"""The simulated kernel behind sysfs writes and modprobe: PCI core, SR-IOV and driver binding.

Each store method follows the kernel function it names (SRIOV-FACTS.md) and raises ``OSError``
with the errno the kernel would return. ``Kernel`` works on a ``Tree`` whose state is locked by
the caller; it never takes the lock nor looks at faults itself.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from vfpool.model.pci import PciAddress, vf_address
from vfpool.ports import CommandResult
from vfpool.sim import link
from vfpool.sim.profiles import PROFILES, NicProfile, driver_id_table
from vfpool.sim.tree import DEVICES, DRIVERS, Tree, module_name, oserror, symlink, write

PAGE_SIZE = 4096
# Drivers that register netdevs when they bind a function.
NET_DRIVERS = frozenset({"igb", "ixgbe", "i40e", "ice", "mlx5_core", "mlx4_core", "igbvf",
                         "ixgbevf", "iavf", "e1000e"})
# Loaded at boot: the NIC drivers (udev loads them by modalias), not vfio-pci.
BOOT_MODULES = ("e1000e", "igb", "ixgbe", "i40e", "ice", "mlx5_core", "mlx4_core", "igbvf",
                "ixgbevf", "iavf")
_DEVICE_ATTR = re.compile(r"^sys/devices/pci0000:00/(?P<bdf>[^/]+)/(?P<attr>[^/]+)$")
_DRIVER_ATTR = re.compile(r"^sys/bus/pci/drivers/(?P<driver>[^/]+)/(?P<attr>[^/]+)$")
# VF drivers that, at probe, make up a MAC of their own when the PF gives none and register it
# with the PF, whose VF list then shows it. Only igbvf (82576, I350), from the sources:
#  igbvf_probe() (igbvf/netdev.c) resets the VF: e1000_reset_hw_vf() (igbvf/vf.c) sends
#   E1000_VF_RESET, which igb_vf_reset_msg() (igb/igb_main.c) answers with an ACK carrying the
#   VF's MAC (vf_mac_addresses), or a NACK while that is zero. On a NACK igbvf logs "MAC
#   address not assigned by administrator" and takes eth_hw_addr_random() (a locally
#   administered unicast MAC); igbvf_reset() -> e1000_init_hw_vf() -> e1000_rar_set_vf()
#   sends it as E1000_VF_SET_MAC_ADDR, and igb_set_vf_mac_addr() stores it as the VF's MAC.
#  So the PF lists it; a later probe (an igbvf rebind) gets it back in the ACK and keeps it
#   (seen on the real igb, tests/realkernel binding scenario); a MAC the PF set (ip link set
#   PF vf N mac M) is what the ACK carries; setting zero makes the next probe make up a new
#   one. igb zeroes the MAC itself only at a VF function-level reset (igb_vf_reset_event(),
#   which vfio-pci triggers when a user opens the device; not modelled) and when SR-IOV is
#   enabled anew (igb_vf_configure()).
#  igb answers the mailbox from its "other" interrupt (igb_msix_other() -> igb_msg_task()),
#   which exists only while the PF is open: with the PF down igbvf says "PF still in reset
#   state. Is the PF interface up?", takes a random MAC, and the PF learns nothing. vfio-pci
#   sends nothing, so a VF that never had igbvf stays at zero.
# Not ixgbevf: ixgbevf_sw_init() also takes a random MAC, but registers it with ixgbe only when
# its netdev is opened; iavf and mlx5_core are not modelled (see the sim's notes).
MAC_REGISTERED_AT_PROBE = frozenset({"igbvf"})


@dataclass(frozen=True)
class ModprobeRequest:
    """One ``modprobe [-r] MODULE`` that names a module the sim has."""

    argv: tuple[str, ...]
    module: str
    driver: str
    remove: bool

    def done(self) -> CommandResult:
        return CommandResult(self.argv, 0, "", "")

    def refused(self, exc: OSError) -> CommandResult:
        verb = "remove" if self.remove else "insert"
        code = exc.errno or errno.EIO
        return CommandResult(self.argv, 1, "", f"modprobe: ERROR: could not {verb} "
                             f"'{self.module}': {os.strerror(code)}\n")


def modprobe_request(args: list[str]) -> ModprobeRequest | CommandResult:
    """modprobe's reading of its arguments: a request, or the failure it exits with."""
    argv = ("modprobe", *args)
    remove = "-r" in args or "--remove" in args
    names = [arg for arg in args if not arg.startswith("-")]
    if len(names) != 1:
        return CommandResult(argv, 1, "", "modprobe: ERROR: expected one module name\n")
    module = module_name(names[0])
    drivers = {module_name(driver): driver for driver in driver_id_table()}
    if module not in drivers:
        return CommandResult(argv, 1, "", f"modprobe: FATAL: Module {names[0]} not found "
                             "in directory /lib/modules/sim\n")
    return ModprobeRequest(argv, module, drivers[module], remove)


def module_options(root: Path, module: str) -> dict[str, str]:
    """``options MODULE k=v`` from the sim's etc/modprobe.d/*.conf, as modprobe reads it."""
    options: dict[str, str] = {}
    folder = root / "etc/modprobe.d"
    for conf in sorted(folder.glob("*.conf")):
        for line in conf.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "options" and module_name(words[1]) == module:
                for word in words[2:]:
                    key, _, value = word.partition("=")
                    options[key] = value
    return options


class Kernel:
    """The kernel's side of the sim's sysfs writes and module loads, on a locked ``Tree``."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.root = tree.root
        self.state = tree.state

    # ------------------------------------------------------------------ sysfs stores
    def store(self, key: str, real: Path, value: str, *, no_netdev: bool) -> None:
        """A write of ``value`` to the attribute at ``key`` (relative to the root)."""
        device_attr = _DEVICE_ATTR.match(key)
        driver_attr = _DRIVER_ATTR.match(key)
        if device_attr is not None:
            bdf, attr = device_attr["bdf"], device_attr["attr"]
            if attr == "sriov_numvfs" and bdf in self.state["pfs"]:
                return self._store_numvfs(bdf, value, real, no_netdev=no_netdev)
            if attr == "sriov_drivers_autoprobe" and bdf in self.state["pfs"]:
                enabled = _kstrtobool(value)
                if enabled is None:
                    raise oserror(errno.EINVAL, real)
                return write(real, f"{int(enabled)}\n")
            if attr == "driver_override":
                text = value[:-1] if value.endswith("\n") else value
                if len(value) >= PAGE_SIZE:
                    raise oserror(errno.EINVAL, real)
                return write(real, f"{text or '(null)'}\n")
        elif driver_attr is not None and self.tree.loaded(driver_attr["driver"]):
            driver, attr = driver_attr["driver"], driver_attr["attr"]
            if attr == "unbind":
                return self._store_unbind(driver, value.strip(), real)
            if attr == "bind":
                return self._store_bind(driver, value.strip(), real)
        elif key == "sys/bus/pci/drivers_probe":
            return self._store_drivers_probe(value.strip(), real)
        # Attributes without a store method: kernfs refuses the open for writing.
        raise oserror(errno.EACCES if real.exists() else errno.ENOENT, real)

    def _store_numvfs(self, bdf: str, value: str, path: Path, *, no_netdev: bool) -> None:
        """drivers/pci/iov.c sriov_numvfs_store(), then the driver's sriov_configure()."""
        tree = self.tree
        wanted = _kstrtou16(value)
        if wanted is None:
            raise oserror(errno.EINVAL, path)
        device = tree.dev(bdf)
        if wanted > int(tree.read(device / "sriov_totalvfs")):
            raise oserror(errno.ERANGE, path)
        current = int(tree.read(device / "sriov_numvfs"))
        if wanted == current:
            return
        profile = tree.profile(bdf)
        driver = tree.driver_of(bdf)
        # No driver, or a driver without sriov_configure (mlx4_core): nothing can resize.
        if driver is None or not profile.sysfs_resize:
            raise oserror(errno.ENOENT, path)
        if wanted == 0:
            self.disable_vfs(bdf)
            self._bounce(bdf, profile)
            return None
        if current:
            raise oserror(errno.EBUSY, path)  # "Disable before enabling"
        if profile.driver_vf_limit is not None and wanted > profile.driver_vf_limit:
            raise oserror(errno.EPERM, path)  # igb_pci_enable_sriov: more than 7
        autoprobe = tree.read(device / "sriov_drivers_autoprobe") == "1"
        # igb_sriov_reinit() (and its kin, see NicProfile.sizing_bounce) reopens the PF before
        # pci_enable_sriov() creates the VFs, so VF drivers probe against an open PF.
        self._bounce(bdf, profile)
        self.enable_vfs(bdf, wanted, probe=wanted if autoprobe else 0, netdevs=not no_netdev)
        return None

    def _bounce(self, bdf: str, profile: NicProfile) -> None:
        if profile.sizing_bounce:
            link.bounce(self.root, self.state["pfs"][bdf])

    def _store_unbind(self, driver: str, bdf: str, path: Path) -> None:
        if not self.tree.dev(bdf).is_dir() or self.tree.driver_of(bdf) != driver:
            raise oserror(errno.ENODEV, path)
        self.unbind(bdf)

    def _store_bind(self, driver: str, bdf: str, path: Path) -> None:
        if not self.tree.dev(bdf).is_dir() or not self.matches(driver, bdf):
            raise oserror(errno.ENODEV, path)
        if self.tree.driver_of(bdf) is not None:
            raise oserror(errno.EBUSY, path)
        if not self.can_probe(bdf):
            raise oserror(errno.ENODEV, path)
        self.bind(bdf, driver)

    def _store_drivers_probe(self, bdf: str, path: Path) -> None:
        if not self.tree.dev(bdf).is_dir():
            raise oserror(errno.ENODEV, path)
        self.probe(bdf)

    # ------------------------------------------------------------------ binding
    def matches(self, driver: str, bdf: str) -> bool:
        """pci_match_device(): driver_override wins; otherwise the driver's id table."""
        tree = self.tree
        override = tree.read(tree.dev(bdf) / "driver_override")
        if override != "(null)":
            return override == driver
        ids = (int(tree.read(tree.dev(bdf) / "vendor"), 16),
               int(tree.read(tree.dev(bdf) / "device"), 16))
        return ids in driver_id_table().get(driver, set())

    def can_probe(self, bdf: str) -> bool:
        """pci_device_can_probe(): a VF whose PF has sriov_drivers_autoprobe=0 binds only
        through driver_override."""
        tree = self.tree
        physfn = tree.physfn(bdf)
        if physfn is None:
            return True
        return (tree.read(tree.dev(physfn) / "sriov_drivers_autoprobe") == "1"
                or tree.read(tree.dev(bdf) / "driver_override") != "(null)")

    def probe(self, bdf: str) -> None:
        if self.tree.driver_of(bdf) is not None or not self.can_probe(bdf):
            return
        for driver in sorted(driver_id_table()):
            if self.tree.loaded(driver) and self.matches(driver, bdf):
                self.bind(bdf, driver)
                return

    def bind(self, bdf: str, driver: str, *, netdevs: bool = True) -> None:
        tree = self.tree
        device = tree.dev(bdf)
        symlink(device / "driver", f"../../../bus/pci/drivers/{driver}")
        symlink(self.root / DRIVERS / driver / bdf, f"../../../../devices/pci0000:00/{bdf}")
        if driver == "vfio-pci":
            group = os.path.basename(os.readlink(device / "iommu_group"))
            write(self.root / "dev/vfio" / group, "")
        elif driver in NET_DRIVERS and netdevs:
            probed = self._vf_mac_at_probe(bdf, driver)
            for name, mac, operstate, carrier in tree.netdev_names(bdf):
                tree.add_netdev(bdf, name, probed or mac, operstate, carrier)

    def _vf_mac_at_probe(self, bdf: str, driver: str) -> str | None:
        """The MAC a VF driver of MAC_REGISTERED_AT_PROBE gives its netdev (and registers with
        the PF), or None where the netdev takes the MAC the PF holds."""
        tree = self.tree
        physfn = tree.physfn(bdf)
        if driver not in MAC_REGISTERED_AT_PROBE or physfn is None:
            return None
        index = next(i for i, vf in tree.vfs_of(physfn) if vf == bdf)
        pf = self.state["pfs"][physfn]
        if not link.admin_up(pf):
            return random_mac()  # no mailbox: igbvf's own MAC, unknown to the PF
        config = self.state["vf_config"].setdefault(f"{physfn}/{index}", {})
        if config.get("mac", "00:00:00:00:00:00") != "00:00:00:00:00:00":
            return str(config["mac"])  # igb_vf_reset_msg(): ACK with the MAC it holds
        config["mac"] = random_mac()
        config["mac_admin"] = False
        return str(config["mac"])

    def unbind(self, bdf: str) -> None:
        device = self.tree.dev(bdf)
        driver = self.tree.driver_of(bdf)
        if driver is None:
            return
        if bdf in self.state["pfs"]:
            # The PF driver's remove() disables SR-IOV (pci_disable_sriov) on the way out.
            self.disable_vfs(bdf)
        for name in sorted(os.listdir(device / "net")) if (device / "net").is_dir() else []:
            (self.root / "sys/class/net" / name).unlink(missing_ok=True)
        shutil.rmtree(device / "net", ignore_errors=True)
        if driver == "vfio-pci":
            group = os.path.basename(os.readlink(device / "iommu_group"))
            (self.root / "dev/vfio" / group).unlink(missing_ok=True)
        (device / "driver").unlink()
        (self.root / DRIVERS / driver / bdf).unlink(missing_ok=True)

    # ------------------------------------------------------------------ VFs
    def enable_vfs(self, pf_bdf: str, count: int, *, probe: int, netdevs: bool = True) -> None:
        """Create ``count`` VFs; the first ``probe`` of them are offered to drivers."""
        tree = self.tree
        pf = self.state["pfs"][pf_bdf]
        profile = PROFILES[pf["profile"]]
        pf_address = PciAddress.parse(pf_bdf)
        for index in range(count):
            address = vf_address(pf_address, pf["offset"], pf["stride"], index)
            bdf = str(address)
            device = tree.add_function(address, profile.vendor, profile.vf_device,
                                       numa_node=pf["numa_node"])
            symlink(device / "physfn", f"../{pf_bdf}")
            symlink(tree.dev(pf_bdf) / f"virtfn{index}", f"../{bdf}")
            group = str(self.state["next_iommu_group"])
            self.state["next_iommu_group"] += 1
            group_dir = self.root / "sys/kernel/iommu_groups" / group / "devices"
            group_dir.mkdir(parents=True)
            symlink(group_dir / bdf, f"../../../../devices/pci0000:00/{bdf}")
            symlink(device / "iommu_group", f"../../../kernel/iommu_groups/{group}")
            if index < probe and self.can_probe(bdf):
                driver = next((d for d in sorted(driver_id_table())
                               if tree.loaded(d) and self.matches(d, bdf)), None)
                if driver is not None:
                    self.bind(bdf, driver, netdevs=netdevs)
        write(tree.dev(pf_bdf) / "sriov_numvfs", f"{count}\n")

    def disable_vfs(self, pf_bdf: str) -> None:
        tree = self.tree
        for index, bdf in reversed(tree.vfs_of(pf_bdf)):
            self.unbind(bdf)
            group_link = tree.dev(bdf) / "iommu_group"
            group = os.path.basename(os.readlink(group_link))
            shutil.rmtree(self.root / "sys/kernel/iommu_groups" / group, ignore_errors=True)
            shutil.rmtree(tree.dev(bdf))
            (self.root / "sys/bus/pci/devices" / bdf).unlink(missing_ok=True)
            (tree.dev(pf_bdf) / f"virtfn{index}").unlink()
            # The PF driver frees its per-VF state (MAC, VLAN, …) with the VFs.
            self.state["vf_config"].pop(f"{pf_bdf}/{index}", None)
        write(tree.dev(pf_bdf) / "sriov_numvfs", "0\n")

    # ------------------------------------------------------------------ modules
    def modprobe(self, request: ModprobeRequest) -> CommandResult:
        if request.remove:
            self.unload(request.driver)
            return request.done()
        error = self.load(request.driver)
        if error:
            return CommandResult(request.argv, 1, "", f"modprobe: ERROR: could not insert "
                                 f"'{request.module}': {error}\n")
        return request.done()

    def load(self, driver: str, *, at_boot: bool = False) -> str | None:
        """Load a module and bind what it matches. Returns an error text, like insmod's.

        A module loaded by hand (a reload) registers its PF netdevs administratively down, as
        the real igb does; at boot the host's network configuration keeps them as they were."""
        tree = self.tree
        if tree.loaded(driver):
            return None
        module = module_name(driver)
        options = module_options(self.root, module)
        counts: dict[str, tuple[int, int]] = {}
        for pf_bdf in self.state["pfs"]:
            profile = tree.profile(pf_bdf)
            if profile.pf_driver == driver and profile.module_param:
                parsed = _vf_counts(profile, options, self.state["pfs"][pf_bdf]["totalvfs"])
                if isinstance(parsed, int):
                    return os.strerror(parsed)  # a value the module cannot take
                counts[pf_bdf] = parsed
        folder = self.root / DRIVERS / driver
        folder.mkdir(parents=True)
        for attr in ("bind", "unbind", "new_id", "remove_id"):
            write(folder / attr, "")
        parameters = self.root / "sys/module" / module / "parameters"
        parameters.mkdir(parents=True, exist_ok=True)
        for key, value in options.items():
            if driver == "igb" and key == "max_vfs" and value.isdigit() and int(value) > 7:
                # igb_probe_vfs() caps the module's own max_vfs at 7: the parameter reads 7.
                value = "7"
            write(parameters / key, f"{value}\n")
        if not at_boot:
            for pf_bdf, pf in self.state["pfs"].items():
                if tree.profile(pf_bdf).pf_driver == driver:
                    pf["admin"] = False
                    pf.pop("carrier_at", None)
                    pf["operstate"] = "down"
        for entry in sorted(os.listdir(self.root / DEVICES)):
            if (tree.driver_of(entry) is None and self.matches(driver, entry)
                    and self.can_probe(entry)):
                self.bind(entry, driver)
                if entry in counts and counts[entry][0]:
                    enabled, probed = counts[entry]
                    self.enable_vfs(entry, enabled, probe=probed)
        return None

    def unload(self, driver: str) -> None:
        if not self.tree.loaded(driver):
            return
        bound = [entry for entry in os.listdir(self.root / DRIVERS / driver)
                 if PciAddress.looks_like(entry)]
        # VFs first: a PF's remove() would take its VFs with it anyway.
        for bdf in sorted(bound, key=lambda b: b in self.state["pfs"]):
            if self.tree.dev(bdf).is_dir():
                self.unbind(bdf)
        shutil.rmtree(self.root / DRIVERS / driver)
        shutil.rmtree(self.root / "sys/module" / module_name(driver), ignore_errors=True)

    # ------------------------------------------------------------------ whole-host events
    def boot(self) -> None:
        """Modules load (udev's coldplug) while the PF ports are still down; the host's network
        configuration brings them back up afterwards, as they were before the boot. So igbvf
        probes module-param VFs against closed PFs, which learn no VF MAC (real igb, boot 2 of
        tests/realkernel: every VF MAC in the PF's list is zero)."""
        self.state["boot_count"] += 1
        self.state["next_ifindex"] = 2
        write(self.root / "proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")
        configured = {bdf: link.admin_up(pf) for bdf, pf in self.state["pfs"].items()}
        for pf in self.state["pfs"].values():
            pf["admin"] = False
            pf.pop("carrier_at", None)
        for module in BOOT_MODULES:
            if module in driver_id_table():
                self.load(module, at_boot=True)
        for bdf, pf in self.state["pfs"].items():
            link.set_admin(self.root, pf, configured[bdf])

    def reboot(self) -> None:
        """Power-cycle: VFs gone, overrides and VF config cleared, modules loaded afresh from
        etc/modprobe.d (so module-param VFs come back), and a new boot id."""
        for driver in sorted(os.listdir(self.root / DRIVERS)):
            self.unload(driver)
        for bdf in os.listdir(self.root / DEVICES):
            write(self.tree.dev(bdf) / "driver_override", "(null)\n")
            if bdf in self.state["pfs"]:
                write(self.tree.dev(bdf) / "sriov_drivers_autoprobe", "1\n")
        self.state["vf_config"] = {}
        self.boot()


def random_mac() -> str:
    """eth_random_addr(): random bytes, the multicast bit cleared, the local bit set."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{octet:02x}" for octet in octets)


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
