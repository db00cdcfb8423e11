"""Compare the store with the host and repair what a crash or a reboot left behind."""

from __future__ import annotations

import os
from typing import Any

from vfpool.host import macvtap
from vfpool.host.lock import acquirer_alive, vf_lock
from vfpool.service.context import Context
from vfpool.service.leases import finish_lease, live_leases, restore_vf
from vfpool.store import Lease


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it is someone else's
    return True


def _stale_reason(lease: Lease, boot_id: str, root: Any) -> str | None:
    if lease.boot_id != boot_id:
        return "it was made before the last reboot"
    if lease.state == "reserved":
        if not acquirer_alive(root, lease.acquirer):
            return "reserved, but the process that acquired it is gone"
        return None
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
                finish_lease(session, lease, outcome, why, "reconcile.release", reason,
                             final_state="released" if state == "reserved" else "stale")
                finding["result"] = outcome if why is None else f"{outcome}: {why}"
            findings.append(finding)
    return {"dry_run": dry_run, "findings": findings}
