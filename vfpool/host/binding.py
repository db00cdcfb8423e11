"""Binding a VF to a driver the way libvirt does: driver_override, unbind, drivers_probe."""

from __future__ import annotations

from vfpool.errors import HostError, VerificationError, describe_oserror
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress


def _write(sysfs: Sysfs, path_parts: tuple[str, ...], value: str, what: str) -> None:
    path = sysfs.root.joinpath("sys", *path_parts)
    try:
        sysfs.kernel.write_attr(path, value)
    except OSError as exc:
        raise HostError(f"{what} failed with {describe_oserror(exc)}", errno=exc.errno,
                        path=str(path)) from exc


def ensure_module(sysfs: Sysfs, driver: str) -> None:
    """Load a driver's module when the driver is not registered yet (vfio-pci at first use)."""
    if (sysfs.root / "sys/bus/pci/drivers" / driver).is_dir():
        return
    result = sysfs.kernel.modprobe([driver])
    if result.returncode != 0:
        raise HostError(f"`{' '.join(result.argv)}` failed with exit code {result.returncode}: "
                        f"{result.stderr.strip() or 'no output'}", argv=list(result.argv))


def set_override(sysfs: Sysfs, address: PciAddress, value: str | None) -> None:
    """Set (or with None clear) a device's driver_override; a bound driver stays bound."""
    if sysfs.driver_override(address) == value:
        return
    _write(sysfs, ("bus/pci/devices", str(address), "driver_override"), f"{value or ''}\n",
           f"setting driver_override of {address} to {value or '(none)'}")


def bind(sysfs: Sysfs, address: PciAddress, driver: str | None) -> None:
    """Leave a VF bound to ``driver`` with its override naming it, or with None unbound and
    without an override; then verify.

    The override stays set while the VF is bound: with sriov_drivers_autoprobe=0 on the PF,
    the kernel probes a VF only through its override (pci_device_can_probe()). It is compared
    too, so an override left by an interrupted bind is cleared even when the driver already
    matches.
    """
    bdf = str(address)
    current = sysfs.driver(address)
    if current == driver and sysfs.driver_override(address) == driver:
        return
    if driver is not None:
        ensure_module(sysfs, driver)
    set_override(sysfs, address, driver)
    if current is not None and current != driver:
        _write(sysfs, ("bus/pci/drivers", current, "unbind"), bdf,
               f"unbinding VF {bdf} from {current}")
    if driver is not None and current != driver:
        _write(sysfs, ("bus/pci", "drivers_probe"), bdf, f"probing VF {bdf} for {driver}")
    now = sysfs.driver(address)
    override = sysfs.driver_override(address)
    if now != driver or override != driver:
        raise VerificationError(f"VF {bdf}", {"driver": (driver, now),
                                              "driver_override": (driver, override)})


def probe(sysfs: Sysfs, address: PciAddress) -> None:
    """Ask the kernel to bind a device to the driver that matches it (``drivers_probe``)."""
    _write(sysfs, ("bus/pci", "drivers_probe"), str(address), f"probing {address}")


def reprobe(sysfs: Sysfs, address: PciAddress) -> None:
    """Unbind a VF from its driver and probe it again (its override still names that driver):
    a VF driver reads what the PF assigned, such as the MAC, only when it is probed."""
    bdf = str(address)
    current = sysfs.driver(address)
    if current is None:
        return
    _write(sysfs, ("bus/pci/drivers", current, "unbind"), bdf, f"unbinding VF {bdf} from {current}")
    _write(sysfs, ("bus/pci", "drivers_probe"), bdf, f"probing VF {bdf} for {current}")
    now = sysfs.driver(address)
    if now != current:
        raise VerificationError(f"VF {bdf}", {"driver": (current, now)})
