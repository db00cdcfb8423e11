"""Writing a pool's VF rows in bulk, for `pool start`'s inventory.

The ORM's unit of work spent most of the inventory's time on 1,024 new ``Vf`` objects (state
tracking, cascades, one flush per PF). ``add_free_vfs`` writes the same rows with one Core
INSERT per PF, executed for many rows at once on the DBAPI cursor. It bypasses
``before_flush``, so it writes the host each row belongs to itself: the session's host, as
store/scope.py stamps new rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.orm import Session

from vfpool.store import tables
from vfpool.store.direct import run_many
from vfpool.store.scope import writing_host
from vfpool.store.states import VfState
from vfpool.store.types import utcnow

# A Core INSERT, run on the DBAPI cursor (store/direct.py): SQLAlchemy's executemany
# handles each row's parameters in Python, which cost as much as the database's work.
_INSERT = insert(tables.vfs)
_COLUMNS = ("host_id", "pf_pci", "index", "pci", "netdev", "state", "reason", "updated_at")


def add_free_vfs(session: Session, pf_pci: str,
                 vfs: Sequence[tuple[int, str, str | None]]) -> None:
    """Insert free VF rows of PF ``pf_pci``, one per (index, PCI address, netdev), stamped
    with the session's host; rows the session holds pending are flushed first."""
    if not vfs:
        return
    session.flush()
    host_id = writing_host(session)
    now = utcnow()
    run_many(session.connection(), _INSERT, [
        {"host_id": host_id, "pf_pci": pf_pci, "index": index, "pci": pci, "netdev": netdev,
         "state": VfState.FREE, "reason": None, "updated_at": now}
        for index, pci, netdev in vfs], _COLUMNS)
