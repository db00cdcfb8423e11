"""The vfpool database: SQLAlchemy 2.0 models, engine and session setup, migrations on open,
and the queries (store/queries.py), each written once.

Importing this package costs nothing: its names are loaded from their modules on first use, so
``vfpool.store.states`` (the vocabulary) can be imported without SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vfpool.store.engine import (
        DB_FILENAME,
        DEFAULT_BUSY_TIMEOUT_MS,
        Store,
        default_db_url,
        migrations_dir,
        missing_sqlite_file,
        open_store,
    )
    from vfpool.store.models import Base, Event, Host, Lease, Pf, Pool, PoolPf, Vf
    from vfpool.store.states import (
        LIVE_LEASE_STATES,
        LeaseState,
        LinkState,
        Method,
        Mode,
        PoolState,
        VfState,
    )
    from vfpool.store.types import UtcDateTime, utcnow

_HOMES = {
    "vfpool.store.engine": ("DB_FILENAME", "DEFAULT_BUSY_TIMEOUT_MS", "Store", "default_db_url",
                            "migrations_dir", "missing_sqlite_file", "open_store"),
    "vfpool.store.models": ("Base", "Event", "Host", "Lease", "Pf", "Pool", "PoolPf", "Vf"),
    "vfpool.store.states": ("LIVE_LEASE_STATES", "LeaseState", "LinkState", "Method", "Mode",
                            "PoolState", "VfState"),
    "vfpool.store.types": ("UtcDateTime", "utcnow"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "DB_FILENAME",
    "DEFAULT_BUSY_TIMEOUT_MS",
    "LIVE_LEASE_STATES",
    "Base",
    "Event",
    "Host",
    "Lease",
    "LeaseState",
    "LinkState",
    "Method",
    "Mode",
    "Pf",
    "Pool",
    "PoolPf",
    "PoolState",
    "Store",
    "UtcDateTime",
    "Vf",
    "VfState",
    "default_db_url",
    "migrations_dir",
    "missing_sqlite_file",
    "open_store",
    "utcnow",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'vfpool.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
