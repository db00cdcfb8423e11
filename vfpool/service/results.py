"""What the pool, PF and lease services return: frozen, typed dataclasses. The CLI renders them
(tables, and with ``--json`` the document their ``document()`` gives), and the Python API
(``vfpool.api``) hands them out as they are.

``document()`` is the JSON document the CLI prints, with the keys, their order and their
values that DESIGN.md gives and tests/data/golden pins; state fields are the StrEnums of
``vfpool.store.states``, which JSON sees as their plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vfpool.model.pool import PfSelector, VfDefaults

# The lease results live in a module of their own, which the lease path imports alone (a
# cold `vfpool lease acquire` spent 30 ms creating the dataclasses of this one); they are
# named here too, so that this stays the index of every result.
from vfpool.service.lease_results import LeaseAcquired as LeaseAcquired
from vfpool.service.lease_results import LeaseDetail as LeaseDetail
from vfpool.service.lease_results import LeaseInfo as LeaseInfo
from vfpool.service.lease_results import LeasePf as LeasePf
from vfpool.service.lease_results import LeasePreview as LeasePreview
from vfpool.service.lease_results import LeaseVf as LeaseVf
from vfpool.store.states import Method, Mode, PoolState, VfState

# ---------------------------------------------------------------- pools

@dataclass(frozen=True)
class VfCounts:
    """A pool's VFs by state, and their total; all zero for an inactive pool."""

    total: int = 0
    free: int = 0
    leased: int = 0
    reserved: int = 0
    unusable: int = 0

    @classmethod
    def of(cls, counts: Mapping[VfState, int]) -> VfCounts:
        """From the number of VFs in each state (a state left out has none)."""
        return cls(total=sum(counts.values()),
                   **{state.value: counts.get(state, 0) for state in VfState})

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, **{state.value: getattr(self, state.value)
                                        for state in VfState}}


@dataclass(frozen=True)
class PoolMember:
    """One PF of a pool, as the host shows it (or as the store last saw it, when it is gone
    from the host: then ``numvfs`` is None)."""

    pci: str
    netdev: str | None
    driver: str | None
    numvfs: int | None
    totalvfs: int | None
    range: str | None  # the pool's VF index range on this PF, "START-END"; None for all
    method: Method  # resolved: sysfs or module-param

    def document(self) -> dict[str, Any]:
        return {"pci": self.pci, "netdev": self.netdev, "driver": self.driver,
                "numvfs": self.numvfs, "totalvfs": self.totalvfs, "range": self.range,
                "method": self.method}


@dataclass(frozen=True, kw_only=True)
class PoolInfo:
    """A pool (`pool show`, `pool list`, `pool define`, `pool autostart`)."""

    name: str
    state: PoolState
    autostart: bool
    method: Method  # as defined: auto, sysfs or module-param
    mode: Mode
    pfs: tuple[PoolMember, ...]
    vfs: VfCounts
    defaults: VfDefaults
    vfs_per_pf: int
    needs_start: bool  # active, but a PF no longer has the VFs the pool needs (a reboot)
    # Only a pool that chooses its PFs at start has selectors; ``pfs`` are those chosen.
    select: tuple[PfSelector, ...] = ()

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "autostart": self.autostart,
            "method": self.method,
            "mode": self.mode,
            "pfs": [pf.document() for pf in self.pfs],
            "vfs": self.vfs.as_dict(),
            "defaults": self.defaults.as_dict(),
            "vfs_per_pf": self.vfs_per_pf,
            "needs_start": self.needs_start,
            **({"select": [str(selector) for selector in self.select]} if self.select
               else {}),
        }


@dataclass(frozen=True, kw_only=True)
class PoolChanged(PoolInfo):
    """A pool after its PFs were brought to its definition (`pool start`, `pool resize` of an
    active pool)."""

    changed: tuple[str, ...]  # the PFs whose VFs were resized or whose driver was reloaded
    lost: tuple[int, ...]  # leases whose VF --allow-disruption reset
    # One per PF whose link did not come back after sizing; the key is there only then.
    warnings: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        return {**super().document(), "changed": list(self.changed), "lost": list(self.lost),
                **({"warnings": list(self.warnings)} if self.warnings else {})}


@dataclass(frozen=True, kw_only=True)
class PoolStarted(PoolChanged):
    """`pool start`: ``already_active`` when the pool was active with its PFs in place, and
    nothing was done (its document then has no ``changed`` and ``lost``)."""

    already_active: bool

    def document(self) -> dict[str, Any]:
        if self.already_active:
            return {**PoolInfo.document(self), "already_active": True}
        return {**super().document(), "already_active": False}


@dataclass(frozen=True, kw_only=True)
class PoolDestroyed(PoolInfo):
    """`pool destroy`: the pool, now inactive, and the leases the destroy ended."""

    released: tuple[int, ...]  # released by --force
    lost: tuple[int, ...]  # leases of other pools whose VF a module reload reset

    def document(self) -> dict[str, Any]:
        return {**super().document(), "released": list(self.released),
                "lost": list(self.lost)}


