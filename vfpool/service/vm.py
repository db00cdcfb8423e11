"""Handing leased VFs to QEMU: argv, launch with guaranteed release, QMP hotplug."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from vfpool.errors import Conflict, InvalidInput, NotFound, VfpoolError
from vfpool.host import macvtap
from vfpool.model.qemu import (
    QEMU_BINARY,
    NicHandoff,
    build_qemu_argv,
    device_add_arguments,
    device_id,
    netdev_id,
    tap_fd_name,
)
from vfpool.qemu.machine import QemuMachine
from vfpool.qemu.qmp import Qmp
from vfpool.service import events
from vfpool.service import leases as lease_service
from vfpool.service.context import Context
from vfpool.service.progress import Progress, quiet
from vfpool.service.results import Hotplugged, LeaseAcquired, LeasePreview, Unplugged
from vfpool.store import LIVE_LEASE_STATES, Lease
from vfpool.store.states import Mode

Note = Callable[[str], None]
DETACH_TIMEOUT = 30.0


def _nic(lease: Lease) -> NicHandoff:
    return NicHandoff(lease_id=lease.id, mode=lease.mode, vf_pci=lease.vf_pci,
                      mac=lease.mac or "", netdev=lease.vf.netdev if lease.vf else None)


def _live_lease(ctx: Context, lease_id: int) -> NicHandoff:
    def read(session: Session) -> NicHandoff:
        lease = session.get(Lease, lease_id) if 0 < lease_id < 2**63 else None
        if lease is None:
            raise NotFound(f"no lease {lease_id}")
        if lease.state != "active":
            raise Conflict(f"lease {lease_id} is {lease.state}, not active")
        return _nic(lease)

    return ctx.store.read(read)


def args(ctx: Context, lease_ids: list[int]) -> list[NicHandoff]:
    """What QEMU gets of active leases (``model.qemu.handoff_record`` renders it); a macvtap
    lease's tap fd is not open, and shows as a placeholder (`vm launch` and `vm attach` make
    the macvtap and open it)."""
    nics = []
    for lease_id in lease_ids:
        nic = _live_lease(ctx, lease_id)
        if nic.mode == "macvtap":
            nic = replace(nic, macvtap=macvtap.macvtap_name(lease_id))
        nics.append(nic)
    return nics


# ---------------------------------------------------------------- the host side of macvtap

@dataclass
class Prepared:
    """Host objects made for one QEMU: the fds it inherits and the macvtaps behind them."""

    nics: list[NicHandoff] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    macvtaps: list[tuple[str, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _remember_macvtap(ctx: Context, lease_id: int, name: str | None,
                      namespace: str | None) -> None:
    """Record the macvtap in the lease, so reconcile can remove it after a crash."""
    def remember(session: Session) -> None:
        lease = session.get_one(Lease, lease_id)
        applied = dict(lease.applied_config or {})
        if name is None:
            applied.pop("macvtap", None)
        else:
            applied["macvtap"] = {"name": name, "netns": namespace}
        lease.applied_config = applied

    ctx.store.write(remember, operation=f"recording the macvtap of lease {lease_id}")


def _open_macvtap(ctx: Context, nic: NicHandoff, prepared: Prepared,
                  vhost: bool) -> NicHandoff:
    if nic.netdev is None:
        raise Conflict(f"lease {nic.lease_id}'s VF {nic.vf_pci} has no netdev for a macvtap")
    namespace = ctx.kernel.netns
    name = macvtap.macvtap_name(nic.lease_id)
    _remember_macvtap(ctx, nic.lease_id, name, namespace)
    tap = macvtap.create(nic.netdev, name, nic.mac, namespace)
    prepared.macvtaps.append((tap.name, namespace))
    tap_fd = macvtap.open_tap(tap)
    prepared.fds.append(tap_fd)
    vhost_fd = None
    if vhost:
        vhost_fd, why_not = macvtap.open_vhost()
        if vhost_fd is not None:
            prepared.fds.append(vhost_fd)
        elif why_not and why_not not in prepared.notes:
            prepared.notes.append(why_not)
    return NicHandoff(nic.lease_id, nic.mode, nic.vf_pci, nic.mac, nic.netdev, tap.name,
                      tap_fd, vhost_fd)


def teardown(ctx: Context, prepared: Prepared) -> None:
    """Close our copies of the fds and remove the macvtaps. Safe to run twice."""
    for fd in prepared.fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    prepared.fds.clear()
    for name, namespace in prepared.macvtaps:
        macvtap.delete(name, namespace)
    prepared.macvtaps.clear()


# ---------------------------------------------------------------- launch

@dataclass
class LaunchResult:
    argv: list[str]
    exitcode: int | None
    leases: Sequence[LeaseAcquired | LeasePreview]
    notes: list[str]


@contextlib.contextmanager
def _leased(ctx: Context, pool: str, owner: str, count: int,
            numa_node: int | None) -> Iterator[list[LeaseAcquired]]:
    records = lease_service.acquire(ctx, pool, owner, count=count, numa_node=numa_node,
                                    owner_pid=os.getpid())
    try:
        yield records
    finally:
        for record in records:
            with contextlib.suppress(VfpoolError):
                lease_service.release(ctx, record.id, token=record.token,
                                      reason="vm launch ended")


def launch(ctx: Context, owner: str, pool: str, *, count: int = 1,
           qemu_args: list[str] | None = None, dry_run: bool = False,
           binary: str = QEMU_BINARY, numa_node: int | None = None,
           note: Note = quiet, started: Callable[[QemuMachine], None] | None = None,
           workdir: Path | None = None, progress: Progress = quiet) -> LaunchResult:
    """Lease ``count`` VFs, run QEMU with them, and always give them back.

    The leases are released and the macvtaps removed when QEMU exits, fails to start, is
    killed, or this process is interrupted (the caller turns SIGTERM into an exception).
    """
    extra = list(qemu_args or [])
    if dry_run:
        # Nothing is made: the socket path shows where a real launch would put it.
        qmp_socket = Path(tempfile.gettempdir()) / "vfpool-vm-XXXXXX" / "qmp.sock"
        preview = lease_service.preview(ctx, pool, owner, count=count, numa_node=numa_node)
        # Nothing is leased, so the NICs are numbered 1..K where lease ids would stand.
        nics = [NicHandoff(lease_id=number, mode=p.mode, vf_pci=p.vf.pci, mac=p.mac,
                           netdev=p.vf.netdev)
                for number, p in enumerate(preview, start=1)]
        argv = build_qemu_argv(name=owner, qmp_socket=str(qmp_socket), nics=nics, extra=extra,
                               binary=binary)
        return LaunchResult(argv, None, preview, ["dry run: nothing was leased or started"])
    ctx.require_root("vm launch")
    folder = Path(workdir or tempfile.mkdtemp(prefix="vfpool-vm-"))
    qmp_socket = folder / "qmp.sock"
    progress(f"leasing {count} VF(s) of pool {pool} for {owner}")
    with _leased(ctx, pool, owner, count, numa_node) as records:
        prepared = Prepared()
        try:
            vhost = True
            for record in records:
                nic = _live_lease(ctx, record.id)
                if nic.mode == "macvtap":
                    progress(f"lease {nic.lease_id}: macvtap on {nic.netdev}, its tap and "
                             "vhost-net")
                    nic = _open_macvtap(ctx, nic, prepared, vhost)
                prepared.nics.append(nic)
            for text in prepared.notes:
                note(f"note: {text}")
            argv = build_qemu_argv(name=owner, qmp_socket=str(qmp_socket),
                                   nics=prepared.nics, extra=extra, binary=binary)
            with QemuMachine(argv, qmp_socket, pass_fds=tuple(prepared.fds),
                             workdir=folder) as machine:
                progress(f"starting {Path(binary).name} with {len(prepared.nics)} NIC(s)")
                machine.launch()
                _record_pid(ctx, [record.id for record in records], machine.pid)
                if started is not None:
                    started(machine)
                code = machine.wait()
            return LaunchResult(argv, code, records, prepared.notes)
        finally:
            teardown(ctx, prepared)
            if workdir is None:
                shutil.rmtree(folder, ignore_errors=True)


def _record_pid(ctx: Context, lease_ids: list[int], pid: int | None) -> None:
    """The leases now belong to the QEMU process: reconcile frees them once it is gone."""
    def record(session: Session) -> None:
        for lease_id in lease_ids:
            lease = session.get_one(Lease, lease_id)
            lease.owner_pid = pid
            events.record(session, "vm.launch", pool=lease.pool.name, vf=lease.vf_pci,
                          lease_id=lease_id, qemu_pid=pid)

    ctx.store.write(record, operation="recording the QEMU process of the leases")


# ---------------------------------------------------------------- hotplug

def attach(ctx: Context, qmp_socket: Path, lease_id: int, *, bus: str | None = None,
           note: Note = quiet) -> Hotplugged:
    """Hot-add a leased VF to a running QEMU (netdev_add + device_add)."""
    nic = _live_lease(ctx, lease_id)
    if nic.mode == "netdev":
        raise InvalidInput(f"lease {lease_id} is in netdev mode; it has nothing to hand to "
                           "QEMU (use `vfpool vm args` for its interface)")
    ctx.require_root("vm attach")
    prepared = Prepared()
    with Qmp(qmp_socket) as qmp:
        try:
            if nic.mode == "macvtap":
                nic = _open_macvtap(ctx, nic, prepared, vhost=False)
                qmp.send_fd(prepared.fds[0], tap_fd_name(lease_id))
            netdev, device = device_add_arguments(nic, bus)
            if netdev is not None:
                qmp.execute("netdev_add", **netdev)
            qmp.execute("device_add", **device)
        except BaseException:
            teardown(ctx, prepared)
            if nic.mode == "macvtap":
                _remember_macvtap(ctx, lease_id, None, None)
            raise
        for fd in prepared.fds:  # QEMU holds its own copy now (getfd)
            os.close(fd)
    def attached(session: Session) -> None:
        lease = session.get_one(Lease, lease_id)
        events.record(session, "vm.attach", pool=lease.pool.name, vf=lease.vf_pci,
                      lease_id=lease_id, qmp=str(qmp_socket), device=device_id(lease_id))

    ctx.store.write(attached, operation=f"recording vm attach of lease {lease_id}")
    return Hotplugged(lease_id, device_id(lease_id), Mode(nic.mode), nic.macvtap)


def detach(ctx: Context, qmp_socket: Path, lease_id: int, *,
           timeout: float = DETACH_TIMEOUT) -> Unplugged:
    """Hot-remove a leased VF: device_del, wait for DEVICE_DELETED, then drop its backend."""
    def read(session: Session) -> tuple[str, Any]:
        lease = session.get(Lease, lease_id) if 0 < lease_id < 2**63 else None
        if lease is None:
            raise NotFound(f"no lease {lease_id}")
        if lease.state not in LIVE_LEASE_STATES:
            raise Conflict(f"lease {lease_id} is {lease.state}, not active")
        return lease.mode, (lease.applied_config or {}).get("macvtap")

    mode, recorded = ctx.store.read(read)
    if mode == "netdev":
        raise InvalidInput(f"lease {lease_id} is in netdev mode; QEMU has nothing of it to "
                           "remove")
    ctx.require_root("vm detach")
    wanted = device_id(lease_id)
    with Qmp(qmp_socket) as qmp:
        qmp.execute("device_del", id=wanted)
        qmp.wait_event("DEVICE_DELETED", lambda data: data.get("device") == wanted, timeout)
        if mode == "macvtap":
            qmp.execute("netdev_del", id=netdev_id(lease_id))
    if recorded:
        macvtap.delete(recorded["name"], recorded.get("netns"))
        _remember_macvtap(ctx, lease_id, None, None)
    def detached(session: Session) -> None:
        held = session.get_one(Lease, lease_id)
        events.record(session, "vm.detach", pool=held.pool.name, vf=held.vf_pci,
                      lease_id=lease_id, qmp=str(qmp_socket), device=wanted)

    ctx.store.write(detached, operation=f"recording vm detach of lease {lease_id}")
    return Unplugged(lease_id, wanted, Mode(mode))
