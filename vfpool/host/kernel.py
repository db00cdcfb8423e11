"""The kernel port: every write to the machine goes through one of these.

Reads are plain file reads under the host root, identical on a real host and on a simulated one.
Writes are not: on a real host, writing ``sriov_numvfs`` makes the kernel act, while in a sim tree
it would only change a file. So writes and module loading go through a ``KernelPort``;
``RealKernel`` does the real thing, and ``vfpool.sim.SimHost`` implements the same port with the
kernel's semantics.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vfpool.host.netlink import NetlinkPort


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class KernelPort(Protocol):
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


class RealKernel:
    """The machine itself, optionally under another root (a chroot-like test tree)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._netlink: NetlinkPort | None = None

    @property
    def simulated(self) -> bool:
        return False

    @property
    def netns(self) -> str | None:
        return None

    @property
    def netlink(self) -> NetlinkPort:
        if self._netlink is None:
            from vfpool.host.netlink import PyRoute2Netlink

            self._netlink = PyRoute2Netlink()
        return self._netlink

    def write_attr(self, path: Path, value: str) -> None:
        # One write() call: sysfs store functions see the whole value at once.
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def modprobe(self, args: list[str]) -> CommandResult:
        argv = ("modprobe", *args)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                  check=False)
        except FileNotFoundError:
            return CommandResult(argv, 127, "", "modprobe: command not found")
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)
