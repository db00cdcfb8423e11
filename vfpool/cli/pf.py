"""`vfpool pf`: the SR-IOV physical functions of the host."""

from __future__ import annotations

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import cell, emit, emit_json, note, table
from vfpool.service import pfs as pf_service

app = VfpoolTyper(help="SR-IOV physical functions (PFs).")


@app.command("list")
def list_(
    cli: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the SR-IOV capable PFs of the host.

    \b
    Example:
      vfpool --sim /tmp/host pf list
    """
    with settings(cli).reader() as ctx:
        rows = pf_service.list_pfs(ctx)
    if as_json:
        emit_json([row.document() for row in rows])
        return
    if not rows:
        note("no SR-IOV capable PF on this host (no PCI device with sriov_totalvfs); "
             "`vfpool sim create DIR` makes a simulated host to try vfpool on")
    emit(table(["PCI", "NETDEV", "DRIVER", "MODEL", "VFS", "NUMA", "LINK", "POOL"],
               [[r.pci, ",".join(r.netdevs) or None, r.driver, r.model or f"{r.vendor}:{r.device}",
                 f"{r.numvfs}/{r.totalvfs}", r.numa_node, r.link, r.pool] for r in rows]))


@app.command("show")
def show(
    cli: typer.Context,
    pf: str = typer.Argument(..., metavar="PF", help="PCI address or netdev name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one PF and its VFs.

    \b
    Example:
      vfpool --sim /tmp/host pf show enp5s0f0
    """
    with settings(cli).reader() as ctx:
        record = pf_service.show_pf(ctx, pf)
    if as_json:
        emit_json(record.document())
        return
    fields = [("pci", record.pci), ("netdev", ",".join(record.netdevs) or None),
              ("driver", record.driver), ("model", record.model),
              ("id", f"{record.vendor}:{record.device}"),
              ("vfs", f"{record.numvfs}/{record.totalvfs}"),
              ("offset/stride", f"{record.offset}/{record.stride}"),
              ("numa_node", record.numa_node), ("link", record.link),
              ("pool", record.pool), ("drivers_autoprobe", record.drivers_autoprobe)]
    width = max(len(key) for key, _ in fields)
    lines = [f"{key.ljust(width)}  {cell(value)}" for key, value in fields]
    if record.vfs:
        lines += ["", table(["INDEX", "PCI", "NETDEV", "DRIVER", "MAC"],
                            [[vf.index, vf.pci, vf.netdev, vf.driver, vf.mac]
                             for vf in record.vfs])]
    emit("\n".join(line.rstrip() for line in lines))
