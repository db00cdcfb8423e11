"""`vfpool watch`: keep the store in step with udev while devices come and go.

- a VF removed (``pci`` ``remove``): the VF becomes ``unusable`` (reason "removed") and its
  live lease ``lost``;
- a PF removed: the same for each of its VFs (the kernel normally removes the VFs first, each
  with an event of its own, so this is the safety net);
- a VF that reappears (``pci`` ``add``) after it was removed: ``free`` again, unless a live
  lease still names it; VFs unusable for any other reason stay so;
- a PF netdev's link (``net`` ``add``/``change``/``remove``): noted when operstate or carrier
  changed since the last time the watcher saw it.

Each handled change is one transaction and writes ``events`` rows. Everything is keyed by PCI
address; netdev names only label the messages. ``handle()`` is the decision, on a session and a
``DeviceChange``; ``watch()`` is the loop around a monitor.

The watcher takes no vfpool locks and does no host I/O inside a transaction: a udev event is
already the news, so each change is one short write transaction (retried while the store is
busy) that re-reads its rows. A release re-reads its lease in a transaction of its own, so a
release and a removal are ordered by the store and never both win.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from vfpool.errors import VfpoolError
from vfpool.host.udev import DeviceChange, UdevPf
from vfpool.service import events
from vfpool.service.context import Context
from vfpool.service.leases import finish_lease
from vfpool.store import Lease, Pf, Vf, utcnow
from vfpool.store.queries import Queries
from vfpool.store.states import LeaseState, VfState

REMOVED = "removed"  # Vf.reason of a VF that udev removed; only these come back on "add"
ABSENT = "absent"  # the operstate noted when a PF's netdev is removed
POLL_INTERVAL = 0.5  # seconds between looks at the stop flag while no event arrives


@dataclass(frozen=True)
class LinkState:
    operstate: str | None
    carrier: str | None

    def __str__(self) -> str:
        if self.operstate == ABSENT:
            return "absent (netdev removed)"
        carrier = {"1": "carrier", "0": "no carrier"}.get(self.carrier or "", "carrier unknown")
        return f"{self.operstate or 'unknown'}, {carrier}"


# What the watcher last saw of each PF netdev: (PF pci, netdev name) -> link state.
Links = MutableMapping[tuple[str, str], LinkState]


@dataclass(frozen=True)
class Handled:
    """One change the watcher acted on: the ``events`` action and a line for the log."""

    action: str
    message: str
    # (key, state) to remember once the transaction committed
    link: tuple[tuple[str, str], LinkState] | None = None
    lost_lease: int | None = None  # the lease this change made "lost"


class ChangeSource(Protocol):
    """Where changes come from: ``vfpool.host.udev.UdevMonitor`` on a host."""

    def start(self) -> None: ...

    def poll(self, timeout: float) -> DeviceChange | None: ...


# ---------------------------------------------------------------- helpers

def _pool_of(session: Session, pf_pci: str, vf_index: int | None = None) -> str | None:
    """The pool that holds the PF (and the VF index, when the PF is split by ranges)."""
    names = []
    for pool, member in sorted(Queries(session).memberships([pf_pci]),
                               key=lambda row: row[1].pool_id):
        if (vf_index is None or member.range_start is None or member.range_end is None
                or member.range_start <= vf_index <= member.range_end):
            names.append(pool.name)
    return ",".join(names)[:64] or None


def _live_lease(session: Session, vf: Vf) -> Lease | None:
    return Queries(session).live_lease_of_vf(vf.id)


def _vf_label(vf: Vf, pool: str | None) -> str:
    where = f", pool {pool}" if pool else ""
    return f"VF {vf.pci} (VF {vf.vf_index} of PF {vf.pf_pci}{where})"


def _pf_label(pf: Pf) -> str:
    return f"PF {pf.pci} ({pf.netdev})" if pf.netdev else f"PF {pf.pci}"


# ---------------------------------------------------------------- decisions

def _vf_removed(session: Session, vf: Vf, cause: str) -> Handled | None:
    lease = _live_lease(session, vf)
    if lease is None and vf.state == VfState.UNUSABLE and vf.reason == REMOVED:
        return None  # seen already
    pool = _pool_of(session, vf.pf_pci, vf.vf_index)
    previous = vf.state
    vf.state, vf.reason = VfState.UNUSABLE, REMOVED
    message = f"{_vf_label(vf, pool)} {cause}: unusable"
    if lease is not None:
        finish_lease(session, lease, VfState.UNUSABLE, REMOVED, "lease.lost",
                     f"VF {vf.pci} {cause}", final_state=LeaseState.LOST)
        message += f"; lease {lease.id} of {lease.owner!r} lost"
    events.record(session, "vf.removed", pool=pool, pf=vf.pf_pci, vf=vf.pci,
                  lease_id=lease.id if lease is not None else None, cause=cause,
                  previous_state=previous)
    return Handled("vf.removed", message, lost_lease=lease.id if lease is not None else None)


def _pci_removed(session: Session, pci: str) -> list[Handled]:
    vf = Queries(session).vf_by_pci(pci)
    if vf is not None:
        handled = _vf_removed(session, vf, REMOVED)
        return [handled] if handled is not None else []
    pf = Queries(session).pf(pci)
    if pf is None:
        return []  # not vfpool's
    gone = [handled for vf in list(pf.vfs)
            if (handled := _vf_removed(session, vf, f"removed with its PF {pci}")) is not None]
    lost = sum(1 for handled in gone if handled.lost_lease is not None)
    events.record(session, "pf.removed", pool=_pool_of(session, pci), pf=pci,
                  netdev=pf.netdev, vfs_unusable=len(gone), leases_lost=lost)
    return [Handled("pf.removed", f"{_pf_label(pf)} removed: {len(gone)} VF(s) unusable, "
                                  f"{lost} lease(s) lost")]


def _pci_added(session: Session, pci: str) -> list[Handled]:
    vf = Queries(session).vf_by_pci(pci)
    if vf is not None:
        # Only a VF that udev took away comes back: "unusable" for any other reason (bound
        # elsewhere, a failed reset) still needs `vfpool reconcile` or an administrator.
        if vf.state != VfState.UNUSABLE or vf.reason != REMOVED or _live_lease(session, vf):
            return []
        pool = _pool_of(session, vf.pf_pci, vf.vf_index)
        vf.state, vf.reason = VfState.FREE, None
        events.record(session, "vf.returned", pool=pool, pf=vf.pf_pci, vf=vf.pci)
        return [Handled("vf.returned", f"{_vf_label(vf, pool)} is back: free")]
    pf = Queries(session).pf(pci)
    if pf is None:
        return []
    pf.last_seen = utcnow()
    events.record(session, "pf.added", pool=_pool_of(session, pci), pf=pci, netdev=pf.netdev)
    return [Handled("pf.added", f"{_pf_label(pf)} is back; its VFs return as they reappear")]


def _netdev_changed(session: Session, change: DeviceChange, links: Links) -> list[Handled]:
    if change.pci is None:
        return []
    pci = str(change.pci)
    pf = Queries(session).pf(pci)
    if pf is None:
        return []  # a VF's netdev, or a device vfpool does not manage
    if change.action == "remove":
        state = LinkState(ABSENT, None)
    elif change.action in ("add", "change", "move") and change.operstate is not None:
        state = LinkState(change.operstate, change.carrier)
    else:
        return []
    key = (pci, change.sys_name)
    previous = links.get(key)
    if previous == state:
        return []
    events.record(session, "pf.link", pool=_pool_of(session, pci), pf=pci,
                  netdev=change.sys_name, operstate=state.operstate, carrier=state.carrier,
                  previous_operstate=previous.operstate if previous else None,
                  previous_carrier=previous.carrier if previous else None)
    was = f"{previous} -> " if previous is not None else ""
    return [Handled("pf.link", f"PF {pci} ({change.sys_name}) link {was}{state}",
                    link=(key, state))]


def handle(session: Session, change: DeviceChange, links: Links) -> list[Handled]:
    """Apply one udev change to the store (in the caller's transaction); what was done.

    ``links`` is only read; remember ``Handled.link`` once the transaction committed.
    """
    if change.subsystem == "pci" and change.pci is not None \
            and change.sys_name == str(change.pci):
        if change.action == "remove":
            return _pci_removed(session, str(change.pci))
        if change.action == "add":
            return _pci_added(session, str(change.pci))
        return []
    if change.subsystem == "net":
        return _netdev_changed(session, change, links)
    return []


# ---------------------------------------------------------------- the loop

def initial_links(ctx: Context, pfs: Iterable[UdevPf]) -> dict[tuple[str, str], LinkState]:
    """The link state of every netdev of the PFs the store knows, as udev sees it now; the
    watcher notes changes from here on."""
    known = ctx.store.read(lambda session: Queries(session).known_pf_pcis())
    return {(str(pf.pci), netdev.name): LinkState(netdev.operstate, netdev.carrier)
            for pf in pfs if str(pf.pci) in known for netdev in pf.netdevs}


def apply(ctx: Context, change: DeviceChange, links: Links) -> list[Handled]:
    """``handle()`` in a transaction of its own, then remember the link states it noted."""
    handled = ctx.store.write(lambda session: handle(session, change, links),
                              operation=f"watch: {change.action} of {change.sys_name}")
    for item in handled:
        if item.link is not None:
            key, state = item.link
            links[key] = state
    return handled


def _ignore(_: object) -> None:
    pass


def watch(ctx: Context, source: ChangeSource, stop: threading.Event | Callable[[], bool], *,
          links: Links | None = None, once: bool = False, timeout: float | None = None,
          on_change: Callable[[Handled], None] = _ignore,
          on_error: Callable[[str], None] = _ignore,
          poll_interval: float = POLL_INTERVAL) -> int:
    """Handle changes from ``source`` until ``stop`` is set (or returns True), ``timeout``
    seconds have passed, or, with ``once``, one change was handled. Returns how many changes
    were handled.

    The source is polled ``poll_interval`` seconds at a time, so a stop request (SIGTERM) is
    noticed within that. A change that the store cannot take (locked for longer than its busy
    timeout, a vfpool error) is reported through ``on_error`` and the watch goes on; an error
    reading udev ends it, so that a supervisor restarts it with fresh state.
    """
    should_stop = stop.is_set if isinstance(stop, threading.Event) else stop
    memory: Links = {} if links is None else links
    deadline = None if timeout is None else time.monotonic() + timeout
    count = 0
    source.start()
    while not should_stop():
        wait = poll_interval
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                break
        change = source.poll(wait)
        if change is None:
            continue
        try:
            handled = apply(ctx, change, memory)
        except VfpoolError as exc:
            on_error(f"{change.action} of {change.subsystem} device {change.sys_name} was not "
                     f"recorded: {exc}")
            continue
        for item in handled:
            on_change(item)
        count += len(handled)
        if once and handled:
            break
    return count
