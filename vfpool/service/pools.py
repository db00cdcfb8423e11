"""The pool lifecycle, with libvirt's semantics: define, start, destroy, undefine, autostart,
resize. Every change reads the host back and verifies it, and writes an `events` row.

Each change that sizes PFs or rebinds their VFs runs as snapshot -> plan -> apply -> verify
under the exclusive locks of every PF it touches (for a module reload, every PF of the
driver), so no lease acquire or release runs on those PFs meanwhile. Store transactions are
short and never span host I/O: the state is read, the host changed, then the outcome written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from vfpool.errors import (
    Conflict,
    HostError,
    InvalidInput,
    NotFound,
    VerificationError,
    VfpoolError,
)
from vfpool.host import binding, sriov
from vfpool.model.drivers import DriverInfo, driver_info
from vfpool.model.pci import PciAddress
from vfpool.model.plan import (
    ModuleStep,
    PfUse,
    SysfsStep,
    in_place,
    in_place_or_more,
    netdevs_missing,
    plan_inventory,
    plan_module,
    plan_sysfs,
    wanted_count,
)
from vfpool.model.pool import (
    PfRef,
    PfSelector,
    PoolSpec,
    VfDefaults,
    VfRange,
    check_member,
    choice,
    claimed_range,
    from_toml,
    resolve_method,
    selected,
    to_toml,
    used_indices,
    validate_name,
)
from vfpool.model.snapshot import PfSnapshot
from vfpool.service import events
from vfpool.service import leases as lease_service
from vfpool.service.context import Context
from vfpool.service.leases import member_range as range_of
from vfpool.service.progress import Progress, quiet
from vfpool.service.results import (
    AutostartOutcome,
    AutostartResult,
    PoolChanged,
    PoolDestroyed,
    PoolInfo,
    PoolMember,
    PoolStarted,
    VfCounts,
)
from vfpool.store import Pool, PoolPf
from vfpool.store.direct import Transaction
from vfpool.store.leasing import LeaseRows
from vfpool.store.pool_rows import MemberRow, PfRow, PoolRow, PoolRows
from vfpool.store.pool_writes import PoolWrites, VfRow
from vfpool.store.queries import Queries
from vfpool.store.scope import rows_in, writing_host
from vfpool.store.states import LeaseState, LiveLease, Method, Mode, PoolState, VfState

DEFAULT_TIMEOUT = 30.0
# How long pool start and resize wait for a PF's carrier to come back after sizing took it
# down. Enabling or disabling SR-IOV makes igb close and reopen the port (igb_sriov_reinit() in
# igb/igb_main.c; ixgbe and i40e do alike, see vfpool/sim/profiles.py sizing_bounce), and the
# carrier returns when the driver's watchdog sees the link again: igb_watchdog_task() runs
# every 2 s (and at once on the link-change interrupt igb_up() raises), and 1000BASE-T
# autonegotiation takes up to about 3 s. 10 s covers both with room for a slow link partner,
# and bounds what a start adds when the link is really gone (it is then reported, not an error).
LINK_WAIT = 10.0
# PF drivers that refuse every VF rate while the PF has no link: igb_ndo_set_vf_bw() (EINVAL
# without STATUS.LU, igb/igb_main.c) and ixgbe_ndo_set_vf_bw() (EINVAL unless the link is up,
# ixgbe/ixgbe_sriov.c).
RATES_NEED_LINK = frozenset({"igb", "ixgbe"})
_log = logging.getLogger(__name__)
T = TypeVar("T")
Snapshots = Mapping[str, PfSnapshot | None]


# ---------------------------------------------------------------- reading pools

def _pool(session: Session, name: str) -> Pool:
    return Queries(session).pool(name)


def spec_of(pool: Pool) -> PoolSpec:
    return PoolSpec(
        name=pool.name,
        pfs=tuple(PfRef(member.pf_pci, range_of(member)) for member in pool.members),
        vfs=pool.vfs_per_pf,
        method=pool.method,
        mode=pool.mode,
        defaults=defaults_of(pool),
        autostart=pool.autostart,
        selectors=selectors_of(pool.selectors),
    ).with_pfs(() if pool.selectors else
               tuple(PfRef(member.pf_pci, range_of(member)) for member in pool.members))


def defaults_of(pool: Pool | PoolRow) -> VfDefaults:
    """The VF config a pool gives each VF it leases."""
    return VfDefaults(vlan=pool.vlan, qos=pool.qos, trust=pool.trust, spoofchk=pool.spoofchk,
                      min_tx_rate=pool.min_tx_rate, max_tx_rate=pool.max_tx_rate, mtu=pool.mtu,
                      link_state=pool.link_state)


def selectors_of(text: str | None) -> tuple[PfSelector, ...]:
    """A pool's stored selectors, one a line."""
    return tuple(PfSelector.parse(line) for line in (text or "").splitlines() if line)


def _snapshots(ctx: Context, pcis: Iterable[str]) -> dict[str, PfSnapshot | None]:
    """One read of each PF on the host (None when it is gone)."""
    found: dict[str, PfSnapshot | None] = {}
    for pci in pcis:
        try:
            found[pci] = ctx.sysfs.pf(PciAddress.parse(pci))
        except NotFound:
            found[pci] = None
    return found


def _uses_by_pf(pcis: Iterable[str], memberships: Iterable[MemberRow]
                ) -> dict[str, list[PfUse]]:
    """Each PF's uses (``memberships`` of those PFs, by pool name), every PF listed."""
    uses: dict[str, list[PfUse]] = {pci: [] for pci in pcis}
    for member in memberships:
        uses[member.pf_pci].append(PfUse(
            pool=member.pool, pool_id=member.pool_id, active=member.state == PoolState.ACTIVE,
            mode=member.mode, method=member.method, vf_range=range_of(member),
            vfs=member.vfs_per_pf))
    return uses


