"""The ports: what vfpool asks of a host, and nothing of how a host does it.

Reads are plain file reads under the host root, identical on a real host and on a simulated one.
Writes are not: on a real host, writing ``sriov_numvfs`` makes the kernel act, while in a sim tree
it would only change a file. So writes, module loading and VF configuration go through these
ports. ``vfpool.host`` implements them against the machine (``RealKernel``, ``PyRoute2Netlink``)
and ``vfpool.sim`` implements them with the kernel's semantics (``SimHost``); neither imports the
other, and the services see only the ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vfpool.model.vfconfig import VfConfig

# The netlink field groups vfpool sets (``NetlinkPort.set_vf``), in the order it sets them.
VF_FIELDS = ("mac", "vlan", "spoofchk", "trust", "link_state", "rate")


@dataclass(frozen=True)
class CommandResult:
    """What a command such as ``modprobe`` did: its argv, exit code and captured output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class NetlinkPort(Protocol):
    """VF configuration through the PF (rtnetlink), and netdev MTU and link state.

    Kernel errors arrive as ``OSError`` with the errno: EOPNOTSUPP for a field the PF driver
    has no callback for, EINVAL for a VF index at or above numvfs or a value it refuses, ENODEV
    for a netdev that is not there.
    """

    def vf_configs(self, pf_netdev: str) -> dict[int, VfConfig]:
        """Every VF's config as the PF reports it (IFLA_VFINFO_LIST)."""

    def vf_config(self, pf_netdev: str, index: int) -> VfConfig | None:
        """VF ``index``'s config as the PF reports it; None when the PF reports none. The
        kernel sends the whole table either way: this one decodes one entry of it."""

    def set_vf(self, pf_netdev: str, index: int, field: str, config: VfConfig) -> None:
        """Set one field group (see ``VF_FIELDS``) of VF ``index`` from ``config``."""

    def set_link(self, netdev: str, *, mtu: int | None = None, up: bool | None = None) -> None:
        """Set a netdev's MTU and/or administrative state."""


class KernelPort(Protocol):
    """Every write to the machine goes through one of these; reads go to files under ``root``."""

    root: Path

    def write_attr(self, path: Path, value: str) -> None:
        """Write ``value`` to a sysfs attribute; kernel errors arrive as ``OSError``."""

    def modprobe(self, args: list[str]) -> CommandResult:
        """Run ``modprobe ARGS`` (``-r MODULE`` to unload); never raises for a failed exit."""

    @property
    def simulated(self) -> bool:
        """True when this is not the machine vfpool runs on (no root needed to change it)."""

    @property
    def netlink(self) -> NetlinkPort:
        """VF configuration through the PF, and netdev MTU and link state."""

    @property
    def netns(self) -> str | None:
        """The network namespace that holds the VF netdevs (None: vfpool's own)."""
