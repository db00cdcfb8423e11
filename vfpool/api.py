"""The Python API: the same service functions the CLI calls, over one connection.

    import vfpool
    with vfpool.connect(sim="/tmp/host") as host:
        lease = host.acquire("tenant-a", owner="vm1")
        ...
        host.release(lease)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vfpool.model.pool import VfDefaults
from vfpool.service import events, leases, pfs, pools, reconcile, report
from vfpool.service.context import Context, open_context
from vfpool.service.report import FleetReport as FleetReport
from vfpool.service.report import Report as Report
from vfpool.service.results import AutostartOutcome as AutostartOutcome
from vfpool.service.results import AutostartResult as AutostartResult
from vfpool.service.results import Finding as Finding
from vfpool.service.results import LeaseAcquired as LeaseAcquired
from vfpool.service.results import LeaseDetail as LeaseDetail
from vfpool.service.results import LeaseInfo as LeaseInfo
from vfpool.service.results import LeasePf as LeasePf
from vfpool.service.results import LeasePreview as LeasePreview
from vfpool.service.results import LeaseVf as LeaseVf
from vfpool.service.results import PfDetail as PfDetail
from vfpool.service.results import PfInfo as PfInfo
from vfpool.service.results import PfVf as PfVf
from vfpool.service.results import PoolChanged as PoolChanged
from vfpool.service.results import PoolDestroyed as PoolDestroyed
from vfpool.service.results import PoolInfo as PoolInfo
from vfpool.service.results import PoolMember as PoolMember
from vfpool.service.results import PoolStarted as PoolStarted
from vfpool.service.results import ReconcileResult as ReconcileResult
from vfpool.service.results import VfCounts as VfCounts
from vfpool.store.states import LinkState


@dataclass(frozen=True)
class Lease:
    """A lease as `lease acquire --json` prints it; ``token`` is set only on acquire."""

    id: int
    pool: str
    owner: str
    token: str | None
    state: str
    mode: str
    mac: str | None
    vlan: int | None
    numa_node: int | None
    created_at: str
    pf_pci: str
    pf_netdev: str | None
    vf_index: int
    vf_pci: str
    vf_netdev: str | None
    numa_met: bool | None = None

    @classmethod
    def from_info(cls, info: LeaseInfo) -> Lease:
        """The lease of a service's result."""
        return cls(id=info.id, pool=info.pool, owner=info.owner, token=info.token,
                   state=info.state, mode=info.mode, mac=info.mac, vlan=info.vlan,
                   numa_node=info.numa_node, created_at=info.created_at.isoformat(),
                   pf_pci=info.pf.pci, pf_netdev=info.pf.netdev, vf_index=info.vf.index,
                   vf_pci=info.vf.pci, vf_netdev=info.vf.netdev,
                   numa_met=info.numa_met if isinstance(info, LeaseAcquired) else None)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Lease:
        """The lease of one record of `lease list --json`."""
        return cls(id=record["id"], pool=record["pool"], owner=record["owner"],
                   token=record["token"], state=record["state"], mode=record["mode"],
                   mac=record["mac"], vlan=record["vlan"], numa_node=record["numa_node"],
                   created_at=record["created_at"], pf_pci=record["pf"]["pci"],
                   pf_netdev=record["pf"]["netdev"], vf_index=record["vf"]["index"],
                   vf_pci=record["vf"]["pci"], vf_netdev=record["vf"]["netdev"],
                   numa_met=record.get("numa_met"))


