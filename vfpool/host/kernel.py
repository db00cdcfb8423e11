"""The machine's own kernel behind ``vfpool.ports.KernelPort``: real sysfs writes and modprobe.

``vfpool.sim.SimHost`` implements the same port with the kernel's semantics.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vfpool.ports import CommandResult, NetlinkPort


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
