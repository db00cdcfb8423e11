"""Compare the store with the host and repair what a crash, a reboot or a change behind
vfpool's back left behind.

It runs under the shared locks of every PF it looks at, so no pool start, resize or module
reload changes a PF between the snapshot and the repairs; lease acquires and releases go on
beside it. The host is read once, before any store transaction; repairs to one VF happen under
that VF's lock, taken without waiting: a VF another process is changing is left for the next
run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from vfpool.errors import HostError, VfpoolError, describe_oserror
from vfpool.host import binding, macvtap
from vfpool.host.netlink import fields_for
from vfpool.model.pci import PciAddress
from vfpool.model.plan import Repair, VfRow, plan_repairs
from vfpool.model.pool import used_indices
from vfpool.model.snapshot import PfSnapshot
from vfpool.model.vfconfig import VfConfig
from vfpool.service import events
from vfpool.service.context import Context
from vfpool.service.leases import (
    _apply_config,
    drift,
    finish_lease,
    host_drift,
    member_range,
    restore_vf,
)
from vfpool.service.progress import Progress, quiet
from vfpool.service.results import Finding, ReconcileResult
from vfpool.store import Lease, Vf
from vfpool.store.queries import Queries
from vfpool.store.states import LIVE_LEASE_STATES, LeaseState, VfState


def pid_alive(pid: int) -> bool:
    """Whether a process still runs. A zombie does not: it has exited and only waits for a
    parent (or an init that does not reap, in some containers) to collect it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists; it is someone else's
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass(frozen=True)
class _Live:
    """A live lease as reconcile needs it."""

    id: int
    state: LeaseState
    owner: str
    pf_pci: str
    vf_pci: str
    vf_index: int
    boot_id: str
    acquirer: str | None
    owner_pid: int | None
    saved: dict[str, Any] | None
    applied: dict[str, Any] | None


def _live(session: Session) -> list[_Live]:
    return [_Live(lease.id, lease.state, lease.owner, lease.pf_pci, lease.vf_pci,
                  lease.vf_index, lease.boot_id, lease.acquirer, lease.owner_pid,
                  lease.saved_config, lease.applied_config)
            for lease in Queries(session).live_leases()]


def _stale_reason(ctx: Context, lease: _Live, boot_id: str) -> str | None:
    if lease.boot_id != boot_id:
        return "it was made before the last reboot"
    if lease.state == LeaseState.RESERVED:
        if not ctx.locks.acquirer_alive(lease.acquirer):
            return "reserved, but the process that acquired it is gone"
        return None
    if lease.acquirer is not None and not ctx.locks.acquirer_alive(lease.acquirer):
        return "its release was interrupted"
    if lease.owner_pid is not None and not pid_alive(lease.owner_pid):
        return f"its owner process {lease.owner_pid} is gone"
    return None


@dataclass(frozen=True)
class _Member:
    pool: str
    pf_pci: str
    indices: range


def _members(session: Session) -> list[_Member]:
    found = []
    for pool in Queries(session).pools(include_inactive=False):
        for member in pool.members:
            found.append(_Member(pool.name, member.pf_pci,
                                 used_indices(member_range(member), pool.vfs_per_pf)))
    return found


def _rows(session: Session, member: _Member) -> dict[int, VfRow]:
    queries = Queries(session)
    found = queries.vfs_in(member.pf_pci, member.indices.start, member.indices.stop - 1)
    # One query for the range's live leases, not one per VF (256 on a 256-VF PF).
    held = queries.live_lease_ids_by_vf([row.id for row in found.values()])
    return {index: VfRow(index, row.pci, row.state, row.reason, held.get(row.id))
            for index, row in found.items()}


def _snapshot(ctx: Context, pci: str) -> PfSnapshot | None:
    try:
        return ctx.sysfs.pf(PciAddress.parse(pci))
    except VfpoolError:
        return None


def _configs(ctx: Context, pf: PfSnapshot | None) -> dict[int, VfConfig] | None:
    """One dump of the PF's VF table; None when it cannot be read."""
    if pf is None or pf.netdev is None:
        return None
    try:
        return ctx.kernel.netlink.vf_configs(pf.netdev)
    except OSError:
        return None


