"""`vfpool vm`: hand leased VFs to QEMU."""

from __future__ import annotations

import contextlib
import shlex
import signal
from pathlib import Path
from types import FrameType

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.progress import progress
from vfpool.cli.render import emit, emit_json, note
from vfpool.model.qemu import QEMU_BINARY, handoff_record
from vfpool.service import vm as vm_service
from vfpool.service.progress import quiet

app = VfpoolTyper(help="Hand leased VFs to QEMU.")

JSON = typer.Option(False, "--json", help="Print JSON.")


@app.command("launch", context_settings={"allow_interspersed_args": False})
def launch(
    cli: typer.Context,
    owner: str = typer.Option(..., "--owner", help="The VM's name; owns the leases."),
    pool: str = typer.Option(..., "--pool", help="The pool to lease VFs from."),
    count: int = typer.Option(1, "--count", metavar="K", help="How many VFs."),
    numa_node: int | None = typer.Option(None, "--numa-node", metavar="N"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print the QEMU command line; lease and start nothing."),
    qemu: str = typer.Option(QEMU_BINARY, "--qemu", metavar="BINARY", help="QEMU to run."),
    as_json: bool = JSON,
    qemu_args: list[str] | None = typer.Argument(None, metavar="-- QEMU_ARGS..."),
) -> None:
    """Lease VFs, run QEMU with them, and release them when QEMU ends, however it ends.

    \b
    Example:
      vfpool vm launch --owner vm1 --pool tenant-a --count 2 -- -m 1G -accel kvm disk.img
    """
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with settings(cli).context() as ctx, contextlib.ExitStack() as shown:
            # The progress display ends once QEMU runs: QEMU may use the terminal itself.
            step = shown.enter_context(progress(f"vm launch {owner}")) if not dry_run \
                else None
            result = vm_service.launch(ctx, owner, pool, count=count,
                                       qemu_args=list(qemu_args or []), dry_run=dry_run,
                                       binary=qemu, numa_node=numa_node, note=note,
                                       progress=step or quiet,
                                       started=lambda machine: shown.close())
    except KeyboardInterrupt:
        note("vfpool: interrupted; QEMU was stopped and its leases released")
        raise typer.Exit(128 + (received[0] if received else signal.SIGINT)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        emit_json({"argv": result.argv, "exitcode": result.exitcode,
                   "leases": [lease.document() for lease in result.leases],
                   "notes": result.notes})
    elif dry_run:
        emit(shlex.join(result.argv))
    if result.exitcode:
        raise typer.Exit(result.exitcode)


@app.command("args")
def args(
    cli: typer.Context,
    lease_ids: list[int] = typer.Argument(..., metavar="LEASE_ID..."),
    as_json: bool = JSON,
) -> None:
    """Print the QEMU arguments of leases (a netdev lease: its interface and MAC only).

    \b
    Example:
      vfpool vm args 7 8 --json
    """
    with settings(cli).reader() as ctx:
        records = [handoff_record(nic) for nic in vm_service.args(ctx, lease_ids)]
    if as_json:
        emit_json(records)
        return
    lines = []
    for record in records:
        if record["mode"] == "netdev":
            lines.append(f"{record['netdev']} {record['mac']}")
        else:
            lines.append(shlex.join(record["argv"]))
    emit("\n".join(lines))


@app.command("attach")
def attach(
    cli: typer.Context,
    qmp_socket: Path = typer.Argument(..., metavar="QMP_SOCKET"),
    lease_id: int = typer.Argument(..., metavar="LEASE_ID"),
    bus: str | None = typer.Option(None, "--bus", help="The PCI bus or root port to plug into."),
    as_json: bool = JSON,
) -> None:
    """Hot-add a leased VF to a running QEMU over QMP.

    \b
    Example:
      vfpool vm attach /run/vm1/qmp.sock 7 --bus rp1
    """
    with settings(cli).context() as ctx:
        record = vm_service.attach(ctx, qmp_socket, lease_id, bus=bus, note=note)
    if as_json:
        emit_json(record.document())
    else:
        emit(f"attached lease {lease_id} as {record.device_id}")


@app.command("detach")
def detach(
    cli: typer.Context,
    qmp_socket: Path = typer.Argument(..., metavar="QMP_SOCKET"),
    lease_id: int = typer.Argument(..., metavar="LEASE_ID"),
    timeout: float = typer.Option(vm_service.DETACH_TIMEOUT, "--timeout", metavar="SECONDS",
                                  min=0.0, max=86400.0,
                                  help="How long to wait for the guest to let go."),
    as_json: bool = JSON,
) -> None:
    """Hot-remove a leased VF from a running QEMU, waiting for DEVICE_DELETED.

    \b
    Example:
      vfpool vm detach /run/vm1/qmp.sock 7
    """
    with settings(cli).context() as ctx:
        record = vm_service.detach(ctx, qmp_socket, lease_id, timeout=timeout)
    if as_json:
        emit_json(record.document())
    else:
        emit(f"detached lease {lease_id} ({record.device_id})")
