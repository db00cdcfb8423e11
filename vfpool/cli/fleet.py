"""`vfpool fleet`: fleet-wide decisions over a shared store."""

from __future__ import annotations

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import emit, emit_json, table
from vfpool.service import fleet as fleet_service

app = VfpoolTyper(help="Decisions across the hosts sharing the store.")


@app.command("place")
def place(
    cli: typer.Context,
    pool: str = typer.Argument(..., metavar="POOL", help="The pool's name on each host."),
    count: int = typer.Option(..., "--count", metavar="K", help="How many VFs."),
    numa_node: int | None = typer.Option(None, "--numa-node", metavar="N",
                                         help="Prefer hosts that can give all K on node N."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the hosts whose pool POOL can give K VFs now, best first.

    Best is: all K on the NUMA node asked for, then the most free on it, then the most free.
    Exit 5 when no host can.

    \b
    Example:
      vfpool fleet place tenant --count 2 --numa-node 0 --json
    """
    with settings(cli).reader() as ctx:
        rows = fleet_service.place(ctx, pool, count, numa_node=numa_node)
    if as_json:
        emit_json([{"host": row.host, "pool": row.pool, "free": row.free,
                    "free_on_numa": row.free_on_numa, "numa_met": row.numa_met}
                   for row in rows])
        return
    emit(table(["HOST", "POOL", "FREE", "FREE-ON-NUMA", "NUMA-MET"],
               [[row.host, row.pool, row.free, row.free_on_numa,
                 "yes" if row.numa_met else "no"] for row in rows]))
