"""`vfpool events`: read the audit log, filtered, as a table or JSON, or follow it."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from typing import TYPE_CHECKING

import typer

from vfpool.cli.core import VfpoolTyper, settings, stop_on_signals
from vfpool.cli.render import cell, emit, emit_json, note, table
from vfpool.service import events as event_service

if TYPE_CHECKING:
    from vfpool.service.context import Context

app = VfpoolTyper()
POLL_INTERVAL = 0.5  # seconds between two reads of the log while following it


def _value(value: object) -> str:
    """A detail value on one line: lists joined with commas, texts of many lines counted
    (``--json`` carries them whole)."""
    if isinstance(value, list):
        return ",".join(_value(item) for item in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str) and "\n" in value.strip():
        return f"({len(value.strip().splitlines())} lines)"
    return cell(value)


def _detail(row: event_service.EventRow) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in sorted((row.detail or {}).items()))


def _line(row: event_service.EventRow) -> str:
    """One event as one line, for --follow: the table's columns, each named."""
    at = row.at.replace(microsecond=0).isoformat()
    named = " ".join(f"{key}={value}" for key, value in (
        ("pool", row.pool), ("pf", row.pf), ("vf", row.vf), ("lease", row.lease_id),
    ) if value is not None)
    return " ".join(part for part in (str(row.id), at, cell(row.actor), row.action, named,
                                      _detail(row)) if part)


@app.command("events")
def events(
    cli: typer.Context,
    pool: str | None = typer.Option(None, "--pool", metavar="POOL", help="Only this pool's."),
    pf: str | None = typer.Option(None, "--pf", metavar="PF",
                                  help="Only this PF's (PCI address or netdev name)."),
    lease: int | None = typer.Option(None, "--lease", metavar="ID", min=1,
                                     help="Only this lease's."),
    owner: str | None = typer.Option(None, "--owner", metavar="OWNER",
                                     help="Only the events of this owner's leases."),
    action: str | None = typer.Option(None, "--action", metavar="ACTION",
                                      help="Only this action (lease.acquire, pool.start, …)."),
    since: str | None = typer.Option(None, "--since", metavar="TIME",
                                     help="Only events from TIME on: ISO 8601 (UTC unless it "
                                          "says otherwise), or an age such as 15m, 2h, 1d."),
    limit: int = typer.Option(100, "--limit", metavar="N", min=0,
                              help="At most the newest N events; 0 for all."),
    reverse: bool = typer.Option(False, "--reverse", help="Oldest first."),
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Print the matching events oldest first, then each new "
                                     "one as it is written, until SIGINT or SIGTERM (one "
                                     "JSON object a line with --json)."),
    timeout: float | None = typer.Option(None, "--timeout", metavar="SECONDS", min=0,
                                         max=10**9, help="With --follow: stop after SECONDS."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Read the audit log: who did what, when and why.

    Newest first (--reverse: oldest first), the newest 100 unless --limit says otherwise.

    \b
    Example:
      vfpool events --pool tenant-a --since 1h
      vfpool events --owner vm1 --json
      vfpool events --follow --action lease.release
    """
    with settings(cli).reader() as ctx:
        where = event_service.make_filter(ctx, pool=pool, pf=pf, lease=lease, owner=owner,
                                          action=action, since=since)
        rows = event_service.list_events(ctx, where, limit=limit or None,
                                         oldest_first=reverse or follow)
        if follow:
            _follow(ctx, where, rows, as_json=as_json, timeout=timeout)
            return
    if as_json:
        emit_json([row.document() for row in rows])
        return
    if not rows:
        note("no events match" if any(value is not None for value in (
            pool, pf, lease, owner, action, since)) else "no events yet: vfpool records one "
             "for every change it makes")
    emit(table(["ID", "AT", "ACTOR", "ACTION", "POOL", "PF", "VF", "LEASE", "DETAIL"],
               [[row.id, row.at.replace(microsecond=0).isoformat(), row.actor, row.action,
                 row.pool, row.pf, row.vf, row.lease_id, _detail(row)] for row in rows]))


def _follow(ctx: Context, where: event_service.EventFilter,
            rows: list[event_service.EventRow], *, as_json: bool,
            timeout: float | None) -> None:
    def show(batch: list[event_service.EventRow]) -> None:
        for row in batch:
            print(json.dumps(row.document()) if as_json else _line(row))
        sys.stdout.flush()

    stop = threading.Event()
    deadline = None if timeout is None else time.monotonic() + timeout
    last = max((row.id for row in rows), default=None)
    if last is None:  # nothing matched so far: start after the newest event of all
        newest = event_service.list_events(ctx, limit=1)
        last = newest[0].id if newest else 0
    with stop_on_signals(stop):
        show(rows)
        while not stop.is_set():
            wait = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL,
                                                              deadline - time.monotonic())
            if wait <= 0 or stop.wait(wait):
                break
            batch = event_service.list_events(
                ctx, dataclasses.replace(where, after_id=last),
                oldest_first=True)
            if batch:
                last = batch[-1].id
                show(batch)
