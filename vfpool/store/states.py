"""The store's vocabulary: the states and kinds its rows hold, and the one row shape the
model plans with (a live lease).

Pure Python, without SQLAlchemy, so that model/ and the CLI can use the same names cheaply;
the columns of store/models.py hold exactly these values (their CHECK constraints list them).
A ``StrEnum`` member is its string, so JSON, TOML and SQL see plain text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class PoolState(StrEnum):
    INACTIVE = "inactive"
    ACTIVE = "active"


class VfState(StrEnum):
    FREE = "free"
    LEASED = "leased"
    RESERVED = "reserved"
    UNUSABLE = "unusable"


class LeaseState(StrEnum):
    RESERVED = "reserved"
    ACTIVE = "active"
    RELEASED = "released"
    STALE = "stale"
    LOST = "lost"


# A lease holds its VF in these states; the partial unique index allows one per VF.
LIVE_LEASE_STATES = (LeaseState.RESERVED, LeaseState.ACTIVE)


class Method(StrEnum):
    """How a pool sizes its PFs."""

    AUTO = "auto"
    SYSFS = "sysfs"
    MODULE_PARAM = "module-param"


class Mode(StrEnum):
    """How a leased VF reaches its guest."""

    VFIO = "vfio"
    MACVTAP = "macvtap"
    NETDEV = "netdev"


class LinkState(StrEnum):
    """A VF's link: following the PF's, forced up, or forced down."""

    AUTO = "auto"
    ENABLE = "enable"
    DISABLE = "disable"


def values(kind: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in kind)


class LiveLease(NamedTuple):
    """A reserved or active lease, as far as sizing decisions need it (store/pool_rows.py
    reads it; model/plan.py plans with it)."""

    id: int
    pool: str
    owner: str
    pf_pci: str
    vf_pci: str
    vf_index: int
