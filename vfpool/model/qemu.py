"""QEMU command lines for leased VFs. Pure code: the command line is data (QEMU's machine.py).

Each lease becomes the arguments of its hand-off mode:

- ``vfio``: ``-device vfio-pci,host=<BDF>,id=<stable id>``;
- ``macvtap``: ``-netdev tap,id=…,fd=N[,vhost=on,vhostfd=M]`` and
  ``-device virtio-net-pci,netdev=…,mac=<lease MAC>,id=…``;
- ``netdev``: nothing for QEMU; other launchers get the interface name and the MAC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

QEMU_BINARY = "qemu-system-x86_64"


@dataclass(frozen=True)
class NicHandoff:
    lease_id: int
    mode: str  # vfio | macvtap | netdev
    vf_pci: str
    mac: str
    netdev: str | None = None  # the VF netdev; for macvtap, the lower device
    macvtap: str | None = None  # the macvtap interface vfpool made on the VF netdev
    tap_fd: int | None = None  # None: not opened yet (`vm args`), shown as a placeholder
    vhost_fd: int | None = None


def device_id(lease_id: int) -> str:
    """The stable QEMU device id of a lease, used again by `vm detach`."""
    return f"vfpool-{lease_id}"


def netdev_id(lease_id: int) -> str:
    return f"vfpool-{lease_id}-net"


def tap_fd_name(lease_id: int) -> str:
    """The fd name a tap fd is registered under with QMP ``getfd``."""
    return f"vfpool-{lease_id}-tap"


def qemu_escape(value: str) -> str:
    """QEMU's option syntax: a comma inside a value is written twice."""
    return value.replace(",", ",,")


def _fd(value: int | None, placeholder: str) -> str:
    return str(value) if value is not None else placeholder


def nic_args(nic: NicHandoff) -> list[str]:
    if nic.mode == "vfio":
        return ["-device", f"vfio-pci,host={nic.vf_pci},id={device_id(nic.lease_id)}"]
    if nic.mode == "macvtap":
        netdev = (f"tap,id={netdev_id(nic.lease_id)},"
                  f"fd={_fd(nic.tap_fd, f'$TAPFD_{nic.lease_id}')}")
        if nic.vhost_fd is not None:
            netdev += f",vhost=on,vhostfd={nic.vhost_fd}"
        return ["-netdev", netdev,
                "-device", f"virtio-net-pci,netdev={netdev_id(nic.lease_id)},mac={nic.mac},"
                           f"id={device_id(nic.lease_id)}"]
    if nic.mode == "netdev":
        return []
    raise ValueError(f"unknown hand-off mode {nic.mode!r}")


def build_qemu_argv(*, name: str, qmp_socket: str, nics: list[NicHandoff],
                    extra: list[str], binary: str = QEMU_BINARY) -> list[str]:
    """The whole command line: vfpool's part first, then the caller's own arguments."""
    argv = [binary, "-name", qemu_escape(name),
            "-qmp", f"unix:{qemu_escape(qmp_socket)},server=on,wait=off"]
    for nic in nics:
        argv += nic_args(nic)
    return argv + list(extra)


def handoff_record(nic: NicHandoff) -> dict[str, Any]:
    """What `vm args --json` prints for one lease."""
    return {
        "lease": nic.lease_id,
        "mode": nic.mode,
        "vf": nic.vf_pci,
        "mac": nic.mac,
        "netdev": nic.netdev,
        "macvtap": nic.macvtap,
        "device_id": device_id(nic.lease_id) if nic.mode != "netdev" else None,
        "argv": nic_args(nic),
    }


def device_add_arguments(nic: NicHandoff, bus: str | None) -> tuple[dict[str, Any] | None,
                                                                  dict[str, Any]]:
    """QMP ``netdev_add`` (or None) and ``device_add`` arguments for hotplugging a lease."""
    location = {"bus": bus} if bus else {}
    if nic.mode == "vfio":
        return None, {"driver": "vfio-pci", "host": nic.vf_pci, "id": device_id(nic.lease_id),
                      **location}
    if nic.mode == "macvtap":
        netdev: dict[str, Any] = {"type": "tap", "id": netdev_id(nic.lease_id),
                                  "fd": tap_fd_name(nic.lease_id)}
        return netdev, {"driver": "virtio-net-pci", "netdev": netdev_id(nic.lease_id),
                        "mac": nic.mac, "id": device_id(nic.lease_id), **location}
    raise ValueError(f"a lease in {nic.mode} mode has nothing to hand to QEMU")
