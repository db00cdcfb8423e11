"""The audit log: one `events` row for every state change."""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlalchemy.orm import Session

from vfpool.store import Event


def current_actor() -> str:
    """Who is acting: the sudo caller when there is one, with the process id."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = str(os.geteuid())
    return f"{user}[{os.getpid()}]"


def record(session: Session, action: str, *, pool: str | None = None, pf: str | None = None,
           vf: str | None = None, lease_id: int | None = None, **detail: Any) -> Event:
    event = Event(actor=current_actor(), action=action, pool=pool, pf=pf, vf=vf,
                  lease_id=lease_id, detail=detail or None)
    session.add(event)
    return event
