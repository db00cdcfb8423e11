"""A simulated SR-IOV host: a sysfs tree under a directory, and the kernel behind its writes.

``SimHost`` is the facade: it implements ``vfpool.ports.KernelPort`` and ``NetlinkPort`` and
adds what tests and `vfpool sim` drive (faults, reboots, link changes). Each operation takes the
sim's lock (``state``), meets its injected faults in one place (``faults``), and hands the
locked tree (``tree``) to the simulated kernel (``kernel``) or rtnetlink (``netlink``), which
apply the kernel's and each driver's semantics from SRIOV-FACTS.md and raise ``OSError`` with the
errno the kernel would return.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Literal

from vfpool.errors import Conflict, NotFound, PermissionDenied, VfpoolError
from vfpool.model.pci import PciAddress
from vfpool.model.vfconfig import VfConfig
from vfpool.ports import CommandResult
from vfpool.sim import kernel, link
from vfpool.sim.faults import Fault, FaultKind, Faults
from vfpool.sim.kernel import Kernel
from vfpool.sim.netlink import Netlink
from vfpool.sim.profiles import DEFAULT_NICS, ONBOARD_NIC
from vfpool.sim.spec import NicSpec, layout_host
from vfpool.sim.state import STATE_FILE, SimState
from vfpool.sim.tree import Tree, make_skeleton, oserror

__all__ = ["Fault", "FaultKind", "SimHost"]


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
        self._store = SimState(self.root)
        self._faults = Faults(self._store)

    def _tree(self, state: dict[str, Any]) -> Tree:
        return Tree(self.root, state)

    @property
    def simulated(self) -> bool:
        return True

    @property
    def netns(self) -> str | None:
        """The throwaway network namespace whose veth links stand in for this host's VF
        netdevs (`sim create --netns`), for tests with real macvtaps and QEMU."""
        with self._store.locked(write=False) as state:
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
        make_skeleton(root)
        SimState(root).write_initial(SimState.initial(
            [{"profile": c.spec.profile.name, "pci": str(c.pfs[0].pci),
              "numa_node": c.spec.numa_node, "totalvfs": c.spec.totalvfs} for c in layouts],
            netns))
        host = cls(root)
        with host._store.locked() as state:
            tree = host._tree(state)
            tree.build(layouts)
            Kernel(tree).boot()
        return host

    def state(self) -> dict[str, Any]:
        """A copy of ``sim.json``, for tests and `sim show`."""
        return self._store.copy()

    # ------------------------------------------------------------------ faults
    def inject_fault(self, target: str, *, kind: FaultKind = "errno", errno_code: int | None = None,
                     count: int = 1) -> Fault:
        """Make the next ``count`` writes to ``target`` fail or misbehave (see ``Fault``)."""
        return self._faults.inject(target, kind=kind, errno_code=errno_code, count=count)

    def clear_faults(self) -> None:
        self._faults.clear()

    # ------------------------------------------------------------------ the kernel port
    def write_attr(self, path: Path, value: str) -> None:
        real = Path(os.path.realpath(path))
        try:
            key = str(real.relative_to(self.root))
        except ValueError:
            raise oserror(errno.EACCES, path) from None

        def store(state: dict[str, Any], fault: Fault | None) -> None:
            no_netdev = fault is not None and fault.kind == "no-netdev"
            Kernel(self._tree(state)).store(key, real, value, no_netdev=no_netdev)

        self._faults.run(key, path, store, ignored=None)
        self._arm_link_timer()

    def _arm_link_timer(self) -> None:
        """A sizing may have bounced a PF's carrier: write its return when it is due, as the
        driver's watchdog would, even if nothing else touches the sim meanwhile (readers read
        plain files). The timer lives in this process; any later change settles it too."""
        moment = link.next_moment(self._store.unlocked())
        if moment is None:
            return
        timer = threading.Timer(max(0.0, moment - time.time()) + 0.005, self._settle_links)
        timer.daemon = True
        timer.start()

    def _settle_links(self) -> None:
        try:
            with self._store.locked():  # settles every bounce that is due
                pass
        except (OSError, ValueError, VfpoolError):
            return  # the sim is gone (a test's folder removed) or being rewritten
        # Another PF's bounce may end later (a start sizes its PFs one after the other): its
        # own timer was armed for the earliest moment then, which was this one.
        self._arm_link_timer()

    def modprobe(self, args: list[str]) -> CommandResult:
        request = kernel.modprobe_request(args)
        if isinstance(request, CommandResult):
            return request
        # A hang here is a module init that never returns.
        return self._faults.run(
            f"modprobe:{request.module}", request.module,
            lambda state, _fault: Kernel(self._tree(state)).modprobe(request),
            ignored=request.done(), refused=request.refused)

    def module_options(self, module: str) -> dict[str, str]:
        """``options MODULE k=v`` from the sim's etc/modprobe.d/*.conf, as modprobe reads it."""
        return kernel.module_options(self.root, module)

    # ------------------------------------------------------------------ whole-host events
    def boot_id(self) -> str:
        return (self.root / "proc/sys/kernel/random/boot_id").read_text().strip()

    def reboot(self) -> None:
        """Power-cycle: VFs gone, overrides and VF config cleared, modules loaded afresh from
        etc/modprobe.d (so module-param VFs come back), and a new boot id."""
        with self._store.locked() as state:
            Kernel(self._tree(state)).reboot()

    def set_operstate(self, netdev: str, operstate: Literal["up", "down"]) -> None:
        """Take a PF port's link down (as a pulled cable would), or bring it up (cable in,
        port up)."""
        with self._store.locked() as state:
            Netlink(self._tree(state)).set_operstate(netdev, operstate)

    def set_link_bounce(self, netdev: str, seconds: float | None) -> None:
        """How long a PF port's carrier stays down when a sizing bounces it (profiles with
        ``sizing_bounce``); None: it does not come back by itself."""
        with self._store.locked() as state:
            Netlink(self._tree(state)).set_link_bounce(netdev, seconds)

    # ------------------------------------------------------------------ the netlink port
    @property
    def netlink(self) -> SimHost:
        return self

    def vf_configs(self, pf_netdev: str) -> dict[int, VfConfig]:
        self._faults.wait_while_hung(f"netlink:{pf_netdev}")
        with self._store.locked(write=False) as state:
            return Netlink(self._tree(state)).vf_configs(pf_netdev)

    def vf_config(self, pf_netdev: str, index: int) -> VfConfig | None:
        self._faults.wait_while_hung(f"netlink:{pf_netdev}")
        with self._store.locked(write=False) as state:
            return Netlink(self._tree(state)).vf_config(pf_netdev, index)

    def set_vf(self, pf_netdev: str, index: int, field: str, config: VfConfig) -> None:
        """rtnetlink do_setvfinfo() and the PF driver's ndo_set_vf_* callbacks."""
        key = f"netlink:{pf_netdev}"
        self._faults.run(
            key, key,
            lambda state, _fault: Netlink(self._tree(state)).set_vf(pf_netdev, index, field,
                                                                    config),
            ignored=None)

    def set_link(self, netdev: str, *, mtu: int | None = None, up: bool | None = None) -> None:
        key = f"netlink:{netdev}"
        self._faults.run(
            key, key, lambda state, _fault: Netlink(self._tree(state)).set_link(netdev, mtu=mtu,
                                                                                 up=up),
            ignored=None)
