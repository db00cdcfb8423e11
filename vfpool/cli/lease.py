"""`vfpool lease`: VF leases for VM tooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import emit, emit_json, note, table
from vfpool.cli.render import fields as render_fields
from vfpool.errors import InvalidInput
from vfpool.service import leases as lease_service
from vfpool.service.lease_results import LeaseInfo

app = VfpoolTyper(help="Lease VFs to VMs and release them.")

JSON = typer.Option(False, "--json", help="Print JSON.")


def _rows(records: Sequence[LeaseInfo]) -> str:
    return table(["ID", "POOL", "OWNER", "STATE", "MODE", "VF", "NETDEV", "MAC", "VLAN", "NUMA"],
                 [[r.id, r.pool, r.owner, r.state, r.mode, r.vf.pci, r.vf.netdev, r.mac,
                   r.vlan, r.numa_node] for r in records])


def _documents(records: Sequence[LeaseInfo]) -> list[dict[str, Any]]:
    return [record.document() for record in records]


@app.command("acquire")
def acquire(
    cli: typer.Context,
    pool: str = typer.Argument(..., metavar="POOL"),
    owner: str = typer.Option(..., "--owner", help="Who holds the lease: a VM name or UUID."),
    count: int = typer.Option(1, "--count", metavar="K", help="Lease K VFs: all or none."),
    mac: str | None = typer.Option(None, "--mac", help="The VF's MAC (default: generated)."),
    vlan: int | None = typer.Option(None, "--vlan", metavar="ID", help="Override the VLAN."),
    numa_node: int | None = typer.Option(None, "--numa-node", metavar="N",
                                         help="Prefer VFs on this NUMA node."),
    spread: bool = typer.Option(False, "--spread", help="Spread the VFs across PFs."),
    link_state: str | None = typer.Option(None, "--link-state", metavar="auto|enable|disable",
                                          help="The VF's link state while leased (default: the "
                                               "pool's, else auto)."),
    owner_pid: int | None = typer.Option(None, "--owner-pid", metavar="PID",
                                         help="The process using the VFs (reconcile frees "
                                              "them when it is gone)."),
    as_json: bool = JSON,
) -> None:
    """Lease VFs from an active pool. Prints each lease with its token, shown only here.

    \b
    Example:
      vfpool lease acquire tenant-a --owner vm1 --count 2 --numa-node 1 --json
    """
    with settings(cli).context() as ctx:
        records = lease_service.acquire(ctx, pool, owner, count=count, mac=mac, vlan=vlan,
                                        numa_node=numa_node, spread=spread, owner_pid=owner_pid,
                                        link_state=link_state)
    if records and records[0].numa_met is False:
        note(f"note: not all VFs are on NUMA node {numa_node}; the pool had no free VF there")
    if as_json:
        emit_json(_documents(records))
        return
    emit(_rows(records))
    for record in records:
        emit(f"lease {record.id} token: {record.token}")


@app.command("release")
def release(
    cli: typer.Context,
    lease_id: int | None = typer.Argument(None, metavar="LEASE_ID"),
    token: str | None = typer.Option(None, "--token", help="The token printed by acquire."),
    owner: str | None = typer.Option(None, "--owner", help="Release all of OWNER's leases."),
    force: bool = typer.Option(False, "--force", help="Release without the token (admins)."),
    as_json: bool = JSON,
) -> None:
    """Release a lease: restore the VF's saved config and driver, and free it.

    \b
    Example:
      vfpool lease release 7 --token 3q2-H…
    """
    if (lease_id is None) == (owner is None):
        raise InvalidInput("give a LEASE_ID or --owner OWNER")
    with settings(cli).context() as ctx:
        if owner is not None:
            records = lease_service.release_owner(ctx, owner)
        else:
            assert lease_id is not None
            records = [lease_service.release(ctx, lease_id, token=token, force=force)]
    if as_json:
        emit_json(_documents(records))
    else:
        emit("\n".join(f"released lease {r.id} ({r.vf.pci})" for r in records))


@app.command("list")
def list_(
    cli: typer.Context,
    pool: str | None = typer.Option(None, "--pool", help="Only this pool's leases."),
    owner: str | None = typer.Option(None, "--owner", help="Only this owner's leases."),
    include_finished: bool = typer.Option(False, "--all", help="Include released leases."),
    as_json: bool = JSON,
) -> None:
    """List live leases (all of them with --all).

    \b
    Example:
      vfpool lease list --owner vm1 --json
    """
    with settings(cli).reader() as ctx:
        records = lease_service.list_leases(ctx, pool=pool, owner=owner,
                                            include_finished=include_finished)
    if as_json:
        emit_json(_documents(records))
        return
    if not records:
        note(("no leases match" if pool or owner else "no live leases")
             + ("" if include_finished else "; `vfpool lease list --all` includes released ones")
             + "; lease a VF with `vfpool lease acquire POOL --owner OWNER`")
    emit(_rows(records))


@app.command("show")
def show(
    cli: typer.Context,
    lease_id: int = typer.Argument(..., metavar="LEASE_ID"),
    as_json: bool = JSON,
) -> None:
    """Show one lease, with the VF config it saved and applied.

    \b
    Example:
      vfpool lease show 7
    """
    with settings(cli).reader() as ctx:
        record = lease_service.show_lease(ctx, lease_id)
    if as_json:
        emit_json(record.document())
        return
    fields = [("id", record.id), ("pool", record.pool), ("owner", record.owner),
              ("state", record.state), ("mode", record.mode), ("mac", record.mac),
              ("vlan", record.vlan), ("numa_node", record.numa_node),
              ("pf", f"{record.pf.pci} ({record.pf.netdev})"),
              ("vf", f"{record.vf.index} {record.vf.pci} ({record.vf.netdev or '-'})"),
              ("created_at", record.created_at.isoformat()),
              ("released_at", record.released_at.isoformat() if record.released_at else None)]
    emit(render_fields(fields))
    saved, applied = record.saved_config or {}, record.applied_config or {}
    keys = [*saved, *(key for key in applied if key not in saved)]
    if keys:
        # What the VF had before the lease (restored at release) next to what the lease set.
        emit("")
        emit(table(["FIELD", "SAVED", "APPLIED"],
                   [[key, saved.get(key), applied.get(key)] for key in keys]))
