"""Injected faults: the next writes to a target misbehave as a broken driver would.

Every fault-checked operation of the sim (a sysfs write, ``modprobe``, ``set_vf``, ``set_link``)
goes through ``Faults.run``, so each fault kind means the same on every target.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from vfpool.errors import InvalidInput
from vfpool.sim.state import SimState
from vfpool.sim.tree import module_name, oserror

FaultKind = Literal["errno", "ignore", "no-netdev", "hang"]
HANG_LIMIT = 300.0  # a hung write gives up (ETIMEDOUT) after this many seconds
POLL = 0.02  # how often a hung operation looks whether its fault is gone
T = TypeVar("T")


@dataclass
class Fault:
    """The next ``remaining`` writes to ``target`` misbehave.

    ``errno``: the write fails with that errno. ``ignore``: the write reports success and does
    nothing (bnxt_en with its PF down). ``no-netdev`` (on ``sriov_numvfs``): the VFs appear but
    their netdevs never do; elsewhere the write goes through. ``hang``: the operation blocks
    until the fault is cleared (a stuck driver; lets a test kill a process mid-operation). On
    ``netlink:`` targets reads block too, as they do behind a driver that holds the RTNL lock.
    ``target`` is a path relative to the sim root, ``modprobe:MODULE``, or ``netlink:NETDEV``
    for VF configuration through that PF and for that netdev's MTU and link state.
    """

    target: str
    kind: FaultKind
    errno: int | None
    remaining: int


def take(state: dict[str, Any], key: str) -> Fault | None:
    """The first fault on ``key`` that is not a hang, counted down (and dropped at zero)."""
    for index, raw in enumerate(state["faults"]):
        if raw["target"] == key and raw["kind"] != "hang":
            fault = Fault(**raw)
            fault.remaining -= 1
            if fault.remaining <= 0:
                del state["faults"][index]
            else:
                state["faults"][index] = asdict(fault)
            return fault
    return None


class Faults:
    """The faults of the sim whose state is ``store``."""

    def __init__(self, store: SimState) -> None:
        self.store = store

    def key(self, target: str) -> str:
        """The canonical target: sysfs paths resolved to their real place in the tree."""
        if target.startswith("modprobe:"):
            return "modprobe:" + module_name(target.split(":", 1)[1])
        if target.startswith("netlink:"):
            return target
        root = self.store.root
        path = Path(target)
        full = path if path.is_absolute() else root / path
        real = Path(os.path.realpath(full))
        try:
            return str(real.relative_to(root))
        except ValueError:
            raise InvalidInput(f"fault target {target} is outside the simulated host") from None

    def inject(self, target: str, *, kind: FaultKind = "errno", errno_code: int | None = None,
               count: int = 1) -> Fault:
        """Make the next ``count`` writes to ``target`` fail or misbehave (see ``Fault``)."""
        if kind == "errno" and not errno_code:
            raise InvalidInput("an errno fault needs an errno, for example EIO")
        if count < 1:
            raise InvalidInput("a fault must apply to at least one write")
        fault = Fault(self.key(target), kind, errno_code if kind == "errno" else None, count)
        with self.store.locked() as state:
            state["faults"].append(asdict(fault))
        return fault

    def clear(self) -> None:
        with self.store.locked() as state:
            state["faults"] = []

    def wait_while_hung(self, key: str) -> None:
        """Block, without holding the sim lock, while a ``hang`` fault names ``key``; give up
        with ETIMEDOUT after ``HANG_LIMIT`` seconds."""
        deadline = time.monotonic() + HANG_LIMIT
        while True:
            faults = self.store.unlocked()["faults"]
            if not any(f["target"] == key and f["kind"] == "hang" for f in faults):
                return
            if time.monotonic() >= deadline:
                raise oserror(errno.ETIMEDOUT, key)
            time.sleep(POLL)

    def run(self, key: str, path: Path | str,
            operation: Callable[[dict[str, Any], Fault | None], T], *, ignored: T,
            refused: Callable[[OSError], T] | None = None) -> T:
        """Run ``operation`` on the locked state, as the faults on ``key`` allow.

        ``hang``: wait (unlocked) until it is cleared. Then, under the lock, the next other
        fault on ``key`` is taken: ``errno`` fails with that errno on ``path``; ``ignore``
        returns ``ignored`` without running anything; ``no-netdev`` is handed to ``operation``.
        A failure (an errno fault, or a hang that timed out) is raised as ``OSError``, or given
        to ``refused`` where the operation reports failures instead (modprobe's exit status).
        """
        try:
            self.wait_while_hung(key)
        except OSError as exc:
            if refused is None:
                raise
            return refused(exc)
        with self.store.locked() as state:
            fault = take(state, key)
            if fault is not None and fault.kind == "errno":
                error = oserror(fault.errno or errno.EIO, path)
                if refused is None:
                    raise error
                return refused(error)
            if fault is not None and fault.kind == "ignore":
                return ignored
            return operation(state, fault)