def _read_pools(ctx: Context, work: Callable[[PoolRows], T]) -> T:
    """``work`` in one read transaction of direct statements (store/pool_rows.py)."""
    return ctx.store.read_rows(lambda transaction, host_id: work(PoolRows(transaction,
                                                                          host_id)))


def _info(rows: PoolRows, pool: PoolRow, snapshots: Snapshots) -> PoolInfo:
    """A pool, its PFs as ``snapshots`` show them; a PF gone from the host, as the store last
    saw it."""
    members = rows.members(pool)
    pcis = [member.pf_pci for member in members]
    uses = _uses_by_pf(pcis, rows.memberships(pcis))
    stored = rows.pfs(pcis)
    active = pool.state == PoolState.ACTIVE
    pfs = []
    needs_start = False
    for member in members:
        host, seen = snapshots.get(member.pf_pci), stored[member.pf_pci]
        if active and not in_place_or_more(host, wanted_count(uses[member.pf_pci])):
            needs_start = True
        member_range = range_of(member)
        driver = host.driver if host else seen.driver
        pfs.append(PoolMember(
            pci=member.pf_pci,
            netdev=host.netdev if host else seen.netdev,
            driver=driver,
            numvfs=host.numvfs if host else None,
            totalvfs=host.totalvfs if host else seen.totalvfs,
            range=str(member_range) if member_range else None,
            method=resolve_method(pool.method, driver_info(driver)),
        ))
    return PoolInfo(
        name=pool.name,
        state=pool.state,
        autostart=pool.autostart,
        method=pool.method,
        mode=pool.mode,
        pfs=tuple(pfs),
        # An inactive pool has no VF to lease: all zero.
        vfs=VfCounts.of(rows.vf_counts(pool) if active else {}),
        defaults=defaults_of(pool),
        vfs_per_pf=pool.vfs_per_pf,
        needs_start=needs_start,
        select=selectors_of(pool.selectors),
    )


def _info_in(session: Session, name: str, snapshots: Snapshots) -> PoolInfo:
    """``_info`` of pool ``name`` as an ORM write transaction has just changed it."""
    with rows_in(session, PoolWrites) as rows:
        return _info(rows, rows.pool(name), snapshots)


def _fields(record: PoolInfo, kind: type[PoolInfo] = PoolInfo) -> dict[str, Any]:
    """The fields ``kind`` has of ``record``, to build a result that extends it."""
    return {field.name: getattr(record, field.name) for field in fields(kind)}


def _member_pcis(ctx: Context, name: str) -> list[str]:
    """The pool's PFs, in pool order."""
    return _read_pools(ctx, lambda rows: [member.pf_pci
                                          for member in rows.members(rows.pool(name))])


def info(ctx: Context, name: str) -> PoolInfo:
    snapshots = _snapshots(ctx, _member_pcis(ctx, name))
    return _read_pools(ctx, lambda rows: _info(rows, rows.pool(name), snapshots))


def list_pools(ctx: Context, *, include_inactive: bool = False) -> list[PoolInfo]:
    """Active pools, as `virsh net-list`; with ``include_inactive``, all of them."""
    pcis = _read_pools(ctx, lambda rows: sorted({
        member.pf_pci for pool in rows.pools(include_inactive=include_inactive)
        for member in rows.members(pool)}))
    snapshots = _snapshots(ctx, pcis)
    return _read_pools(ctx, lambda rows: [
        _info(rows, pool, snapshots) for pool in rows.pools(include_inactive=include_inactive)])


def dumpconfig(ctx: Context, name: str) -> str:
    return ctx.store.read(lambda s: to_toml(spec_of(_pool(s, name))))


# ---------------------------------------------------------------- define and undefine

def _record_pfs(rows: PoolWrites, host_id: int, seen: Iterable[PfSnapshot]) -> None:
    """The PFs' rows, added or brought up to what the host shows."""
    rows.record_pfs(host_id, [{
        "pci": str(pf.pci), "netdev": pf.netdev, "driver": pf.driver,
        "vendor": f"{pf.vendor:04x}", "device": f"{pf.device:04x}", "totalvfs": pf.totalvfs,
        "numa_node": pf.numa_node} for pf in seen])


def _record_pfs_in(session: Session, seen: Iterable[PfSnapshot]) -> None:
    """``_record_pfs`` in an ORM write transaction, on its host."""
    host_id = writing_host(session)
    assert host_id is not None, "PF rows are written by a host's store"
    with rows_in(session, PoolWrites) as rows:
        _record_pfs(rows, host_id, seen)


def _resolve_members(ctx: Context, spec: PoolSpec) -> list[tuple[PfRef, PfSnapshot]]:
    members = []
    seen: dict[str, PfRef] = {}
    for ref in spec.pfs:
        try:
            pf = ctx.sysfs.resolve_pf(ref.pf)
        except NotFound as exc:
            raise InvalidInput(f"invalid --pf {ref.pf!r}: {exc}") from None
        if str(pf.pci) in seen:
            raise InvalidInput(f"PF {pf.label} is listed twice ({seen[str(pf.pci)]} and {ref}); "
                               "give each PF once")
        seen[str(pf.pci)] = ref
        info_ = driver_info(pf.driver)
        check_member(spec, ref, pf, info_, resolve_method(spec.method, info_))
        members.append((PfRef(str(pf.pci), ref.range), pf))
    return members


