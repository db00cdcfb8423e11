"""Plans: pure decisions from one host snapshot and the store's state, in the manner of
nmstate. Nothing here reads or writes the host or the store; ``service/`` gathers the inputs,
applies the plan, reads back once and verifies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from vfpool.errors import Conflict
from vfpool.model.drivers import DriverInfo, module_options
from vfpool.model.pci import PciAddress
from vfpool.model.pool import VfRange, used_indices
from vfpool.model.snapshot import PfSnapshot, VfSnapshot
from vfpool.store.states import LiveLease, Method, Mode, VfState


@dataclass(frozen=True)
class PfUse:
    """One pool's membership of a PF, as the store has it."""

    pool: str
    pool_id: int
    active: bool
    mode: Mode
    method: Method
    vf_range: VfRange | None
    vfs: int

    @property
    def indices(self) -> range:
        return used_indices(self.vf_range, self.vfs)

    @property
    def needs_netdevs(self) -> bool:
        return self.mode != Mode.VFIO


def wanted_count(uses: Iterable[PfUse]) -> int:
    """The PF's VF count: what every pool defined on it uses, active or not.

    Sizing a shared PF for all its pools at the first start means the others start without
    another N→0→M, which would take the first pool's VFs away.
    """
    return max((use.indices.stop for use in uses), default=0)


def wanted_autoprobe(uses: Iterable[PfUse]) -> bool:
    """sriov_drivers_autoprobe for a PF: on when any pool on it hands out netdevs (macvtap,
    netdev), so that new VFs come with their net driver; off for vfio-only PFs, whose VFs stay
    unbound until a lease binds them to vfio-pci."""
    return any(use.needs_netdevs for use in uses)


def owners(leases: Iterable[LiveLease]) -> str:
    return ", ".join(sorted({lease.owner for lease in leases}))


def netdevs_missing(pf: PfSnapshot, use: PfUse, leased: Iterable[str] = ()) -> list[VfSnapshot]:
    """The VFs of ``use``'s range that lack a netdev its mode needs (leased VFs excluded:
    their lease decides their driver)."""
    if not use.needs_netdevs:
        return []
    skip = set(leased)
    return [vf for vf in pf.vfs if vf.index in use.indices and not vf.netdevs
            and str(vf.pci) not in skip]


def in_place(pf: PfSnapshot, wanted: int, use: PfUse, leased: Iterable[str] = ()) -> bool:
    """The PF has exactly the wanted VFs, each present, with netdevs where ``use`` needs."""
    return (pf.numvfs == wanted and len(pf.vfs) == wanted
            and not netdevs_missing(pf, use, leased))


def in_place_or_more(pf: PfSnapshot | None, wanted: int) -> bool:
    """What an active pool needs to be usable: at least its VFs, all present."""
    return pf is not None and pf.numvfs >= wanted and len(pf.vfs) == pf.numvfs


@dataclass(frozen=True)
class SysfsStep:
    """What ``pool start`` does to one sysfs-sized PF."""

    pf: PfSnapshot
    wanted: int
    autoprobe: bool | None  # the value to write first, or None to leave it
    resize: bool  # go N -> 0 -> wanted
    probe: tuple[PciAddress, ...] = ()  # VFs to offer to their net driver
    resets: tuple[LiveLease, ...] = ()  # leases whose VF the resize resets (disruption)

    @property
    def changes(self) -> bool:
        return self.resize or self.autoprobe is not None or bool(self.probe)


