"""PF discovery: what `pf list` and `pf show` report."""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vfpool.model.snapshot import PfSnapshot
from vfpool.service.context import Context
from vfpool.service.results import PfDetail, PfInfo, PfVf
from vfpool.store.queries import Queries

if TYPE_CHECKING:
    from vfpool.host.udev import UdevPf


def pool_of_pfs(ctx: Context) -> dict[str, str]:
    """``{pf pci: pool name}`` for every PF in a pool; a PF split by VF ranges between pools
    lists them all, comma-separated."""
    names: dict[str, list[str]] = {}
    rows = ctx.store.read(lambda session: Queries(session).pool_names_by_pf())
    for pci, name in rows:
        names.setdefault(pci, []).append(name)
    return {pci: ",".join(pool_names) for pci, pool_names in names.items()}


def pf_record(pf: PfSnapshot, pool: str | None) -> PfInfo:
    """The `pf list` row: the keys from DESIGN.md (and ``netdevs`` for two-port PFs)."""
    return PfInfo(pci=str(pf.pci), netdev=pf.netdev, driver=pf.driver,
                  vendor=f"{pf.vendor:04x}", device=f"{pf.device:04x}", model=pf.model,
                  totalvfs=pf.totalvfs, numvfs=pf.numvfs, numa_node=pf.numa_node,
                  link=pf.link, pool=pool, netdevs=tuple(netdev.name for netdev in pf.netdevs))


def merge_udev(sysfs_pfs: list[PfSnapshot], udev_pfs: list[UdevPf]) -> list[PfSnapshot]:
    """PFs as udev enumerates them, detailed by the sysfs reader.

    udev decides which PFs there are (a PF udev has not processed yet is not ready to use),
    and gives model names from its hwdb where no pci.ids names them.
    """
    by_pci = {pf.pci: pf for pf in sysfs_pfs}
    merged = []
    for seen in sorted(udev_pfs, key=lambda pf: pf.pci):
        snapshot = by_pci.get(seen.pci)
        if snapshot is None:
            continue  # gone between the two reads
        if snapshot.model is None and seen.model:
            snapshot = replace(snapshot, model=seen.model)
        merged.append(snapshot)
    return merged


def discover(ctx: Context) -> list[PfSnapshot]:
    """The host's PFs: through pyudev on a real host, through sysfs on a simulated one."""
    snapshots = ctx.sysfs.pfs()
    if ctx.kernel.simulated or ctx.sysfs.root != Path("/"):
        return snapshots
    try:
        from vfpool.host.udev import UdevDiscovery

        return merge_udev(snapshots, UdevDiscovery().pfs())
    except (ImportError, OSError) as exc:  # no udev database (a bare container)
        logging.getLogger(__name__).debug("udev unavailable, using sysfs only: %s", exc)
        return snapshots


def list_pfs(ctx: Context) -> list[PfInfo]:
    pools = pool_of_pfs(ctx)
    return [pf_record(pf, pools.get(str(pf.pci))) for pf in discover(ctx)]


def show_pf(ctx: Context, name: str) -> PfDetail:
    """One PF with its SR-IOV geometry and VFs. ``name`` is a BDF or a netdev name."""
    pf = ctx.sysfs.resolve_pf(name)
    row = pf_record(pf, pool_of_pfs(ctx).get(str(pf.pci)))
    return PfDetail(
        **{field.name: getattr(row, field.name) for field in fields(PfInfo)},
        vf_device=f"{pf.vf_device:04x}" if pf.vf_device is not None else None,
        offset=pf.offset,
        stride=pf.stride,
        drivers_autoprobe=pf.drivers_autoprobe,
        vfs=tuple(PfVf(index=vf.index, pci=str(vf.pci), netdev=vf.netdev, driver=vf.driver,
                       mac=vf.netdevs[0].mac if vf.netdevs else None) for vf in pf.vfs),
    )
