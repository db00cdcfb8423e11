"""What the lease services return: frozen, typed dataclasses, as in service/results.py (which
names them too). Kept apart so that the lease path, which VM tooling starts as a new process
all day, creates only these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vfpool.store.states import LeaseState, Mode


@dataclass(frozen=True)
class LeasePf:
    """A lease's PF: its address, and its netdev as the store last saw it."""

    pci: str
    netdev: str | None

    def document(self) -> dict[str, Any]:
        return {"pci": self.pci, "netdev": self.netdev}


@dataclass(frozen=True)
class LeaseVf:
    """A lease's VF: its index on the PF, its address, and its netdev (None for vfio)."""

    index: int
    pci: str
    netdev: str | None

    def document(self) -> dict[str, Any]:
        return {"index": self.index, "pci": self.pci, "netdev": self.netdev}


@dataclass(frozen=True, kw_only=True)
class LeaseInfo:
    """A lease (`lease list`, `lease release`). ``token`` is set only right after an acquire:
    the store keeps its hash alone."""

    id: int
    pool: str
    owner: str
    state: LeaseState
    mode: Mode
    mac: str | None
    vlan: int | None
    numa_node: int | None
    created_at: datetime
    pf: LeasePf
    vf: LeaseVf
    owner_pid: int | None
    released_at: datetime | None
    token: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pool": self.pool,
            "owner": self.owner,
            "token": self.token,
            "state": self.state,
            "mode": self.mode,
            "mac": self.mac,
            "vlan": self.vlan,
            "numa_node": self.numa_node,
            "created_at": self.created_at.isoformat(),
            "pf": self.pf.document(),
            "vf": self.vf.document(),
            "owner_pid": self.owner_pid,
            "released_at": self.released_at.isoformat() if self.released_at else None,
        }


@dataclass(frozen=True, kw_only=True)
class LeaseAcquired(LeaseInfo):
    """A lease just acquired (`lease acquire`): with its token, and whether its VF is on the
    NUMA node asked for (None when none was asked for)."""

    numa_met: bool | None

    def document(self) -> dict[str, Any]:
        return {**super().document(), "numa_met": self.numa_met}


@dataclass(frozen=True, kw_only=True)
class LeaseDetail(LeaseInfo):
    """A lease with what it saved and applied (`lease show`)."""

    saved_config: dict[str, Any] | None
    applied_config: dict[str, Any] | None
    boot_id: str

    def document(self) -> dict[str, Any]:
        return {**super().document(), "saved_config": self.saved_config,
                "applied_config": self.applied_config, "boot_id": self.boot_id}


@dataclass(frozen=True)
class LeasePreview:
    """A VF an acquire would choose now (`lease acquire --dry-run`)."""

    mode: Mode
    mac: str
    numa_node: int | None
    pf: LeasePf
    vf: LeaseVf

    def document(self) -> dict[str, Any]:
        return {"mode": self.mode, "mac": self.mac, "numa_node": self.numa_node,
                "pf": self.pf.document(), "vf": self.vf.document()}
