"""The Python API: the same service functions the CLI calls, over one connection.

    import vfpool
    with vfpool.connect(sim="/tmp/host") as host:
        lease = host.acquire("tenant-a", owner="vm1")
        ...
        host.release(lease)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfpool.model.pool import VfDefaults
from vfpool.service import leases, pfs, pools, reconcile
from vfpool.service.context import Context, open_context


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
    def from_record(cls, record: dict[str, Any]) -> Lease:
        return cls(id=record["id"], pool=record["pool"], owner=record["owner"],
                   token=record["token"], state=record["state"], mode=record["mode"],
                   mac=record["mac"], vlan=record["vlan"], numa_node=record["numa_node"],
                   created_at=record["created_at"], pf_pci=record["pf"]["pci"],
                   pf_netdev=record["pf"]["netdev"], vf_index=record["vf"]["index"],
                   vf_pci=record["vf"]["pci"], vf_netdev=record["vf"]["netdev"],
                   numa_met=record.get("numa_met"))


class Host:
    """One host (real or simulated) and its store."""

    def __init__(self, context: Context) -> None:
        self.context = context

    # -- PFs and pools
    def pfs(self) -> list[dict[str, Any]]:
        return pfs.list_pfs(self.context)

    def define_pool(self, name: str, pf: list[str], vfs: int, *, method: str = "auto",
                    mode: str = "vfio", **defaults: Any) -> dict[str, Any]:
        spec = pools.parse_spec(name, pf, vfs, method, mode, VfDefaults(**defaults))
        return pools.define(self.context, spec)

    def start_pool(self, name: str, **options: Any) -> dict[str, Any]:
        return pools.start(self.context, name, **options)

    def destroy_pool(self, name: str, **options: Any) -> dict[str, Any]:
        return pools.destroy(self.context, name, **options)

    def undefine_pool(self, name: str) -> None:
        pools.undefine(self.context, name)

    def pool(self, name: str) -> dict[str, Any]:
        return pools.info(self.context, name)

    def pools(self, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        return pools.list_pools(self.context, include_inactive=include_inactive)

    # -- leases
    def acquire(self, pool: str, owner: str, *, mac: str | None = None, vlan: int | None = None,
                numa_node: int | None = None, owner_pid: int | None = None,
                link_state: str | None = None) -> Lease:
        return self.acquire_many(pool, owner, 1, mac=mac, vlan=vlan, numa_node=numa_node,
                                 owner_pid=owner_pid, link_state=link_state)[0]

    def acquire_many(self, pool: str, owner: str, count: int, *, mac: str | None = None,
                     vlan: int | None = None, numa_node: int | None = None,
                     spread: bool = False, owner_pid: int | None = None,
                     link_state: str | None = None) -> list[Lease]:
        records = leases.acquire(self.context, pool, owner, count=count, mac=mac, vlan=vlan,
                                 numa_node=numa_node, spread=spread, owner_pid=owner_pid,
                                 link_state=link_state)
        return [Lease.from_record(record) for record in records]

    def release(self, lease: Lease | int, *, token: str | None = None,
                force: bool = False) -> None:
        if isinstance(lease, Lease):
            lease_id, token = lease.id, token or lease.token
        else:
            lease_id = lease
        leases.release(self.context, lease_id, token=token, force=force)

    def leases(self, *, pool: str | None = None, owner: str | None = None,
               include_finished: bool = False) -> list[Lease]:
        return [Lease.from_record(record) for record in leases.list_leases(
            self.context, pool=pool, owner=owner, include_finished=include_finished)]

    def reconcile(self, *, dry_run: bool = False) -> dict[str, Any]:
        return reconcile.reconcile(self.context, dry_run=dry_run)

    # -- lifetime
    def close(self) -> None:
        self.context.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(db: str | None = None, sim: Path | str | None = None,
            root: Path | str = "/") -> Host:
    """Open a host: a simulated one with ``sim=DIR``, else the machine (under ``root``)."""
    return Host(open_context(db=db, sim=sim, root=root))