def _check_overlaps(session: Session, members: list[tuple[PfRef, PfSnapshot]],
                    exclude_pool: int | None = None) -> None:
    for ref, pf in members:
        mine = claimed_range(ref.range, pf.totalvfs)
        for other, member in Queries(session).memberships([str(pf.pci)]):
            other_name = other.name
            if member.pool_id == exclude_pool:
                continue
            theirs = claimed_range(range_of(member), pf.totalvfs)
            if not mine.overlaps(theirs):
                continue
            if ref.range is None or range_of(member) is None:
                raise Conflict(f"PF {pf.label} is already in pool {other_name!r}")
            raise Conflict(f"VF range {ref.range} of PF {pf.label} overlaps range {theirs} of "
                           f"pool {other_name!r}")


def _check_module_params(session: Session, spec: PoolSpec,
                         members: list[tuple[PfRef, PfSnapshot]],
                         exclude_pool: int | None = None) -> None:
    """A scalar module parameter sizes every port of its driver alike: the pools that use it
    must agree on one count."""
    wanted: dict[str, tuple[int, str]] = {}
    for ref, pf in members:
        info_ = driver_info(pf.driver)
        if resolve_method(spec.method, info_) != Method.MODULE_PARAM:
            continue
        count = used_indices(ref.range, spec.vfs).stop
        earlier = wanted.setdefault(info_.name, (count, spec.name))
        if earlier[0] != count:
            raise Conflict(_param_conflict(info_, earlier, (count, spec.name)))
    if not wanted:
        return
    for pool, member, pf_row in Queries(session).memberships_with_driver():
        if pool.id == exclude_pool or pf_row.driver not in wanted:
            continue
        info_ = driver_info(pf_row.driver)
        if resolve_method(pool.method, info_) != Method.MODULE_PARAM:
            continue
        count = used_indices(range_of(member), pool.vfs_per_pf).stop
        if count != wanted[info_.name][0]:
            raise Conflict(_param_conflict(info_, (count, pool.name), wanted[info_.name]))


def _param_conflict(info_: DriverInfo, first: tuple[int, str], second: tuple[int, str]) -> str:
    return (f"driver {info_.name}'s {info_.module_param} parameter sizes every {info_.name} "
            f"port alike, but pool {first[1]!r} needs {first[0]} VFs per PF and pool "
            f"{second[1]!r} needs {second[0]}")


def define(ctx: Context, spec: PoolSpec) -> PoolInfo:
    """Validate a definition against the host and store it, inactive."""
    spec.validate()
    members = _resolve_members(ctx, spec)
    snapshots = {str(pf.pci): pf for _, pf in members}

    def store_it(session: Session) -> PoolInfo:
        if Queries(session).pool_exists(spec.name):
            raise Conflict(f"pool {spec.name!r} already exists")
        _check_overlaps(session, members)
        _check_module_params(session, spec, members)
        defaults = spec.defaults
        pool = Pool(name=spec.name, state=PoolState.INACTIVE, autostart=spec.autostart,
                    method=spec.method, mode=spec.mode, vfs_per_pf=spec.vfs,
                    vlan=defaults.vlan, qos=defaults.qos, trust=defaults.trust,
                    spoofchk=defaults.spoofchk, min_tx_rate=defaults.min_tx_rate,
                    max_tx_rate=defaults.max_tx_rate, mtu=defaults.mtu,
                    link_state=defaults.link_state,
                    selectors="\n".join(str(selector) for selector in spec.selectors) or None)
        _record_pfs_in(session, [pf for _, pf in members])
        for position, (ref, pf) in enumerate(members):
            pool.members.append(PoolPf(
                pf_pci=str(pf.pci), position=position,
                range_start=ref.range.start if ref.range else None,
                range_end=ref.range.end if ref.range else None))
        session.add(pool)
        resolved = spec.with_pfs(tuple(ref for ref, _ in members))
        events.record(session, "pool.define", pool=spec.name, definition=to_toml(resolved))
        return _info_in(session, spec.name, snapshots)

    return ctx.store.write(store_it, operation=f"pool define {spec.name}")


def undefine(ctx: Context, name: str) -> None:
    pcis = _member_pcis(ctx, name)

    def forget(session: Session) -> None:
        pool = _pool(session, name)
        if pool.state == PoolState.ACTIVE:
            raise Conflict(f"pool {name!r} is active; destroy it before undefining it")
        session.delete(pool)
        events.record(session, "pool.undefine", pool=name)

    # Exclusive, so that no start of this pool is half-way through when it goes.
    with ctx.locks.pfs(pcis, exclusive=True):
        ctx.store.write(forget, operation=f"pool undefine {name}")


def set_autostart(ctx: Context, name: str, enabled: bool) -> PoolInfo:
    snapshots = _snapshots(ctx, _member_pcis(ctx, name))

    def mark(session: Session) -> PoolInfo:
        pool = _pool(session, name)
        pool.autostart = enabled
        events.record(session, "pool.autostart", pool=name, enabled=enabled)
        return _info_in(session, name, snapshots)

    return ctx.store.write(mark, operation=f"pool autostart {name}")


# ---------------------------------------------------------------- the locked changes

@dataclass(frozen=True)
class _Member:
    pci: str
    vf_range: VfRange | None
    method: Method  # resolved: sysfs or module-param
    info: DriverInfo


@dataclass(frozen=True)
class _State:
    """What a start needs from the store, read in one transaction under the PF locks."""

    pool_id: int
    active: bool
    mode: Mode
    method: Method
    vfs: int
    members: tuple[tuple[str, VfRange | None], ...]
    uses: dict[str, list[PfUse]]
    leases: tuple[LiveLease, ...]

    def use_of(self, pci: str) -> PfUse:
        return next(use for use in self.uses[pci] if use.pool_id == self.pool_id)


