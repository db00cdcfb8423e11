"""Compare the store with the host and repair what a crash left behind."""

from __future__ import annotations

from typing import Any

from vfpool.host.lock import acquirer_alive, vf_lock
from vfpool.service.context import Context
from vfpool.service.leases import finish_lease, reserved_leases, restore_vf
from vfpool.store import Lease


def reconcile(ctx: Context, *, dry_run: bool = False) -> dict[str, Any]:
    """Undo ``reserved`` leases whose acquiring process is gone.

    Every acquirer holds a lock of its own from before its reservation until it is done, and
    each lease names it; flock locks die with their process, so a lock that can be taken means
    the acquirer is gone. Idempotent: a second run finds nothing.
    """
    if not dry_run:
        ctx.require_root("reconcile")
    root = ctx.sysfs.root
    findings: list[dict[str, Any]] = []
    with ctx.store.session() as session:
        candidates = [(lease.id, lease.vf_pci, lease.acquirer)
                      for lease in reserved_leases(session)]
    for lease_id, vf_pci, acquirer in candidates:
        if acquirer_alive(root, acquirer):
            findings.append({"lease": lease_id, "vf": vf_pci,
                             "problem": "reserved; its acquire is still running",
                             "action": "none"})
            continue
        # The VF lock orders this after any release or acquire still touching the VF.
        with vf_lock(root, vf_pci), ctx.store.immediate() as session:
            lease = session.get(Lease, lease_id)
            if lease is None or lease.state != "reserved":
                continue
            finding: dict[str, Any] = {
                "lease": lease_id, "vf": vf_pci, "owner": lease.owner,
                "problem": "reserved, but the process that acquired it is gone",
                "action": "restore the VF's saved config and driver, free it"
                if lease.saved_config else "free the VF (nothing was changed on it)"}
            if not dry_run:
                outcome, reason = ("free", None)
                if lease.saved_config is not None:
                    outcome, reason = restore_vf(ctx, lease.pf_pci, lease.vf_index,
                                                 lease.saved_config, lease.applied_config)
                finish_lease(session, lease, outcome, reason, "reconcile.release",
                             "acquire did not finish")
                finding["result"] = outcome if reason is None else f"{outcome}: {reason}"
            findings.append(finding)
    return {"dry_run": dry_run, "findings": findings}