def plan_sysfs(pf: PfSnapshot, uses: Sequence[PfUse], starting: PfUse,
               leases: Sequence[LiveLease], *, allow_disruption: bool) -> SysfsStep:
    """Bring one PF to what every pool defined on it needs, for the start of ``starting``.

    A PF already at its count is never taken through 0 VFs: VFs that only lack the net driver
    the starting pool's mode needs are probed one by one, so pools that split a PF between
    ``vfio`` and ``macvtap`` start in either order.
    """
    wanted = wanted_count(uses)
    autoprobe = wanted_autoprobe(uses)
    leased = [lease.vf_pci for lease in leases]
    if in_place(pf, wanted, starting, leased):
        return SysfsStep(pf, wanted, None, False)
    if pf.numvfs == wanted and len(pf.vfs) == wanted:
        # The count is right; only netdevs are missing: offer those VFs to their driver.
        missing = netdevs_missing(pf, starting, leased)
        return SysfsStep(pf, wanted, True if not pf.drivers_autoprobe else None, False,
                         probe=tuple(vf.pci for vf in missing))
    resets: tuple[LiveLease, ...] = ()
    if pf.numvfs:
        others = [use.pool for use in uses if use.active and use.pool_id != starting.pool_id]
        if others:
            raise Conflict(f"PF {pf.label} must go through 0 VFs to reach {wanted}, which "
                           f"would remove the VFs of active pool {others[0]!r}; destroy it "
                           "first")
        if leases and not allow_disruption:
            raise Conflict(f"PF {pf.label} must go through 0 VFs to reach {wanted}, which "
                           f"would take away leased VFs (owners: {owners(leases)}); release "
                           "them first, or pass --allow-disruption to reset them (their leases "
                           "become lost)")
        resets = tuple(leases)
    return SysfsStep(pf, wanted, autoprobe if pf.drivers_autoprobe != autoprobe else None,
                     True, resets=resets)


@dataclass(frozen=True)
class ModuleStep:
    """A driver reload with a new VF count for every port it serves."""

    info: DriverInfo
    count: int
    options: str
    ports: tuple[PfSnapshot, ...]
    autoprobe: tuple[PfSnapshot, ...]  # ports whose sriov_drivers_autoprobe to flip first
    netdevs: bool
    resets: tuple[LiveLease, ...] = ()


def plan_module(info: DriverInfo, ports: Sequence[PfSnapshot], pool_pfs: Sequence[str],
                count: int, starting: PfUse, uses_by_pf: Mapping[str, Sequence[PfUse]],
                leases: Sequence[LiveLease], *, allow_disruption: bool,
                emptying: bool = False) -> ModuleStep | None:
    """Reload ``info``'s module so that every port has ``count`` VFs; None when the pool's
    PFs already have them.

    Refused when the reload would change the count an active pool on another port relies on,
    and (unless ``allow_disruption``) when any port of the driver is up but outside an active
    pool, or has leased VFs: a reload takes every port of the driver down.
    """
    netdevs = starting.needs_netdevs
    mine = set(pool_pfs)
    if not emptying and all(in_place(pf, count, starting) for pf in ports
                            if str(pf.pci) in mine):
        return None
    for pf in ports:
        for use in uses_by_pf.get(str(pf.pci), ()):
            if use.pool_id == starting.pool_id or not use.active:
                continue
            needed = use.indices.stop
            if needed != count:
                raise Conflict(f"reloading {info.name} would re-create PF {pf.label} with "
                               f"{count} VFs, but active pool {use.pool!r} needs {needed} "
                               "there; destroy it first")
    controlled = {pci for pci, uses in uses_by_pf.items()
                  if any(use.active or use.pool_id == starting.pool_id for use in uses)}
    exposed = [netdev.name for pf in ports if str(pf.pci) not in controlled
               for netdev in pf.netdevs if netdev.operstate == "up"]
    driver_leases = [lease for lease in leases
                     if lease.pf_pci in {str(pf.pci) for pf in ports}]
    if not allow_disruption:
        problems = []
        if exposed:
            problems.append(f"interfaces {', '.join(exposed)} are up and not in an active "
                            "vfpool pool")
        if driver_leases:
            problems.append(f"VFs {', '.join(lease.vf_pci for lease in driver_leases)} are "
                            f"leased (owners: {owners(driver_leases)})")
        if problems:
            raise Conflict(f"reloading {info.name} takes down every port it serves: "
                           f"{'; '.join(problems)}; pass --allow-disruption to reload anyway")
    flip = tuple(pf for pf in ports
                 if pf.drivers_autoprobe != netdevs and info.param_kind == "scalar")
    return ModuleStep(info, count, module_options(info, count, probe=netdevs), tuple(ports),
                      flip, netdevs, tuple(driver_leases))


