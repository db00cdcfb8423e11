"""Changing a PF's VFs: sriov_numvfs, autoprobe, module parameters. Kernel errors become
HostErrors whose messages say what to do."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

from vfpool.errors import HostError, describe_oserror
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.snapshot import PfSnapshot

POLL_INTERVAL = 0.05


def numvfs_error(pf: PfSnapshot, count: int, exc: OSError) -> HostError:
    """What an errno from a ``sriov_numvfs`` write means for the admin."""
    code = exc.errno
    driver = pf.driver or "(none)"
    what = f"writing sriov_numvfs={count} on PF {pf.label} failed with {describe_oserror(exc)}"
    advice = {
        errno.EBUSY: "VFs are still enabled, assigned to guests, or the driver is not ready; "
                     "set the count to 0 first, release the VFs, then retry",
        errno.ERANGE: f"the PF supports at most {pf.totalvfs} VFs",
        errno.EPERM: (f"driver {driver} refuses to disable VFs that are assigned to guests "
                      "(ixgbe); stop those guests or release their VFs first") if count == 0
        else (f"driver {driver} refuses that many VFs (igb allows 7; ixgbe, i40e limit them "
              "by resources); ask for fewer"),
        errno.EIO: "the device or its firmware failed; check `dmesg`, then retry",
        errno.EAGAIN: f"driver {driver} is busy; retry",
        errno.EINVAL: "the kernel refused the value",
    }
    if code == errno.ENOENT:
        if pf.driver is None:
            return HostError(f"{what}: no driver is bound to the PF; load its driver and "
                             "retry", errno=code, pf=str(pf.pci))
        return HostError(f"driver {driver} cannot resize through sysfs; use --method "
                         "module-param", errno=code, pf=str(pf.pci))
    suffix = advice.get(code or 0)
    return HostError(f"{what}: {suffix}" if suffix else what, errno=code, pf=str(pf.pci))


def write_numvfs(sysfs: Sysfs, pf: PfSnapshot, count: int) -> None:
    try:
        sysfs.kernel.write_attr(sysfs.attr(pf.pci, "sriov_numvfs"), f"{count}\n")
    except OSError as exc:
        raise numvfs_error(pf, count, exc) from exc


def write_autoprobe(sysfs: Sysfs, pf: PfSnapshot, enabled: bool) -> None:
    try:
        sysfs.kernel.write_attr(sysfs.attr(pf.pci, "sriov_drivers_autoprobe"),
                                "1\n" if enabled else "0\n")
    except OSError as exc:
        raise HostError(f"setting sriov_drivers_autoprobe on PF {pf.label} failed with "
                        f"{describe_oserror(exc)}", errno=exc.errno, pf=str(pf.pci)) from exc


def all_netdevs(pf: PfSnapshot) -> bool:
    return all(vf.netdevs for vf in pf.vfs)


def _ifindexes(pf: PfSnapshot) -> list[list[int | None]]:
    return [[netdev.ifindex for netdev in vf.netdevs] for vf in pf.vfs]


def wait_for_vfs(sysfs: Sysfs, address: PciAddress, count: int, *,
                 ready: Callable[[PfSnapshot], bool] = lambda pf: True,
                 timeout: float, clock: Callable[[], float] = time.monotonic) -> PfSnapshot:
    """Poll until the PF has ``count`` VFs and ``ready`` holds (netdevs where a pool needs
    them), or the deadline passes.

    udev and the VF drivers create devices and netdevs asynchronously on a real host, so a
    successful write is not the end of the change; a VF netdev counts once udev has handled
    it (renamed it from its first ``ethN`` name). Returns the last snapshot either way; the
    caller verifies it and reports what never appeared.
    """
    deadline = clock() + timeout
    while True:
        pf = sysfs.pf(address)
        done = pf.numvfs == count and len(pf.vfs) == count and ready(pf) and all(
            sysfs.udev_done_with(netdev) for vf in pf.vfs for netdev in vf.netdevs)
        if done and not sysfs.udev_runs():
            return pf  # no udev: nothing renames a netdev
        if done:
            # udev renames before it writes its entry: read again so that no first name
            # (ethN) read before the check is returned, unless a netdev changed meanwhile.
            again = sysfs.pf(address)
            if _ifindexes(again) == _ifindexes(pf):
                return again
            continue
        if clock() >= deadline:
            return pf
        time.sleep(POLL_INTERVAL)


def carrier(sysfs: Sysfs, address: PciAddress) -> bool | None:
    """The carrier of the PF's (first) netdev: True or False, or None where it cannot be read:
    no netdev, or a netdev that is administratively down (the kernel's read of ``carrier`` is
    EINVAL then). Read through the PF's own ``net/`` folder, which a udev rename cannot race."""
    folder = sysfs.device_dir(address) / "net"
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        try:
            text = (folder / name / "carrier").read_text().strip()
        except OSError:
            return None
        return {"1": True, "0": False}.get(text)
    return None


