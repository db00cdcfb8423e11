"""The audit log: one `events` row for every state change, and the queries that read it
(`vfpool events`, and the newest events in `report`).

The lease path writes its events as rows (``entry``) on the Core tables; the functions that
work on an ORM session import the ``Event`` class when they run, so that a lease command
never builds the ORM's classes."""

from __future__ import annotations

import functools
import getpass
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from vfpool.errors import InvalidInput
from vfpool.model.pci import PciAddress
from vfpool.service.context import Context
from vfpool.store import utcnow

if TYPE_CHECKING:
    from vfpool.store.models import Event


def current_actor() -> str:
    """Who is acting: the sudo caller when there is one, with the process id."""
    return _actor(os.getpid(), os.environ.get("SUDO_USER"), os.geteuid())


@functools.lru_cache(maxsize=8)
def _actor(pid: int, sudo_user: str | None, euid: int) -> str:
    # getpass.getuser() reads four variables and the password database: once per process
    # (and per caller and user), not once per event.
    try:
        user = sudo_user or getpass.getuser()
    except (KeyError, OSError):
        user = str(euid)
    return f"{user}[{pid}]"


def entry(action: str, *, pool: str | None = None, pf: str | None = None,
          vf: str | None = None, lease_id: int | None = None, **detail: Any) -> dict[str, Any]:
    """The columns of one event (without its host and time)."""
    return {"actor": current_actor(), "action": action, "pool": pool, "pf": pf, "vf": vf,
            "lease_id": lease_id, "detail": detail or None}


def record(session: Session, action: str, *, pool: str | None = None, pf: str | None = None,
           vf: str | None = None, lease_id: int | None = None, **detail: Any) -> Event:
    from vfpool.store.models import Event

    event = Event(**entry(action, pool=pool, pf=pf, vf=vf, lease_id=lease_id, **detail))
    session.add(event)
    return event


# ---------------------------------------------------------------- reading the log

@dataclass(frozen=True)
class EventRow:
    id: int
    at: datetime
    actor: str | None
    action: str
    pool: str | None
    pf: str | None
    vf: str | None
    lease_id: int | None
    detail: dict[str, Any] | None

    def document(self) -> dict[str, Any]:
        """The JSON object of one event (the keys of `report`'s events)."""
        return {"id": self.id, "at": self.at.astimezone(UTC).isoformat(), "actor": self.actor,
                "action": self.action, "pool": self.pool, "pf": self.pf, "vf": self.vf,
                "lease_id": self.lease_id, "detail": self.detail}


@dataclass(frozen=True)
class EventFilter:
    """What `vfpool events` selects; every field given must match (None: any)."""

    pool: str | None = None
    pf: str | None = None  # a PCI address
    lease: int | None = None
    owner: str | None = None  # the owner of the event's lease
    action: str | None = None
    since: datetime | None = None
    after_id: int | None = None  # only events written after this one (--follow)

    def statement(self) -> Select[Any]:
        from vfpool.store.models import Event, Lease

        query = select(Event.id, Event.at, Event.actor, Event.action, Event.pool, Event.pf,
                       Event.vf, Event.lease_id, Event.detail)
        if self.pool is not None:
            query = query.where(Event.pool == self.pool)
        if self.pf is not None:
            query = query.where(Event.pf == self.pf)
        if self.lease is not None:
            query = query.where(Event.lease_id == self.lease)
        if self.owner is not None:
            query = query.where(Event.lease_id.in_(select(Lease.id).where(
                Lease.owner == self.owner)))
        if self.action is not None:
            query = query.where(Event.action == self.action)
        if self.since is not None:
            query = query.where(Event.at >= self.since)
        if self.after_id is not None:
            query = query.where(Event.id > self.after_id)
        return query


def read_events(session: Session, where: EventFilter = EventFilter(), *,
                limit: int | None = None, oldest_first: bool = False) -> list[EventRow]:
    """This host's events that match, newest first (or oldest first), at most ``limit`` of
    them: the newest ``limit`` either way."""
    from vfpool.store.models import Event

    query = where.statement().order_by(Event.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = [EventRow(*row) for row in session.execute(query)]
    return rows[::-1] if oldest_first else rows


def list_events(ctx: Context, where: EventFilter = EventFilter(), *, limit: int | None = None,
                oldest_first: bool = False) -> list[EventRow]:
    return ctx.store.read(lambda session: read_events(session, where, limit=limit,
                                                      oldest_first=oldest_first))


def make_filter(ctx: Context, *, pool: str | None = None, pf: str | None = None,
                lease: int | None = None, owner: str | None = None, action: str | None = None,
                since: datetime | str | None = None) -> EventFilter:
    """The filter of `vfpool events` and ``Host.events``: ``pf`` by address or netdev name,
    ``since`` as a datetime, an ISO 8601 text or an age (``2h``)."""
    return EventFilter(pool=pool, pf=resolve_pf(ctx, pf) if pf is not None else None,
                       lease=lease, owner=owner, action=action,
                       since=parse_since(since) if isinstance(since, str) else since)


def resolve_pf(ctx: Context, text: str) -> str:
    """A PF named by PCI address (kept as written, so a PF that is gone can still be asked
    about) or by netdev name (resolved on the host)."""
    if PciAddress.looks_like(text.strip()):
        return str(PciAddress.parse(text.strip()))
    return str(ctx.sysfs.resolve_pf(text).pci)


_AGO = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 time (a time without a zone is UTC), or an age such as
    ``90s``, ``15m``, ``2h``, ``1d`` or ``1w`` before now."""
    value = text.strip()
    ago = _AGO.fullmatch(value)
    if ago:
        return (now or utcnow()) - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"invalid --since {text!r}: give an ISO 8601 time "
                           "(2026-11-26T08:00:00Z) or an age such as 15m, 2h or 1d") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