def _lock_set(ctx: Context, name: str) -> tuple[list[str], set[str]]:
    """The PFs a change of pool ``name`` may touch: its own, and for a module-param PF every
    PF its driver serves (a reload takes them all down). Returns (members, lock set)."""
    def read(rows: PoolRows) -> tuple[list[str], dict[str, PfRow], Method]:
        pool = rows.pool(name)
        pcis = [member.pf_pci for member in rows.members(pool)]
        return pcis, rows.pfs(pcis), pool.method

    members, stored_pfs, method = _read_pools(ctx, read)
    locked = set(members)
    # Every PF of the host is read only for a module-param member: enumerating the PCI
    # devices (1,024 VFs among them) was a sixth of a 1024-VF start's own CPU.
    on_host: dict[str, str | None] | None = None
    for pci in members:
        try:
            driver = ctx.sysfs.pf_link(PciAddress.parse(pci)).driver
        except NotFound:  # gone from the host: the driver it had
            driver = stored_pfs[pci].driver
        if resolve_method(method, driver_info(driver)) == Method.MODULE_PARAM:
            if on_host is None:
                on_host = {str(pf.pci): pf.driver for pf in ctx.sysfs.pfs(with_vfs=False)}
            locked |= {other for other, other_driver in on_host.items()
                       if other_driver == driver}
    return members, locked


def _locked(ctx: Context, name: str, change: Callable[[set[str]], T]) -> T:
    """Run ``change(lock set)`` holding the exclusive locks of every PF it may touch."""
    for _ in range(3):
        _, locked = _lock_set(ctx, name)
        with ctx.locks.pfs(locked, exclusive=True):
            # The pool may have been redefined while this process waited for the locks.
            if set(_member_pcis(ctx, name)) <= locked:
                return change(locked)
    raise Conflict(f"pool {name!r} kept changing while this command waited for it; retry")


def _gather(ctx: Context, name: str, locked: set[str]) -> _State:
    def read(rows: PoolRows) -> _State:
        pool = rows.pool(name)
        pcis = sorted(locked)
        return _State(pool_id=pool.id, active=pool.state == PoolState.ACTIVE,
                      mode=pool.mode, method=pool.method, vfs=pool.vfs_per_pf,
                      members=tuple((m.pf_pci, range_of(m)) for m in rows.members(pool)),
                      uses=_uses_by_pf(pcis, rows.memberships(pcis)),
                      leases=tuple(rows.live_leases_on(pcis)))

    return _read_pools(ctx, read)


def _members(state: _State, snapshots: Snapshots, name: str) -> list[_Member]:
    found = []
    for pci, vf_range in state.members:
        pf = snapshots.get(pci)
        if pf is None:
            raise NotFound(f"PF {pci} of pool {name!r} is not on this host; was the card "
                           "removed?")
        info_ = driver_info(pf.driver)
        found.append(_Member(pci, vf_range, resolve_method(state.method, info_), info_))
    return found


def _needs_start(state: _State, snapshots: Snapshots) -> bool:
    return any(not in_place_or_more(snapshots.get(pci), wanted_count(state.uses[pci]))
               for pci, _ in state.members)


def _probe(ctx: Context, pf: PfSnapshot, vf_pci: PciAddress) -> None:
    """Offer one VF without a netdev to its net driver. A VF bound elsewhere (vfio-pci, after
    an earlier vfio pool), or bound without a netdev (a driver whose probe half failed), is
    unbound first and its override cleared, so that the kernel probes it afresh."""
    vf = next(vf for vf in pf.vfs if vf.pci == vf_pci)
    if vf.driver is not None:
        binding.bind(ctx.sysfs, vf_pci, None)
    binding.probe(ctx.sysfs, vf_pci)


def _apply_sysfs(ctx: Context, step: SysfsStep, info_: DriverInfo,
                 progress: Progress) -> bool:
    pf = step.pf
    if step.autoprobe is not None:
        # vfio hand-off wants VFs unbound; macvtap and netdev want their net driver's netdevs.
        sriov.write_autoprobe(ctx.sysfs, pf, step.autoprobe)
    if step.resize:
        if pf.numvfs:
            progress(f"PF {pf.label}: {pf.numvfs} -> 0 VFs")
            sriov.write_numvfs(ctx.sysfs, pf, 0)
        progress(f"PF {pf.label}: 0 -> {step.wanted} VFs")
        sriov.write_numvfs(ctx.sysfs, pf, step.wanted)
    for vf_pci in step.probe:
        progress(f"PF {pf.label}: binding VF {vf_pci} to {info_.vf_driver}")
        _probe(ctx, pf, vf_pci)
    return step.resize


def _apply_module(ctx: Context, step: ModuleStep, progress: Progress) -> None:
    """Write options to modprobe.d and reload the driver; restore the old file on failure."""
    module = step.info.name
    for pf in step.autoprobe:
        sriov.write_autoprobe(ctx.sysfs, pf, step.netdevs)
    root = ctx.sysfs.root
    previous = sriov.read_modprobe_conf(root, module)
    text = sriov.conf_text(module, step.options) if step.count else None
    sriov.write_modprobe_conf(root, module, text)
    progress(f"driver {module}: reloading with {step.options}")
    try:
        sriov.reload_module(ctx.sysfs, module)
    except HostError as exc:
        sriov.write_modprobe_conf(root, module, previous)
        try:  # bring the driver (and the host's other ports) back with the old options
            sriov.load_module(ctx.sysfs, module)
        except HostError as again:
            raise HostError(f"{exc}; reloading with the previous options failed too: {again}",
                            argv=exc.fields.get("argv")) from exc
        raise HostError(f"{exc}; restored the previous {sriov.modprobe_conf(root, module)} "
                        "and reloaded the driver with it", argv=exc.fields.get("argv")) from exc