def reconcile(ctx: Context, *, dry_run: bool = False,
              progress: Progress = quiet) -> ReconcileResult:
    """Find what the store and the host disagree on, and repair it. Idempotent: a second
    run finds nothing.

    - VFs the store has but the host lost: unusable, their leases lost; VFs that came back:
      free; VFs the host has but the store never recorded: added;
    - ``reserved`` leases whose acquirer died (every acquirer holds a lock of its own, named in
      its leases, so a lock that can be taken means it is gone), releases that were
      interrupted, leases from an earlier boot and leases whose owner process (QEMU) is gone:
      the VF's saved config and driver restored, a macvtap vfpool made for it removed, the VF
      freed;
    - active leases whose VF no longer carries their config (MAC, VLAN, QoS, trust, spoof
      check, link state, rates) or driver: the lease's config re-applied; when that fails,
      the lease is lost.
    """
    if not dry_run:
        ctx.require_root("reconcile")
    boot_id = ctx.sysfs.boot_id()

    def pcis(session: Session) -> list[str]:
        return sorted({m.pf_pci for m in _members(session)} |
                      {lease.pf_pci for lease in _live(session)})

    wanted = ctx.store.read(pcis)
    if dry_run:
        return _run(ctx, boot_id, wanted, dry_run=True, progress=progress)
    progress(f"waiting for the locks of {len(wanted)} PF(s)")
    with ctx.locks.acquirer() as me, ctx.locks.pfs(wanted, exclusive=False):
        return _run(ctx, boot_id, wanted, dry_run=False, me=me, progress=progress)


def _run(ctx: Context, boot_id: str, pcis: list[str], *, dry_run: bool,
         me: str | None = None, progress: Progress = quiet) -> ReconcileResult:
    snapshots = {}
    for pci in pcis:
        progress(f"PF {pci}: reading its VFs")
        snapshots[pci] = _snapshot(ctx, pci)
    progress("comparing the store's VFs with the host's")
    findings: list[Finding] = []

    def inventory(session: Session) -> list[Finding]:
        found = []
        for member in _members(session):
            for repair in plan_repairs(member.pool, member.pf_pci, member.indices,
                                       snapshots.get(member.pf_pci), _rows(session, member)):
                found.append(_finding(repair))
                if not dry_run:
                    _repair(session, repair)
        return found

    if dry_run:
        findings += ctx.store.read(inventory)
    else:
        findings += ctx.store.write(inventory, operation="reconcile")
    live = ctx.store.read(_live)
    progress(f"checking {len(live)} live lease(s)")
    configs = {pci: _configs(ctx, pf) for pci, pf in snapshots.items()
               if any(lease.pf_pci == pci and lease.state == LeaseState.ACTIVE
                      for lease in live)}
    for lease in live:
        reason = _stale_reason(ctx, lease, boot_id)
        if reason is not None:
            if not dry_run:
                progress(f"lease {lease.id} ({lease.vf_pci}): {reason}; restoring its VF")
            findings += _free_stale(ctx, lease, reason, dry_run=dry_run, me=me)
            continue
        if lease.state == LeaseState.RESERVED:
            findings.append(Finding(lease=lease.id, vf=lease.vf_pci,
                                    problem="reserved; its acquire is still running",
                                    action="none"))
            continue
        if lease.acquirer is not None:
            continue  # a release is under way
        pf = snapshots.get(lease.pf_pci)
        vf = next((vf for vf in pf.vfs if vf.index == lease.vf_index), None) if pf else None
        table = configs.get(lease.pf_pci)
        if vf is None or table is None or lease.vf_index not in table:
            continue  # a missing VF was handled above; an unreadable table is not drift
        diff = drift(lease.applied, table[lease.vf_index], vf.driver)
        if diff:
            if not dry_run:
                progress(f"lease {lease.id} ({lease.vf_pci}): re-applying its config")
            findings.append(_reapply(ctx, lease, diff, dry_run=dry_run))
    return ReconcileResult(dry_run, tuple(findings))


