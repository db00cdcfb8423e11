"""macvtap in passthru mode on a VF netdev, and the tap and vhost-net fds QEMU gets.

The tap device node is made from the macvtap's device numbers rather than looked up in /dev:
udev may not run (containers, CI), and /dev/tapN names clash between network namespaces.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vfpool.errors import HostError, describe_oserror
from vfpool.host import netns

VHOST_NET = "/dev/vhost-net"


@dataclass(frozen=True)
class Macvtap:
    name: str
    lower: str
    mac: str
    ifindex: int
    netns: str | None


def macvtap_name(lease_id: int) -> str:
    return f"vfpmvt{lease_id}"[:15]


def create(lower: str, name: str, mac: str, namespace: str | None) -> Macvtap:
    """Create ``name`` (macvtap, passthru) on ``lower`` with ``mac`` and bring both up."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with netns.entered(namespace), IPRoute() as ipr:
        try:
            found = ipr.link_lookup(ifname=lower)
            if not found:
                raise HostError(f"VF netdev {lower} does not exist"
                                + (f" in network namespace {namespace}" if namespace else ""))
            lower_index = found[0]
            ipr.link("set", index=lower_index, state="up")
            ipr.link("add", ifname=name, kind="macvtap", link=lower_index,
                     macvtap_mode="passthru")
            index = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, address=mac)
            _no_ipv6(name)
            ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise HostError(f"creating macvtap {name} on {lower} failed with "
                            f"{describe_oserror(OSError(exc.code, ''))}", errno=exc.code) from exc
    return Macvtap(name, lower, mac, index, namespace)


def _no_ipv6(name: str) -> None:
    # The host must not speak on the guest's interface (router solicitations, DAD, MLD).
    path = Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6")
    if path.exists():
        path.write_text("1\n")


def delete(name: str, namespace: str | None) -> bool:
    """Remove a macvtap; False when it was already gone."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with netns.entered(namespace), IPRoute() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                return False
            ipr.link("del", index=found[0])
            return True
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise HostError(f"deleting macvtap {name} failed with "
                        f"{describe_oserror(OSError(exc.code, ''))}", errno=exc.code) from exc
    except HostError:
        return False  # the namespace itself is gone


def exists(name: str, namespace: str | None) -> bool:
    try:
        with netns.entered(namespace):
            return Path(f"/sys/class/net/{name}").exists()
    except HostError:
        return False


def open_tap(tap: Macvtap) -> int:
    """Open the macvtap's character device read-write; the fd is inheritable for QEMU."""
    major, minor = _device_numbers(tap)
    with tempfile.TemporaryDirectory(prefix="vfpool-tap-") as folder:
        node = os.path.join(folder, f"tap{tap.ifindex}")
        try:
            os.mknod(node, 0o600 | 0o020000, os.makedev(major, minor))
            fd = os.open(node, os.O_RDWR)
        except OSError as exc:
            raise HostError(f"opening the tap device of {tap.name} failed with "
                            f"{describe_oserror(exc)}", errno=exc.errno) from exc
    os.set_inheritable(fd, True)
    return fd


def _device_numbers(tap: Macvtap) -> tuple[int, int]:
    """The tap character device's major:minor, from the macvtap's sysfs ``dev`` file.

    sysfs shows the network namespace of whoever mounted it, not the caller's, so inside a
    namespace the file is read through `ip netns exec`, which mounts a sysfs of its own.
    """
    relative = f"class/net/{tap.name}/macvtap/tap{tap.ifindex}/dev"
    if tap.netns is None:
        try:
            text = (Path("/sys") / relative).read_text()
        except OSError as exc:
            raise HostError(f"macvtap {tap.name} has no tap device: {describe_oserror(exc)}",
                            errno=exc.errno) from exc
    else:
        argv = ["ip", "netns", "exec", tap.netns, "cat", f"/sys/{relative}"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise HostError(f"`{' '.join(argv)}` failed with exit code {result.returncode}: "
                            f"{result.stderr.strip()}", argv=argv)
        text = result.stdout
    try:
        major, minor = (int(part) for part in text.strip().split(":"))
    except ValueError:
        raise HostError(f"macvtap {tap.name}: unreadable device numbers {text!r}") from None
    return major, minor


def open_vhost() -> tuple[int | None, str | None]:
    """An inheritable /dev/vhost-net fd, or None with the reason QEMU falls back to
    userspace virtio-net."""
    try:
        fd = os.open(VHOST_NET, os.O_RDWR)
    except OSError as exc:
        return None, f"cannot open {VHOST_NET} ({describe_oserror(exc)}); using userspace " \
                     "virtio-net without vhost"
    os.set_inheritable(fd, True)
    return fd, None