def _verify(ctx: Context, state: _State, members: list[_Member], timeout: float) -> dict[
        str, PfSnapshot]:
    """The one read-back: wait (with a deadline) until each PF has its VFs, with netdevs in
    this pool's range where its mode needs them."""
    result = {}
    leased = [lease.vf_pci for lease in state.leases]
    for member in members:
        wanted = wanted_count(state.uses[member.pci])
        use = state.use_of(member.pci)
        def ready(pf: PfSnapshot, use: PfUse = use) -> bool:
            return not netdevs_missing(pf, use, leased)

        pf = sriov.wait_for_vfs(ctx.sysfs, PciAddress.parse(member.pci), wanted, ready=ready,
                                timeout=timeout)
        if not in_place(pf, wanted, use, leased):
            diff: dict[str, tuple[object, object]] = {}
            if pf.numvfs != wanted:
                diff["sriov_numvfs"] = (wanted, pf.numvfs)
            if len(pf.vfs) != wanted:
                diff["VFs present"] = (wanted, len(pf.vfs))
            missing = netdevs_missing(pf, use, leased)
            if missing:
                diff["VFs without a netdev"] = (0, len(missing))
            raise VerificationError(f"PF {pf.label} (after {timeout:g} s)", diff)
        result[member.pci] = pf
    return result


def _inventory(rows: PoolWrites, pool: PoolRow, members: list[_Member],
               verified: Mapping[str, PfSnapshot]) -> None:
    """Record the pool's VFs: new ones free, known ones updated, vanished ones unusable."""
    _record_pfs(rows, pool.host_id, [verified[member.pci] for member in members])
    claims = {member.pci: claimed_range(member.vf_range, verified[member.pci].totalvfs)
              for member in members}
    stored = rows.vfs_in([(pci, claimed.start, claimed.end) for pci, claimed in claims.items()])
    held_ids = rows.held_vf_ids(list(claims))
    gone: list[int] = []
    changed: list[VfRow] = []
    added: dict[str, list[tuple[int, str, str | None]]] = {}
    for member in members:
        vf_rows = stored[member.pci]
        plan = plan_inventory(verified[member.pci],
                              used_indices(member.vf_range, pool.vfs_per_pf),
                              {index: (row.state, row.reason) for index, row in vf_rows.items()},
                              {row.vf_index for row in vf_rows.values() if row.id in held_ids})
        gone += (vf_rows[index].id for index in plan.deleted)
        changed += (vf_rows[index]._replace(state=VfState.UNUSABLE,
                                            reason="VF vanished while leased")
                    for index in plan.vanished)
        changed += (vf_rows[vf.index]._replace(pci=str(vf.pci), netdev=vf.netdev,
                                               state=VfState.FREE, reason=None)
                    for vf in plan.back)  # it was only gone, and it is back
        changed += (row._replace(pci=str(vf.pci), netdev=vf.netdev) for vf in plan.seen
                    if ((row := vf_rows[vf.index]).pci, row.netdev) != (str(vf.pci), vf.netdev))
        added[member.pci] = [(vf.index, str(vf.pci), vf.netdev) for vf in plan.added]
    # Rows go before their addresses are taken again: deleted, changed, then added.
    rows.delete_vfs(gone)
    rows.change_vfs(changed)
    for pci, vfs in added.items():
        rows.add_free_vfs(pool.host_id, pci, vfs)


def _event(rows: PoolWrites, pool: str, action: str, **detail: Any) -> dict[str, Any]:
    """An event about ``pool``, of the transaction's host, as a row to add."""
    return {"host_id": rows.host_id, **events.entry(action, pool=pool, **detail)}


def _lose(rows: PoolWrites, lease_ids: Iterable[int], why: str, *,
          vf_state: VfState = VfState.FREE, vf_reason: str | None = None) -> None:
    """Leases whose VF a disruptive change reset: closed as lost, the VF free again (it came
    back with fresh config, so there is nothing to restore)."""
    for lease_id in lease_ids:
        try:
            lease = rows.lease(lease_id)
        except NotFound:
            continue
        if lease.live:
            lease_service.finish_row(rows, lease, vf_state, vf_reason, "lease.lost", why,
                                     final_state=LeaseState.LOST)