def _finding(repair: Repair) -> Finding:
    if repair.kind == "short":
        return Finding(pool=repair.pool, pf=repair.pf,
                       problem=f"PF has {repair.numvfs} VFs; the pool needs {repair.needed}",
                       action=f"none here: run `vfpool pool start {repair.pool}`")
    if repair.kind == "missing":
        return Finding(pool=repair.pool, vf=repair.vf,
                       problem="VF is in the store but not on the host",
                       action="mark it unusable" + (f"; lease {repair.lease} lost"
                                                    if repair.lease is not None else ""))
    if repair.kind == "back":
        return Finding(pool=repair.pool, vf=repair.vf, problem="VF is back on the host",
                       action="mark it free")
    return Finding(pool=repair.pool, vf=repair.vf,
                   problem="VF is on the host but not in the store", action="add it, free")


def _repair(session: Session, repair: Repair) -> None:
    if repair.kind == "short":
        return
    if repair.kind == "added":
        assert repair.vf is not None and repair.index is not None
        session.add(Vf(pf_pci=repair.pf, vf_index=repair.index, pci=repair.vf,
                       netdev=repair.netdev, state=VfState.FREE))
        events.record(session, "reconcile.vf.added", pool=repair.pool, pf=repair.pf,
                      vf=repair.vf)
        return
    assert repair.index is not None
    row = Queries(session).vf_at(repair.pf, repair.index)
    if repair.kind == "back":
        row.state, row.reason, row.netdev = VfState.FREE, None, repair.netdev
        events.record(session, "reconcile.vf.back", pool=repair.pool, pf=row.pf_pci,
                      vf=row.pci)
        return
    held = Queries(session).live_lease_of_vf(row.id)
    if held is not None:
        finish_lease(session, held, VfState.UNUSABLE, "missing on host", "lease.lost",
                     "its VF is missing on the host", final_state=LeaseState.LOST)
    row.state, row.reason = VfState.UNUSABLE, "missing on host"
    events.record(session, "reconcile.vf.missing", pool=repair.pool, pf=row.pf_pci, vf=row.pci)


def _unchanged(session: Session, lease: _Live) -> Lease | None:
    """The lease, if it is still as reconcile saw it."""
    row = session.get(Lease, lease.id)
    if row is None or row.state != lease.state or row.acquirer != lease.acquirer:
        return None
    return row


def _busy(lease: _Live, problem: str) -> Finding:
    return Finding(lease=lease.id, vf=lease.vf_pci, owner=lease.owner, problem=problem,
                   action="none: another vfpool process is changing the VF; left for the "
                          "next run")


def _free_stale(ctx: Context, lease: _Live, reason: str, *, dry_run: bool,
                me: str | None) -> list[Finding]:
    recorded = (lease.applied or {}).get("macvtap")
    action = ("restore the VF's saved config and driver, free it" if lease.saved
              else "free the VF (nothing was changed on it)")
    if recorded:
        action += f", remove macvtap {recorded['name']}"
    finding = Finding(lease=lease.id, vf=lease.vf_pci, owner=lease.owner, problem=reason,
                      action=action)
    if dry_run:
        return [finding]
    with ctx.locks.vf(lease.vf_pci, wait=False) as held:
        if not held:
            return [_busy(lease, reason)]

        def claim(session: Session) -> bool:
            row = _unchanged(session, lease)
            if row is None:
                return False
            row.acquirer = me  # if this process dies mid-restore, the next run finishes it
            return True

        if not ctx.store.write(claim, operation=f"reconcile of lease {lease.id}"):
            return []
        if recorded:
            macvtap.delete(recorded["name"], recorded.get("netns"))
        outcome: VfState = VfState.FREE
        why: str | None = None
        if lease.saved is not None:
            outcome, why = restore_vf(ctx, lease.pf_pci, lease.vf_index, lease.saved,
                                      lease.applied)
        finished = LeaseState.STALE if lease.state == LeaseState.ACTIVE and \
            "interrupted" not in reason else LeaseState.RELEASED

        def finish(session: Session) -> None:
            row = session.get(Lease, lease.id)
            if row is not None and row.state in LIVE_LEASE_STATES and row.acquirer == me:
                finish_lease(session, row, outcome, why, "reconcile.release", reason,
                             final_state=finished)

        ctx.store.write(finish, operation=f"reconcile of lease {lease.id}")
    return [replace(finding, result=outcome if why is None else f"{outcome}: {why}")]