def wait_for_carrier(sysfs: Sysfs, addresses: list[PciAddress], *, timeout: float,
                     clock: Callable[[], float] = time.monotonic) -> dict[PciAddress, bool | None]:
    """Poll until every PF in ``addresses`` has its carrier back, or the deadline passes, or
    a PF's netdev is administratively down (nothing brings its carrier back by itself then).
    Returns the PFs whose carrier is not back: False (still down) or None (not up at all)."""
    deadline = clock() + timeout
    waiting = list(addresses)
    missing: dict[PciAddress, bool | None] = {}
    while waiting:
        for address in list(waiting):
            state = carrier(sysfs, address)
            if state is True:
                waiting.remove(address)
            elif state is None:
                waiting.remove(address)
                missing[address] = None
        if not waiting or clock() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    missing.update({address: False for address in waiting})
    return missing


def bring_up(sysfs: Sysfs, address: PciAddress, *, timeout: float,
             clock: Callable[[], float] = time.monotonic) -> str | None:
    """``ip link set NETDEV up`` for the PF's netdev once it is there and udev has named it
    (a reload registers it as ethN, and udev renames it a moment later). Returns the name it
    was brought up under, or None when that did not succeed before the deadline."""
    deadline = clock() + timeout
    while True:
        pf = sysfs.pf(address, with_vfs=False)
        if pf.netdevs and sysfs.udev_done_with(pf.netdevs[0]):
            again = sysfs.pf(address, with_vfs=False)
            if again.netdevs and again.netdevs[0].ifindex == pf.netdevs[0].ifindex:
                name = again.netdevs[0].name
                try:
                    sysfs.kernel.netlink.set_link(name, up=True)
                    return name
                except OSError:
                    pass  # renamed or gone meanwhile: read it again
        if clock() >= deadline:
            return None
        time.sleep(POLL_INTERVAL)


# -- module parameters: /etc/modprobe.d/vfpool-<module>.conf under the host root

def modprobe_conf(root: Path, module: str) -> Path:
    return root / "etc/modprobe.d" / f"vfpool-{module}.conf"


def read_modprobe_conf(root: Path, module: str) -> str | None:
    try:
        return modprobe_conf(root, module).read_text()
    except FileNotFoundError:
        return None


def write_modprobe_conf(root: Path, module: str, text: str | None) -> None:
    """Atomically replace (or, with None, remove) vfpool's options file for ``module``."""
    path = modprobe_conf(root, module)
    if text is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def conf_text(module: str, options: str) -> str:
    return (f"# written by vfpool: VF count for every port the {module} driver serves\n"
            f"options {module} {options}\n")


def reload_module(sysfs: Sysfs, module: str) -> None:
    """``modprobe -r MODULE`` then ``modprobe MODULE``; failures carry the argv and stderr."""
    for args in (["-r", module], [module]):
        result = sysfs.kernel.modprobe(args)
        if result.returncode != 0:
            raise HostError(f"`{' '.join(result.argv)}` failed with exit code "
                            f"{result.returncode}: {result.stderr.strip() or 'no output'}",
                            argv=list(result.argv), returncode=result.returncode)


def load_module(sysfs: Sysfs, module: str) -> None:
    result = sysfs.kernel.modprobe([module])
    if result.returncode != 0:
        raise HostError(f"`{' '.join(result.argv)}` failed with exit code {result.returncode}: "
                        f"{result.stderr.strip() or 'no output'}", argv=list(result.argv),
                        returncode=result.returncode)