def _apply(ctx: Context, name: str, locked: set[str], *, allow_disruption: bool,
           timeout: float, progress: Progress, action: str,
           snapshots: Snapshots | None = None, link_timeout: float | None = None,
           state: _State | None = None) -> PoolChanged:
    """Bring the host to the pool's definition, verify, wait for the PF links that sizing
    took down, inventory, and mark the pool active. Runs under the exclusive locks of
    ``locked``; ``state``, when given, was gathered under them."""
    if state is None:
        state = _gather(ctx, name, locked)
    if snapshots is None:
        snapshots = _snapshots(ctx, sorted(locked))
    link_timeout = LINK_WAIT if link_timeout is None else link_timeout  # read at call time
    linked = [pci for pci in sorted(locked)
              if sriov.carrier(ctx.sysfs, PciAddress.parse(pci)) is True]
    changed: list[str] = []
    reset: list[LiveLease] = []  # leases whose VF a step about to run may reset
    try:
        members = _members(state, snapshots, name)
        by_driver: dict[str, list[_Member]] = {}
        for member in members:
            pf = snapshots[member.pci]
            assert pf is not None
            if member.method == Method.SYSFS:
                step = plan_sysfs(pf, state.uses[member.pci], state.use_of(member.pci),
                                  [lease for lease in state.leases
                                   if lease.pf_pci == member.pci],
                                  allow_disruption=allow_disruption)
                reset += step.resets
                if _apply_sysfs(ctx, step, member.info, progress):
                    changed.append(member.pci)
            else:
                by_driver.setdefault(member.info.name, []).append(member)
        for driver, driver_members in by_driver.items():
            ports = [pf for pci, pf in sorted(snapshots.items())
                     if pf is not None and pf.driver == driver]
            module_step = plan_module(
                driver_members[0].info, ports, [m.pci for m in driver_members],
                max(wanted_count(state.uses[m.pci]) for m in driver_members),
                state.use_of(driver_members[0].pci), state.uses, state.leases,
                allow_disruption=allow_disruption)
            if module_step is not None:
                reset += module_step.resets
                _apply_module(ctx, module_step, progress)
                changed.extend(m.pci for m in driver_members)
                # The reload brought every port back administratively down; the ones that had
                # their link before are brought up again, as the host had them.
                for pf in module_step.ports:
                    if str(pf.pci) in linked:
                        progress(f"PF {pf.label}: bringing the port up again after the reload")
                        sriov.bring_up(ctx.sysfs, pf.pci, timeout=timeout)
        verified = _verify(ctx, state, members, timeout)
        links_down = _wait_for_links(ctx, linked, snapshots, link_timeout, progress)
    except VfpoolError as exc:
        # A step may have reset leased VFs before it failed: look at each, and close the
        # leases whose VF is gone or no longer carries their config.
        settled = lease_service.settle_resets(ctx, [lease.id for lease in reset])
        error = str(exc)

        def failed(transaction: Transaction, host_id: int | None) -> None:
            rows = PoolWrites(transaction, host_id)
            rows.add_events([_event(rows, name, f"{action}.failed", error=error)])
            for lease_id, (vf_state, vf_reason) in settled.items():
                _lose(rows, [lease_id], f"its VF was reset by a failed {action} with "
                      "--allow-disruption", vf_state=vf_state, vf_reason=vf_reason)

        ctx.store.write_rows(failed, operation=f"recording the failed {action} of {name}")
        raise

    lost = sorted({lease.id for lease in reset})

    def activate(transaction: Transaction, host_id: int | None) -> PoolChanged:
        rows = PoolWrites(transaction, host_id)
        pool = rows.pool(name)
        _lose(rows, lost, f"its VF was reset by {action} {name} with --allow-disruption")
        _inventory(rows, pool, members, verified)
        rows.set_pool_state(pool, PoolState.ACTIVE)
        rows.add_events([
            *(_event(rows, name, "pf.link_down", pf=pci, netdev=netdev, why=why,
                     waited=link_timeout, message=message)
              for pci, (netdev, why, message) in links_down.items()),
            *(_event(rows, name, "pf.resize", pf=pci,
                     numvfs=verified[pci].numvfs if pci in verified else None)
              for pci in changed),
            _event(rows, name, action, changed=changed,
                   was_active=pool.state == PoolState.ACTIVE, lost=lost)])
        return PoolChanged(**_fields(_info(rows, rows.pool(name), {**snapshots, **verified})),
                           changed=tuple(changed), lost=tuple(lost),
                           warnings=tuple(message for _, _, message in links_down.values()))

    record = ctx.store.write_rows(activate, operation=f"recording {action} {name}")
    for warning in record.warnings:
        # With no logging set up (the CLI), Python prints a warning's text alone on stderr.
        _log.warning("%s", warning)
    return record


def _wait_for_links(ctx: Context, linked: list[str], snapshots: Snapshots, timeout: float,
                    progress: Progress) -> dict[str, tuple[str | None, str, str]]:
    """Wait (bounded) for the carrier of each PF that had one before the change; the PFs whose
    carrier did not come back, as pci -> (netdev, why, the warning for the admin)."""
    addresses = {PciAddress.parse(pci): pci for pci in linked}
    down = [address for address in addresses
            if sriov.carrier(ctx.sysfs, address) is not True]
    if not down:
        return {}
    progress(f"waiting up to {timeout:g} s for the link of "
             f"{', '.join(str(address) for address in down)}")
    missing = sriov.wait_for_carrier(ctx.sysfs, down, timeout=timeout)
    found: dict[str, tuple[str | None, str, str]] = {}
    for address, carrier in sorted(missing.items()):
        pci = addresses[address]
        before = snapshots.get(pci)
        label = before.label if before is not None else pci
        netdev = before.netdev if before is not None else None
        driver = (before.driver if before is not None else None) or "its driver"
        rates = (f"{driver} refuses VF rates until its link is up" if driver in RATES_NEED_LINK
                 else "VF rates and traffic wait until its link is up")
        if carrier is None:
            why = "administratively down"
            message = (f"warning: PF {label}: link down after sizing (the port is "
                       f"administratively down; `ip link set {netdev or 'PF'} up` brings it "
                       f"back); {rates}")
        else:
            why = "no carrier"
            message = (f"warning: PF {label}: link still down {timeout:g} s after sizing; "
                       f"{rates}")
        found[pci] = (netdev, why, message)
    return found


def _choose_selected(ctx: Context, name: str, progress: Progress) -> None:
    """A pool with selectors takes, at the start of an inactive pool, every PF of this host
    that a selector matches and no other pool uses; an active pool keeps the PFs it has."""
    pool_row = _read_pools(ctx, lambda rows: rows.pool(name))
    selectors = selectors_of(pool_row.selectors)
    if not selectors or pool_row.state == PoolState.ACTIVE:
        return
    wanted = ", ".join(str(selector) for selector in selectors)
    progress(f"choosing the PFs that match {wanted}")
    matching = selected(selectors, ctx.sysfs.pfs())

    def choose(session: Session) -> None:
        pool = _pool(session, name)
        if pool.state == PoolState.ACTIVE:
            return  # another start got there first
        if selectors_of(pool.selectors) != selectors:
            raise Conflict(f"the selectors of pool {name!r} changed while this start chose "
                           "its PFs; retry")
        spec = spec_of(pool)
        # An inactive selector pool holds no PF: its members are only its last choice.
        taken = {member.pf_pci: other.name for other, member in
                 Queries(session).memberships([str(pf.pci) for pf in matching])
                 if member.pool_id != pool.id
                 and (other.state == PoolState.ACTIVE or not other.selectors)}
        chosen = [pf for pf in matching if str(pf.pci) not in taken]
        if not matching:
            raise NotFound(f"no PF on this host matches the selectors of pool {name!r} "
                           f"({wanted})")
        if not chosen:
            users = ", ".join(sorted({repr(user) for user in taken.values()}))
            raise Conflict(f"every PF that matches the selectors of pool {name!r} ({wanted}) "
                           f"is in another pool: {users}")
        members = [(PfRef(str(pf.pci)), pf) for pf in chosen]
        for ref, pf in members:
            info_ = driver_info(pf.driver)
            check_member(spec, ref, pf, info_, resolve_method(spec.method, info_))
        _check_module_params(session, spec, members, exclude_pool=pool.id)
        if [m.pf_pci for m in pool.members] == [str(pf.pci) for pf in chosen]:
            return
        pool.members.clear()
        session.flush()
        _record_pfs_in(session, chosen)
        for position, pf in enumerate(chosen):
            pool.members.append(PoolPf(pf_pci=str(pf.pci), position=position))
        events.record(session, "pool.select", pool=name, select=wanted,
                      pfs=[str(pf.pci) for pf in chosen])

    ctx.store.write(choose, operation=f"choosing the PFs of pool {name}")


