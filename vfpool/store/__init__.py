"""The vfpool database: SQLAlchemy 2.0 models, engine and session setup, migrations on open."""

from vfpool.store.engine import (
    DB_FILENAME,
    DEFAULT_BUSY_TIMEOUT_MS,
    Store,
    default_db_url,
    migrations_dir,
    open_store,
)
from vfpool.store.models import (
    LEASE_STATES,
    LIVE_LEASE_STATES,
    POOL_METHODS,
    POOL_MODES,
    POOL_STATES,
    VF_STATES,
    Base,
    Event,
    Lease,
    Pf,
    Pool,
    PoolPf,
    Vf,
)
from vfpool.store.types import UtcDateTime, utcnow

__all__ = [
    "DB_FILENAME",
    "DEFAULT_BUSY_TIMEOUT_MS",
    "LEASE_STATES",
    "LIVE_LEASE_STATES",
    "POOL_METHODS",
    "POOL_MODES",
    "POOL_STATES",
    "VF_STATES",
    "Base",
    "Event",
    "Lease",
    "Pf",
    "Pool",
    "PoolPf",
    "Store",
    "UtcDateTime",
    "Vf",
    "default_db_url",
    "migrations_dir",
    "open_store",
    "utcnow",
]
