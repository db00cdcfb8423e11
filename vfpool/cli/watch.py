"""`vfpool watch`: follow udev and keep the store in step, until SIGTERM or SIGINT."""

from __future__ import annotations

import threading

import typer

from vfpool.cli.core import VfpoolTyper, settings, stop_on_signals
from vfpool.cli.render import note
from vfpool.errors import InvalidInput
from vfpool.host.udev import UdevDiscovery, UdevMonitor
from vfpool.service import watch as watch_service

app = VfpoolTyper()


@app.command("watch", short_help="Follow udev and keep the store in step.")
def watch(
    cli: typer.Context,
    once: bool = typer.Option(False, "--once", help="Exit after the first change handled."),
    timeout: float | None = typer.Option(None, "--timeout", metavar="SECONDS", min=0,
                                         max=10**9,
                                         help="Exit after SECONDS (default: run until SIGTERM "
                                              "or SIGINT)."),
) -> None:
    """Follow udev and keep the store in step: a removed VF or PF makes its VFs unusable and
    their leases lost, a VF that comes back is free again, and PF link changes are noted.
    Each change goes to the events log and one line to stderr. Runs until SIGTERM or SIGINT,
    then exits 0.

    \b
    Example:
      vfpool watch --timeout 60
    """
    current = settings(cli)
    if current.sim is not None:
        raise InvalidInput("vfpool watch follows this machine's udev, and a simulated host "
                           "has none: run it without --sim (or VFPOOL_SIM)")
    stop = threading.Event()
    with stop_on_signals(stop) as received, current.context() as ctx:
        monitor = UdevMonitor()
        # Listen first, then read the current state: a change in between is seen, not lost.
        monitor.start()
        links = watch_service.initial_links(ctx, UdevDiscovery(monitor.context).pfs())
        pfs = len({pci for pci, _ in links})
        note(f"watching udev for PCI and net changes ({pfs} PF(s) of the store present)")
        count = watch_service.watch(
            ctx, monitor, stop, links=links, once=once, timeout=timeout,
            on_change=lambda handled: note(handled.message),
            on_error=lambda message: note(f"error: {message}"))
    why = f"on {received[0]}" if received else "as asked"
    note(f"stopped {why} after {count} change(s)")