def start(ctx: Context, name: str, *, allow_disruption: bool = False,
          timeout: float = DEFAULT_TIMEOUT, progress: Progress = quiet,
          link_timeout: float | None = None) -> PoolStarted:
    """Start a pool. Idempotent: an active pool whose PFs are in place is left alone, and the
    result says so (``already_active``); an active pool whose VFs are gone (after a reboot)
    is brought back with the same VF indices and addresses."""
    ctx.require_root(f"pool start {name}")
    _choose_selected(ctx, name, progress)

    def change(locked: set[str]) -> PoolStarted:
        snapshots = _snapshots(ctx, sorted(locked))
        state = _gather(ctx, name, locked)
        if state.active and not _needs_start(state, snapshots):
            record = _read_pools(ctx, lambda rows: _info(rows, rows.pool(name), snapshots))
            return PoolStarted(**_fields(record), changed=(), lost=(), already_active=True)
        applied = _apply(ctx, name, locked, allow_disruption=allow_disruption, timeout=timeout,
                         progress=progress, action="pool.start", snapshots=snapshots,
                         link_timeout=link_timeout, state=state)
        return PoolStarted(**_fields(applied, PoolChanged), already_active=False)

    return _locked(ctx, name, change)


def start_autostarted(ctx: Context, *, allow_disruption: bool = False,
                      timeout: float = DEFAULT_TIMEOUT,
                      progress: Progress = quiet) -> list[AutostartResult]:
    """Start every autostart pool; one failure does not stop the others. Starts do not depend
    on each other's order: a PF is sized for every pool defined on it at its first start."""
    ctx.require_root("pool start --autostarted")
    names = ctx.store.read(lambda s: Queries(s).autostart_names())
    results: list[AutostartResult] = []
    for name in names:
        try:
            record = start(ctx, name, allow_disruption=allow_disruption, timeout=timeout,
                           progress=progress)
            results.append(AutostartResult(name, AutostartOutcome.ALREADY_ACTIVE if
                                           record.already_active else AutostartOutcome.STARTED))
        except VfpoolError as exc:
            results.append(AutostartResult(name, AutostartOutcome.FAILED, str(exc),
                                           exc.exit_code))
    return results


def destroy(ctx: Context, name: str, *, force: bool = False, keep_vfs: bool = False,
            allow_disruption: bool = False, progress: Progress = quiet) -> PoolDestroyed:
    """Deactivate a pool; refused while it has leases unless ``force`` releases them."""
    ctx.require_root(f"pool destroy {name}")

    def leases_of(transaction: Transaction, host_id: int | None) -> list[int]:
        rows = LeaseRows(transaction, host_id)
        if rows.pool(name).state != PoolState.ACTIVE:
            raise Conflict(f"pool {name!r} is not active")
        leases = rows.leases(pool=name)
        if leases and not force:
            raise Conflict(f"pool {name!r} has {len(leases)} active lease(s) (owners: "
                           f"{', '.join(sorted({lease.owner for lease in leases}))}); release "
                           "them or pass --force")
        return sorted(lease.id for lease in leases)

    def change(locked: set[str]) -> PoolDestroyed:
        lease_ids = ctx.store.read_rows(leases_of)
        for lease_id in lease_ids:
            lease_service.release_locked(ctx, lease_id, reason=f"pool destroy --force {name}")
        emptied: list[str] = []
        reset: list[LiveLease] = []
        if not keep_vfs:
            emptied = _empty_pfs(ctx, name, locked, reset, allow_disruption=allow_disruption,
                                 progress=progress)
        lost = sorted({lease.id for lease in reset})
        snapshots = _snapshots(ctx, _member_pcis(ctx, name))

        def deactivate(transaction: Transaction, host_id: int | None) -> PoolDestroyed:
            rows = PoolWrites(transaction, host_id)
            pool = rows.pool(name)
            for pci in emptied:
                rows.delete_vfs_of(pci)
            rows.set_pool_state(pool, PoolState.INACTIVE)
            _lose(rows, lost, f"its VF was reset by pool destroy {name} with "
                              "--allow-disruption")
            rows.add_events([_event(rows, name, "pool.destroy", force=force, keep_vfs=keep_vfs,
                                    released=lease_ids, emptied=emptied, lost=lost)])
            record = _info(rows, rows.pool(name), snapshots)
            if pool.selectors:
                # A selector pool holds its PFs only while active; its next start chooses.
                rows.clear_members(pool)
            return PoolDestroyed(**_fields(record), released=tuple(lease_ids),
                                 lost=tuple(lost))

        return ctx.store.write_rows(deactivate, operation=f"recording pool destroy {name}")

    with ctx.locks.acquirer():  # its releases name this process in their leases
        return _locked(ctx, name, change)


