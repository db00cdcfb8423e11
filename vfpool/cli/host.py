"""`vfpool host`: the hosts that share the store (a fleet on one PostgreSQL database)."""

from __future__ import annotations

from typing import Any

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import emit, emit_json, note, table
from vfpool.service import fleet as fleet_service

app = VfpoolTyper(help="The hosts that share this store.")


def host_document(host: fleet_service.HostInfo) -> dict[str, Any]:
    return {"name": host.name, "machine_id": host.machine_id,
            "last_seen": host.last_seen.isoformat(), "pools": host.pools,
            "vfs": {key: host.vfs[key] for key in ("total", "free", "leased", "reserved",
                                                   "unusable")}}


@app.command("list")
def list_(
    cli: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List every host that shares the store, with its pools and VFs by state.

    \b
    Example:
      vfpool --db postgresql://vfpool@db/vfpool host list
    """
    with settings(cli).reader() as ctx:
        hosts = fleet_service.host_list(ctx)
    if as_json:
        emit_json([host_document(host) for host in hosts])
        return
    if not hosts:
        note("no host has written to this store yet; any command that changes it (for "
             "example `vfpool pool define`) registers this host")
    emit(table(["NAME", "MACHINE-ID", "LAST-SEEN", "POOLS", "VFS", "FREE", "LEASED",
                "RESERVED", "UNUSABLE"],
               [[h.name, h.machine_id, h.last_seen.replace(microsecond=0).isoformat(), h.pools,
                 h.vfs["total"], h.vfs["free"], h.vfs["leased"], h.vfs["reserved"],
                 h.vfs["unusable"]] for h in hosts]))