@dataclass(frozen=True)
class InventoryPlan:
    """What to change so that the store's VF rows of one pool's range match the host (see
    ``plan_inventory``): present VFs by their snapshot, gone ones by index."""

    added: tuple[VfSnapshot, ...] = ()  # no row yet: a free one
    seen: tuple[VfSnapshot, ...] = ()  # a row: its address and netdev as the host has them
    back: tuple[VfSnapshot, ...] = ()  # a row unusable only because the VF was gone: free
    vanished: tuple[int, ...] = ()  # gone while leased or reserved: the row turns unusable
    deleted: tuple[int, ...] = ()  # gone: the row goes


def plan_inventory(pf: PfSnapshot, indices: range, rows: Mapping[int, tuple[str, str | None]],
                   held: Iterable[int]) -> InventoryPlan:
    """The store's VF rows of one pool's range against the host, at ``pool start``.

    ``rows``: index -> (state, reason) of the rows the membership claims; ``held``: indices
    whose VF a live lease names. Present VFs are added or updated (and a VF that was only
    missing comes back free, unless a lease holds it); rows whose VF is gone are deleted, or
    marked unusable while a lease holds them. Each list is by index.
    """
    present = {vf.index: vf for vf in pf.vfs if vf.index in indices}
    live = set(held)
    gone = [index for index in sorted(rows) if index not in present]
    added, seen, back = [], [], []
    for index, vf in sorted(present.items()):
        known = rows.get(index)
        if known is None:
            added.append(vf)
        elif only_absent(*known) and index not in live:
            back.append(vf)
        else:
            seen.append(vf)
    return InventoryPlan(
        added=tuple(added), seen=tuple(seen), back=tuple(back),
        vanished=tuple(index for index in gone if rows[index][0] in HELD_VF_STATES),
        deleted=tuple(index for index in gone if rows[index][0] not in HELD_VF_STATES))


# Reasons under which a VF is unusable only because it was not there; it comes back when seen.
ABSENT_REASONS = ("missing on host", "removed")
# A VF row in these states has a live lease: gone from the host, it turns unusable.
HELD_VF_STATES = (VfState.LEASED, VfState.RESERVED)


def only_absent(state: str, reason: str | None) -> bool:
    """The VF row is unusable only because its VF was not on the host."""
    return state == VfState.UNUSABLE and reason in ABSENT_REASONS


@dataclass(frozen=True)
class VfRow:
    """A VF row of the store, as reconcile compares it with the host."""

    index: int
    pci: str
    state: str
    reason: str | None
    lease: int | None  # the live lease that names it


@dataclass(frozen=True)
class Repair:
    """One difference between the store and the host that reconcile reports, and repairs
    unless it is a dry run (``short`` is only reported: `pool start` resizes)."""

    kind: Literal["missing", "back", "added", "short"]
    pool: str
    pf: str
    index: int | None = None
    vf: str | None = None
    netdev: str | None = None
    lease: int | None = None
    numvfs: int | None = None
    needed: int | None = None


def plan_repairs(pool: str, pf_pci: str, indices: range, pf: PfSnapshot | None,
                 rows: Mapping[int, VfRow]) -> list[Repair]:
    """The store's VFs of one pool's range against the host's: VFs the host lost (their
    leases are lost), VFs that came back, VFs the store never recorded, and a PF with too
    few VFs for the pool."""
    repairs: list[Repair] = []
    on_host = {vf.index: vf for vf in (pf.vfs if pf else ()) if vf.index in indices}
    if pf is not None and pf.numvfs < indices.stop:
        repairs.append(Repair("short", pool, pf_pci, numvfs=pf.numvfs, needed=indices.stop))
    for index, row in sorted(rows.items()):
        vf = on_host.get(index)
        absent = only_absent(row.state, row.reason)
        if vf is None and not absent:
            repairs.append(Repair("missing", pool, pf_pci, index, row.pci, lease=row.lease))
        elif vf is not None and absent and row.lease is None:
            repairs.append(Repair("back", pool, pf_pci, index, row.pci, vf.netdev))
    for index, vf in sorted(on_host.items()):
        if index not in rows:
            repairs.append(Repair("added", pool, pf_pci, index, str(vf.pci), vf.netdev))
    return repairs