class Host:
    """One host (real or simulated) and its store. Every method runs the same service
    function as the CLI command named in its docstring, with the same checks, locks and
    errors (``vfpool.errors``). Pools and PFs come back as frozen dataclasses (``PoolInfo``,
    ``PfInfo``, ...); their ``document()`` is what the command prints with ``--json``."""

    def __init__(self, context: Context) -> None:
        self.context = context

    # -- PFs
    def pfs(self) -> list[PfInfo]:
        """The SR-IOV capable PFs of the host (`vfpool pf list`)."""
        return pfs.list_pfs(self.context)

    def pf(self, name: str) -> PfDetail:
        """One PF by PCI address or netdev name, with its VFs (`vfpool pf show`)."""
        return pfs.show_pf(self.context, name)

    # -- pools
    def define_pool(self, name: str, pf: list[str], vfs: int, *, method: str = "auto",
                    mode: str = "vfio", vlan: int | None = None, qos: int | None = None,
                    trust: bool | None = None, spoofchk: bool | None = None,
                    min_tx_rate: int | None = None, max_tx_rate: int | None = None,
                    mtu: int | None = None, link_state: str | None = None) -> PoolInfo:
        """Define an inactive pool of ``vfs`` VFs on each PF in ``pf`` (a PCI address or
        netdev name, optionally ``#START-END``), with the VF settings every lease gets
        (`vfpool pool define`)."""
        defaults = VfDefaults(vlan=vlan, qos=qos, trust=trust, spoofchk=spoofchk,
                              min_tx_rate=min_tx_rate, max_tx_rate=max_tx_rate, mtu=mtu,
                              link_state=LinkState(link_state) if link_state else None)
        spec = pools.parse_spec(name, pf, vfs, method, mode, defaults)
        return pools.define(self.context, spec)

    def define_pool_from_toml(self, text: str, *, name: str | None = None) -> PoolInfo:
        """Define a pool from the TOML that :meth:`dumpconfig` writes, optionally under
        another name (`vfpool pool define --file`)."""
        spec = pools.from_toml(text, "<toml>")
        if name is not None:
            spec = pools.replace_name(spec, name)
        return pools.define(self.context, spec)

    def dumpconfig(self, name: str) -> str:
        """The pool's definition as TOML (`vfpool pool dumpconfig`)."""
        return pools.dumpconfig(self.context, name)

    def start_pool(self, name: str, *, allow_disruption: bool = False,
                   timeout: float = pools.DEFAULT_TIMEOUT) -> PoolStarted:
        """Size the pool's PFs and register its VFs; idempotent (`vfpool pool start`).
        ``timeout`` bounds the wait for VFs and netdevs, in seconds."""
        return pools.start(self.context, name, allow_disruption=allow_disruption,
                           timeout=timeout)

    def start_autostarted(self, *, allow_disruption: bool = False,
                          timeout: float = pools.DEFAULT_TIMEOUT) -> list[AutostartResult]:
        """Start every autostart pool; one failure does not stop the others
        (`vfpool pool start --autostarted`)."""
        return pools.start_autostarted(self.context, allow_disruption=allow_disruption,
                                       timeout=timeout)

    def resize_pool(self, name: str, vfs: int, *, allow_disruption: bool = False,
                    timeout: float = pools.DEFAULT_TIMEOUT) -> PoolInfo | PoolChanged:
        """Change the pool's VFs per PF, never below a leased VF (`vfpool pool resize`); a
        :class:`PoolChanged` when the pool is active and its PFs were resized at once."""
        return pools.resize(self.context, name, vfs, allow_disruption=allow_disruption,
                            timeout=timeout)

    def set_autostart(self, name: str, enabled: bool = True) -> PoolInfo:
        """Start the pool at boot, or not (`vfpool pool autostart [--disable]`)."""
        return pools.set_autostart(self.context, name, enabled)

    def destroy_pool(self, name: str, *, force: bool = False, keep_vfs: bool = False,
                     allow_disruption: bool = False) -> PoolDestroyed:
        """Deactivate the pool; refused while it has leases unless ``force`` releases them
        (`vfpool pool destroy`)."""
        return pools.destroy(self.context, name, force=force, keep_vfs=keep_vfs,
                             allow_disruption=allow_disruption)

    def undefine_pool(self, name: str) -> None:
        """Forget an inactive pool (`vfpool pool undefine`)."""
        pools.undefine(self.context, name)

    def pool(self, name: str) -> PoolInfo:
        """One pool with its PFs and VF counts (`vfpool pool show`)."""
        return pools.info(self.context, name)

    def pools(self, *, include_inactive: bool = False) -> list[PoolInfo]:
        """Active pools, or all of them (`vfpool pool list [--all]`)."""
        return pools.list_pools(self.context, include_inactive=include_inactive)

    # -- leases
    def acquire(self, pool: str, owner: str, *, mac: str | None = None, vlan: int | None = None,
                numa_node: int | None = None, owner_pid: int | None = None,
                link_state: str | None = None) -> Lease:
        """Lease one VF of ``pool`` to ``owner``, configured and bound for the pool's mode
        (`vfpool lease acquire`). ``owner_pid``: the process whose end makes the lease stale.
        """
        return self.acquire_many(pool, owner, 1, mac=mac, vlan=vlan, numa_node=numa_node,
                                 owner_pid=owner_pid, link_state=link_state)[0]

    def acquire_many(self, pool: str, owner: str, count: int, *, mac: str | None = None,
                     vlan: int | None = None, numa_node: int | None = None,
                     spread: bool = False, owner_pid: int | None = None,
                     link_state: str | None = None) -> list[Lease]:
        """Lease ``count`` VFs at once, all or none (`vfpool lease acquire --count`);
        ``spread`` takes them from as many PFs as it can."""
        records = leases.acquire(self.context, pool, owner, count=count, mac=mac, vlan=vlan,
                                 numa_node=numa_node, spread=spread, owner_pid=owner_pid,
                                 link_state=link_state)
        return [Lease.from_info(record) for record in records]

    def release(self, lease: Lease | int, *, token: str | None = None,
                force: bool = False) -> None:
        """Restore the VF's config and driver and close the lease (`vfpool lease release`).
        A :class:`Lease` from :meth:`acquire` carries its token; ``force`` needs none."""
        if isinstance(lease, Lease):
            lease_id, token = lease.id, token or lease.token
        else:
            lease_id = lease
        leases.release(self.context, lease_id, token=token, force=force)

    def leases(self, *, pool: str | None = None, owner: str | None = None,
               include_finished: bool = False) -> list[Lease]:
        """Live leases, or all of them (`vfpool lease list [--all]`)."""
        return [Lease.from_info(record) for record in leases.list_leases(
            self.context, pool=pool, owner=owner, include_finished=include_finished)]

    # -- records
    def reconcile(self, *, dry_run: bool = False) -> ReconcileResult:
        """Repair what the store and the host disagree on (`vfpool reconcile`)."""
        return reconcile.reconcile(self.context, dry_run=dry_run)

    def report(self, *, output_format: str = "json", fleet: bool = False) -> str:
        """The inventory report as text: ``json``, ``table``, ``csv`` or ``prometheus``
        (`vfpool report --format`); with ``fleet``, every host's (`vfpool report --fleet`).
        """
        from vfpool.cli import report_render  # the CLI's renderers, imported when used

        report_render.check_format(output_format, "format")
        found = self.fleet_inventory() if fleet else self.inventory()
        return report_render.render(found, output_format)

    def inventory(self, *, now: datetime | None = None) -> Report:
        """The inventory report as data (`vfpool report`): the pools with their PFs and VF
        counts, the VFs with their live leases, and the newest events. ``now`` (aware) is the
        time lease ages are measured to; default: the current time."""
        return report.build_report(self.context, now=now)

    def fleet_inventory(self, *, now: datetime | None = None) -> FleetReport[Report]:
        """Every host's inventory report, by host name, as data (`vfpool report --fleet`)."""
        return report.build_fleet_report(self.context, now=now)

    def events(self, *, pool: str | None = None, pf: str | None = None,
               lease: int | None = None, owner: str | None = None,
               action: str | None = None, since: datetime | str | None = None,
               limit: int | None = 100, oldest_first: bool = False) -> list[dict[str, Any]]:
        """The audit log, newest first (`vfpool events`): each event as `events --json`
        prints it. ``since`` is a datetime, an ISO 8601 text or an age (``"2h"``)."""
        where = events.make_filter(self.context, pool=pool, pf=pf, lease=lease, owner=owner,
                                   action=action, since=since)
        return [row.document() for row in events.list_events(
            self.context, where, limit=limit, oldest_first=oldest_first)]

    # -- lifetime
    def close(self) -> None:
        """Close the store (a ``with`` block does it)."""
        self.context.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(db: str | None = None, sim: Path | str | None = None,
            root: Path | str = "/") -> Host:
    """Open a host: a simulated one with ``sim=DIR``, else the machine (under ``root``),
    with the store at the URL ``db`` (default: as the CLI's)."""
    return Host(open_context(db=db, sim=sim, root=root))