class AutostartOutcome(StrEnum):
    STARTED = "started"
    ALREADY_ACTIVE = "already active"
    FAILED = "failed"


@dataclass(frozen=True)
class AutostartResult:
    """One pool of `pool start --autostarted`."""

    name: str
    result: AutostartOutcome
    error: str | None = None  # the error's message, when it failed
    exit_code: int | None = None  # the exit code its error maps to, when it failed

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "error": self.error,
                **({"exit_code": self.exit_code} if self.result == AutostartOutcome.FAILED
                   else {})}


# ---------------------------------------------------------------- PFs

@dataclass(frozen=True, kw_only=True)
class PfInfo:
    """An SR-IOV capable PF (`pf list`)."""

    pci: str
    netdev: str | None  # the first port's; a two-port PF (mlx4) has both in ``netdevs``
    driver: str | None
    vendor: str  # PCI ids, four hex digits
    device: str
    model: str | None
    totalvfs: int
    numvfs: int
    numa_node: int | None
    link: str | None  # the first port's operstate
    pool: str | None  # the pools using it, comma-separated (a PF split by VF ranges)
    netdevs: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {"pci": self.pci, "netdev": self.netdev, "driver": self.driver,
                "vendor": self.vendor, "device": self.device, "model": self.model,
                "totalvfs": self.totalvfs, "numvfs": self.numvfs,
                "numa_node": self.numa_node, "link": self.link, "pool": self.pool,
                "netdevs": list(self.netdevs)}


@dataclass(frozen=True)
class PfVf:
    """One VF of a PF, as the host has it."""

    index: int
    pci: str
    netdev: str | None
    driver: str | None
    mac: str | None

    def document(self) -> dict[str, Any]:
        return {"index": self.index, "pci": self.pci, "netdev": self.netdev,
                "driver": self.driver, "mac": self.mac}


@dataclass(frozen=True, kw_only=True)
class PfDetail(PfInfo):
    """One PF with its SR-IOV geometry and VFs (`pf show`)."""

    vf_device: str | None
    offset: int
    stride: int
    drivers_autoprobe: bool
    vfs: tuple[PfVf, ...]

    def document(self) -> dict[str, Any]:
        return {**super().document(), "vf_device": self.vf_device, "offset": self.offset,
                "stride": self.stride, "drivers_autoprobe": self.drivers_autoprobe,
                "vfs": [vf.document() for vf in self.vfs]}


__all__ = ["AutostartOutcome", "AutostartResult", "PfDetail", "PfInfo", "PfVf", "PoolChanged",
           "PoolDestroyed", "PoolInfo", "PoolMember", "PoolStarted", "VfCounts"]


# ---------------------------------------------------------------- reconcile

@dataclass(frozen=True, kw_only=True)
class Finding:
    """One disagreement reconcile found between the store and the host, and what it did (or,
    in a dry run, would do). What it concerns: a pool's PF (``pool``, ``pf``), a pool's VF
    (``pool``, ``vf``) or a lease (``lease``, ``vf``, and ``owner`` when it acted on it)."""

    problem: str
    action: str
    pool: str | None = None
    pf: str | None = None
    lease: int | None = None
    vf: str | None = None
    owner: str | None = None
    diff: dict[str, dict[str, object]] | None = None  # drift: field -> desired, current
    result: str | None = None  # what came of the action; None in a dry run

    def document(self) -> dict[str, Any]:
        """The keys it has, in the order of `reconcile --json`."""
        return {key: value for key, value in (
            ("pool", self.pool), ("pf", self.pf), ("lease", self.lease), ("vf", self.vf),
            ("owner", self.owner), ("problem", self.problem), ("action", self.action),
            ("diff", self.diff), ("result", self.result)) if value is not None}


@dataclass(frozen=True)
class ReconcileResult:
    """What `vfpool reconcile` found and did; no findings: the store and host agree."""

    dry_run: bool
    findings: tuple[Finding, ...]

    def document(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run,
                "findings": [finding.document() for finding in self.findings]}


# ---------------------------------------------------------------- vm

@dataclass(frozen=True)
class Hotplugged:
    """A lease hot-added to a running QEMU (`vm attach`)."""

    lease: int
    device_id: str  # QEMU's id of the device, which `vm detach` removes
    mode: Mode
    macvtap: str | None  # the macvtap vfpool made for it (macvtap mode)

    def document(self) -> dict[str, Any]:
        return {"lease": self.lease, "device_id": self.device_id, "mode": self.mode,
                "macvtap": self.macvtap}


@dataclass(frozen=True)
class Unplugged:
    """A lease hot-removed from a running QEMU (`vm detach`)."""

    lease: int
    device_id: str
    mode: Mode

    def document(self) -> dict[str, Any]:
        return {"lease": self.lease, "device_id": self.device_id, "mode": self.mode}
