"""Compare the store with the host and repair what a crash or a reboot left behind."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vfpool.errors import NotFound
from vfpool.host import macvtap
from vfpool.host.lock import acquirer_alive, vf_lock
from vfpool.model.pci import PciAddress
from vfpool.model.pool import used_indices
from vfpool.service import events
from vfpool.service.context import Context
from vfpool.service.leases import finish_lease, live_leases, member_range, restore_vf
from vfpool.store import LIVE_LEASE_STATES, Lease, Pool, Vf

# Reasons under which a VF is unusable only because it was not there; it comes back when seen.
ABSENT_REASONS = ("missing on host", "removed")


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


def _stale_reason(lease: Lease, boot_id: str, root: Any) -> str | None:
    if lease.boot_id != boot_id:
        return "it was made before the last reboot"
    if lease.state == "reserved":
        if not acquirer_alive(root, lease.acquirer):
            return "reserved, but the process that acquired it is gone"
        return None
    if lease.acquirer is not None and not acquirer_alive(root, lease.acquirer):
        return "its release was interrupted"
    if lease.owner_pid is not None and not pid_alive(lease.owner_pid):
        return f"its owner process {lease.owner_pid} is gone"
    return None


def reconcile(ctx: Context, *, dry_run: bool = False) -> dict[str, Any]:
    """Find leases nobody holds any more and give their VFs back.

    - ``reserved`` leases whose acquirer died: every acquirer holds a lock of its own from
      before its reservation until it is done, and each lease names it; flock locks die with
      their process, so a lock that can be taken means the acquirer is gone;
    - leases from an earlier boot, and leases whose owner process (QEMU) is gone: stale.

    Each is repaired under its VF's lock: the saved config and driver are restored, a macvtap
    vfpool made for it is removed, and the VF is freed. Idempotent: a second run finds nothing.
    """
    if not dry_run:
        ctx.require_root("reconcile")
    root = ctx.sysfs.root
    boot_id = ctx.sysfs.boot_id()
    findings: list[dict[str, Any]] = []
    with ctx.store.immediate() as session:
        findings += _inventory(ctx, session, dry_run)
        if dry_run:
            session.rollback()
    with ctx.store.session() as session:
        suspects = [(lease.id, lease.vf_pci, lease.state, _stale_reason(lease, boot_id, root),
                     lease.acquirer) for lease in live_leases(session)]
    for lease_id, vf_pci, state, reason, acquirer in suspects:
        if reason is None:
            if state == "reserved":
                findings.append({"lease": lease_id, "vf": vf_pci,
                                 "problem": "reserved; its acquire is still running",
                                 "action": "none"})
            continue
        # The VF lock orders this after any release or acquire still touching the VF.
        with vf_lock(root, vf_pci), ctx.store.immediate() as session:
            lease = session.get(Lease, lease_id)
            if lease is None or lease.state != state or lease.acquirer != acquirer:
                continue
            recorded = (lease.applied_config or {}).get("macvtap")
            action = ("restore the VF's saved config and driver, free it"
                      if lease.saved_config else "free the VF (nothing was changed on it)")
            if recorded:
                action += f", remove macvtap {recorded['name']}"
            finding: dict[str, Any] = {"lease": lease_id, "vf": vf_pci, "owner": lease.owner,
                                       "problem": reason, "action": action}
            if not dry_run:
                if recorded:
                    macvtap.delete(recorded["name"], recorded.get("netns"))
                outcome, why = ("free", None)
                if lease.saved_config is not None:
                    outcome, why = restore_vf(ctx, lease.pf_pci, lease.vf_index,
                                              lease.saved_config, lease.applied_config)
                finished = "stale" if state == "active" and "interrupted" not in reason \
                    else "released"
                finish_lease(session, lease, outcome, why, "reconcile.release", reason,
                             final_state=finished)
                finding["result"] = outcome if why is None else f"{outcome}: {why}"
            findings.append(finding)
    return {"dry_run": dry_run, "findings": findings}


def _inventory(ctx: Context, session: Session, dry_run: bool) -> list[dict[str, Any]]:
    """The store's VFs against the host's, for every active pool."""
    findings: list[dict[str, Any]] = []
    for pool in session.scalars(select(Pool).where(Pool.state == "active").order_by(Pool.name)):
        for member in pool.members:
            try:
                pf = ctx.sysfs.pf(PciAddress.parse(member.pf_pci))
            except NotFound:
                pf = None
            indices = used_indices(member_range(member), pool.vfs_per_pf)
            on_host = {vf.index: vf for vf in (pf.vfs if pf else ()) if vf.index in indices}
            rows = {row.vf_index: row for row in session.scalars(select(Vf).where(
                Vf.pf_pci == member.pf_pci, Vf.vf_index >= indices.start,
                Vf.vf_index < indices.stop))}
            if pf is not None and pf.numvfs < indices.stop:
                findings.append({"pool": pool.name, "pf": member.pf_pci,
                                 "problem": f"PF has {pf.numvfs} VFs; the pool needs "
                                            f"{indices.stop}",
                                 "action": f"none here: run `vfpool pool start {pool.name}`"})
            for index, row in sorted(rows.items()):
                vf = on_host.get(index)
                if vf is None and not (row.state == "unusable"
                                       and row.reason in ABSENT_REASONS):
                    findings.append(_missing(session, pool.name, row, dry_run))
                elif vf is not None and row.state == "unusable" and \
                        row.reason in ABSENT_REASONS and not _held(session, row):
                    findings.append({"pool": pool.name, "vf": row.pci,
                                     "problem": "VF is back on the host",
                                     "action": "mark it free"})
                    if not dry_run:
                        row.state, row.reason, row.netdev = "free", None, vf.netdev
                        events.record(session, "reconcile.vf.back", pool=pool.name,
                                      pf=row.pf_pci, vf=row.pci)
            for index, vf in sorted(on_host.items()):
                if index not in rows:
                    findings.append({"pool": pool.name, "vf": str(vf.pci),
                                     "problem": "VF is on the host but not in the store",
                                     "action": "add it, free"})
                    if not dry_run:
                        session.add(Vf(pf_pci=member.pf_pci, vf_index=index, pci=str(vf.pci),
                                       netdev=vf.netdev, state="free"))
                        events.record(session, "reconcile.vf.added", pool=pool.name,
                                      pf=member.pf_pci, vf=str(vf.pci))
    return findings


def _held(session: Session, row: Vf) -> bool:
    return session.scalars(select(Lease.id).where(
        Lease.vf_id == row.id, Lease.state.in_(LIVE_LEASE_STATES))).first() is not None


def _missing(session: Session, pool: str, row: Vf, dry_run: bool) -> dict[str, Any]:
    leases = list(session.scalars(select(Lease).where(
        Lease.vf_id == row.id, Lease.state.in_(LIVE_LEASE_STATES))))
    finding: dict[str, Any] = {
        "pool": pool, "vf": row.pci, "problem": "VF is in the store but not on the host",
        "action": "mark it unusable" + (f"; lease {leases[0].id} lost" if leases else "")}
    if not dry_run:
        for lease in leases:
            finish_lease(session, lease, "unusable", "missing on host", "lease.lost",
                         "its VF is missing on the host", final_state="lost")
        row.state, row.reason = "unusable", "missing on host"
        events.record(session, "reconcile.vf.missing", pool=pool, pf=row.pf_pci, vf=row.pci)
    return finding