def _describe(diff: dict[str, tuple[object, object]]) -> str:
    return "; ".join(f"{key}: desired {want!r}, current {have!r}"
                     for key, (want, have) in diff.items())


def _reapply(ctx: Context, lease: _Live, diff: dict[str, tuple[object, object]], *,
             dry_run: bool) -> Finding:
    """Put a drifted lease's config back on its VF; when that fails, the lease is lost."""
    finding = Finding(
        lease=lease.id, vf=lease.vf_pci, owner=lease.owner,
        problem=f"its VF no longer has the lease's config ({_describe(diff)})",
        action="re-apply the lease's config",
        diff={key: {"desired": want, "current": have} for key, (want, have) in diff.items()})
    if dry_run:
        return finding
    with ctx.locks.vf(lease.vf_pci, wait=False) as held:
        if not held:
            return _busy(lease, finding.problem)
        if ctx.store.read(lambda session: _unchanged(session, lease) is None):
            return replace(finding, result="skipped: the lease changed meanwhile")
        current = host_drift(ctx, lease.pf_pci, lease.vf_index, lease.applied)
        if not current:
            return replace(finding, result="already back in place")
        try:
            _put_back(ctx, lease, current)
            left = host_drift(ctx, lease.pf_pci, lease.vf_index, lease.applied)
            if left:
                raise HostError(f"the VF still differs after re-applying ({_describe(left)})")
        except VfpoolError as exc:
            outcome, why = (VfState.UNUSABLE, "missing on host") if "present" in current else \
                restore_vf(ctx, lease.pf_pci, lease.vf_index, lease.saved or {}, lease.applied)
            problem = str(exc)

            def lose(session: Session) -> None:
                row = _unchanged(session, lease)
                if row is not None:
                    finish_lease(session, row, outcome, why, "lease.lost",
                                 f"its config could not be re-applied: {problem}",
                                 final_state=LeaseState.LOST)

            ctx.store.write(lose, operation=f"reconcile of lease {lease.id}")
            return replace(finding, result=f"lost: {problem}")

        def note(session: Session) -> None:
            row = session.get(Lease, lease.id)
            events.record(session, "reconcile.lease.reapplied",
                          pool=row.pool.name if row else None, pf=lease.pf_pci, vf=lease.vf_pci,
                          lease_id=lease.id, owner=lease.owner,
                          diff={key: [str(want), str(have)] for key, (want, have)
                                in current.items()})

        ctx.store.write(note, operation=f"reconcile of lease {lease.id}")
    return replace(finding, result="re-applied")


def _put_back(ctx: Context, lease: _Live, diff: dict[str, tuple[object, object]]) -> None:
    if "present" in diff:
        raise HostError(f"VF {lease.vf_pci} is not on the host")
    applied = lease.applied or {}
    wanted = VfConfig.from_dict(applied)
    pf = ctx.sysfs.pf(PciAddress.parse(lease.pf_pci), with_vfs=False)
    groups = [group for group in fields_for(wanted)
              if any(key == group or (group == "vlan" and key == "qos") or
                     (group == "rate" and key in ("min_tx_rate", "max_tx_rate"))
                     for key in diff)]
    _apply_config(ctx, pf, lease.vf_index, wanted, groups)
    if "driver" in diff:
        try:
            binding.bind(ctx.sysfs, PciAddress.parse(lease.vf_pci), applied.get("driver"))
        except OSError as exc:
            raise HostError(f"binding VF {lease.vf_pci} failed with {describe_oserror(exc)}",
                            errno=exc.errno) from exc