def _empty_pfs(ctx: Context, name: str, locked: set[str], reset: list[LiveLease], *,
               allow_disruption: bool, progress: Progress) -> list[str]:
    """Set the pool's PFs back to 0 VFs, except those another active pool still uses; the
    leases of other pools whose VFs a module reload resets are added to ``reset``."""
    state = _gather(ctx, name, locked)
    snapshots = _snapshots(ctx, sorted(locked))
    members = _members(state, snapshots, name)
    emptied = []
    by_driver: dict[str, list[_Member]] = {}
    for member in members:
        pf = snapshots[member.pci]
        assert pf is not None
        if any(use.active and use.pool_id != state.pool_id for use in state.uses[member.pci]):
            progress(f"PF {pf.label}: kept, another active pool uses it")
            continue
        if member.method == Method.SYSFS:
            if pf.numvfs:
                progress(f"PF {pf.label}: {pf.numvfs} -> 0 VFs")
                sriov.write_numvfs(ctx.sysfs, pf, 0)
            emptied.append(member.pci)
        else:
            by_driver.setdefault(member.info.name, []).append(member)
    for driver, driver_members in by_driver.items():
        ports = [pf for pf in snapshots.values() if pf is not None and pf.driver == driver]
        users = sorted({use.pool for pf in ports for use in state.uses.get(str(pf.pci), ())
                        if use.active and use.pool_id != state.pool_id and resolve_method(
                            use.method, driver_members[0].info) == Method.MODULE_PARAM})
        if users:
            progress(f"driver {driver}: kept its VFs, active pool {users[0]!r} uses them")
            continue
        step = plan_module(driver_members[0].info, ports, [m.pci for m in driver_members], 0,
                           state.use_of(driver_members[0].pci), state.uses, state.leases,
                           allow_disruption=allow_disruption, emptying=True)
        if step is not None:
            reset += step.resets
            _apply_module(ctx, step, progress)
        emptied.extend(m.pci for m in driver_members)
    return emptied


def resize(ctx: Context, name: str, vfs: int, *, allow_disruption: bool = False,
           timeout: float = DEFAULT_TIMEOUT, progress: Progress = quiet,
           link_timeout: float | None = None) -> PoolInfo | PoolChanged:
    """Change a pool's VFs per PF. An active pool is resized on the host at once, but never
    below a leased VF."""
    ctx.require_root(f"pool resize {name}")

    def change(locked: set[str]) -> PoolInfo | PoolChanged:
        snapshots = _snapshots(ctx, sorted(locked))

        def set_count(session: Session) -> tuple[int, bool, PoolInfo | None]:
            pool = _pool(session, name)
            spec = spec_of(pool)
            new_spec = PoolSpec(spec.name, spec.pfs, vfs, spec.method, spec.mode,
                                spec.defaults, spec.autostart).validate()
            members = []
            for ref in new_spec.pfs:
                pf = snapshots.get(ref.pf)
                if pf is None:
                    raise NotFound(f"PF {ref.pf} of pool {name!r} is not on this host")
                info_ = driver_info(pf.driver)
                check_member(new_spec, ref, pf, info_, resolve_method(new_spec.method, info_))
                members.append((ref, pf))
            _check_module_params(session, new_spec, members, exclude_pool=pool.id)
            if pool.state == PoolState.ACTIVE:
                _check_shrink(session, pool, vfs)
            old = pool.vfs_per_pf
            pool.vfs_per_pf = vfs
            events.record(session, "pool.resize", pool=name, old=old, new=vfs)
            if pool.state == PoolState.ACTIVE:
                return old, True, None
            return old, False, _info_in(session, name, snapshots)

        old, active, record = ctx.store.write(set_count, operation=f"pool resize {name}")
        if not active:
            assert record is not None
            return record
        try:
            return _apply(ctx, name, locked, allow_disruption=allow_disruption,
                          timeout=timeout, progress=progress, action="pool.resize.apply",
                          snapshots=snapshots, link_timeout=link_timeout)
        except VfpoolError:
            def revert(session: Session) -> None:
                _pool(session, name).vfs_per_pf = old
                events.record(session, "pool.resize.revert", pool=name, old=vfs, new=old)

            ctx.store.write(revert, operation=f"reverting pool resize {name}")
            raise

    return _locked(ctx, name, change)


def _check_shrink(session: Session, pool: Pool, vfs: int) -> None:
    for member in pool.members:
        start_index = used_indices(range_of(member), vfs).start
        held = Queries(session).highest_live_index(pool.id, member.pf_pci, start_index + vfs)
        if held is not None:
            raise Conflict(f"cannot shrink pool {pool.name!r} to {vfs} VFs per PF: VF "
                           f"{held.vf_index} of PF {member.pf_pci} is leased to {held.owner!r}")


def replace_name(spec: PoolSpec, name: str) -> PoolSpec:
    return replace(spec, name=validate_name(name))


def parse_spec(name: str, pfs: list[str], vfs: int, method: str, mode: str,
               defaults: VfDefaults, select: list[str] | None = None) -> PoolSpec:
    validate_name(name)
    return PoolSpec(name=name, pfs=tuple(PfRef.parse(text) for text in pfs), vfs=vfs,
                    method=choice(Method, method, "method"), mode=choice(Mode, mode, "mode"),
                    defaults=defaults,
                    selectors=tuple(PfSelector.parse(text) for text in select or ())).validate()


__all__ = ["Method", "Mode", "define", "destroy", "dumpconfig", "from_toml",
           "info", "list_pools", "parse_spec", "replace_name", "resize", "set_autostart", "start",
           "start_autostarted", "undefine"]
