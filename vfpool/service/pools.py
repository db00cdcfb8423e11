"""The pool lifecycle, with libvirt's semantics: define, start, destroy, undefine, autostart,
resize. Every change reads the host back and verifies it, and writes an `events` row."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vfpool.errors import (
    Conflict,
    HostError,
    InvalidInput,
    NotFound,
    VerificationError,
    VfpoolError,
)
from vfpool.host import sriov
from vfpool.host.lock import host_lock
from vfpool.model.drivers import DriverInfo, driver_info, module_options
from vfpool.model.pci import PciAddress
from vfpool.model.pool import (
    Method,
    Mode,
    PfRef,
    PoolSpec,
    VfDefaults,
    VfRange,
    check_member,
    claimed_range,
    from_toml,
    resolve_method,
    to_toml,
    used_indices,
    validate_name,
)
from vfpool.model.snapshot import PfSnapshot
from vfpool.service import events
from vfpool.service import leases as lease_service
from vfpool.service.context import Context
from vfpool.service.leases import member_range as range_of
from vfpool.store import LIVE_LEASE_STATES, Lease, Pf, Pool, PoolPf, Vf, utcnow

Progress = Callable[[str], None]
DEFAULT_TIMEOUT = 30.0


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------- reading pools

def _pool(session: Session, name: str) -> Pool:
    pool = session.scalars(select(Pool).where(Pool.name == name)).one_or_none()
    if pool is None:
        raise NotFound(f"no pool named {name!r}")
    return pool


def spec_of(pool: Pool) -> PoolSpec:
    return PoolSpec(
        name=pool.name,
        pfs=tuple(PfRef(member.pf_pci, range_of(member)) for member in pool.members),
        vfs=pool.vfs_per_pf,
        method=pool.method,  # type: ignore[arg-type]
        mode=pool.mode,  # type: ignore[arg-type]
        defaults=VfDefaults(vlan=pool.vlan, qos=pool.qos, trust=pool.trust,
                            spoofchk=pool.spoofchk, min_tx_rate=pool.min_tx_rate,
                            max_tx_rate=pool.max_tx_rate, mtu=pool.mtu),
        autostart=pool.autostart,
    )


def _vf_counts(session: Session, pool: Pool) -> dict[str, int]:
    """The pool's VFs by state; an inactive pool has none to lease, so all zero."""
    counts = {"total": 0, "free": 0, "leased": 0, "reserved": 0, "unusable": 0}
    if pool.state != "active":
        return counts
    for member in pool.members:
        indices = used_indices(range_of(member), pool.vfs_per_pf)
        rows = session.execute(
            select(Vf.state, func.count()).where(
                Vf.pf_pci == member.pf_pci, Vf.vf_index >= indices.start,
                Vf.vf_index < indices.stop).group_by(Vf.state))
        for state, count in rows:
            counts[state] += count
            counts["total"] += count
    return counts


def _host_pf(ctx: Context, pci: str) -> PfSnapshot | None:
    address = PciAddress.parse(pci)
    try:
        return ctx.sysfs.pf(address)
    except NotFound:
        return None


def _in_place(pf: PfSnapshot | None, wanted: int, netdevs: bool) -> bool:
    """The PF has exactly the wanted VFs, each present (with a netdev when the mode needs)."""
    return (pf is not None and pf.numvfs == wanted and len(pf.vfs) == wanted
            and (not netdevs or all(vf.netdevs for vf in pf.vfs)))


def _record(ctx: Context, session: Session, pool: Pool) -> dict[str, Any]:
    pfs = []
    needs_start = False
    for member in pool.members:
        host = _host_pf(ctx, member.pf_pci)
        member_range = range_of(member)
        wanted = _wanted_count(session, member.pf_pci, pool.id, member_range, pool.vfs_per_pf)
        if pool.state == "active" and not _in_place_or_more(host, wanted):
            needs_start = True
        pfs.append({
            "pci": member.pf_pci,
            "netdev": host.netdev if host else member.pf.netdev,
            "driver": host.driver if host else member.pf.driver,
            "numvfs": host.numvfs if host else None,
            "totalvfs": host.totalvfs if host else member.pf.totalvfs,
            "range": str(member_range) if member_range else None,
            "method": resolve_method(pool.method,  # type: ignore[arg-type]
                                     driver_info(host.driver if host else member.pf.driver)),
        })
    spec = spec_of(pool)
    return {
        "name": pool.name,
        "state": pool.state,
        "autostart": pool.autostart,
        "method": pool.method,
        "mode": pool.mode,
        "pfs": pfs,
        "vfs": _vf_counts(session, pool),
        "defaults": spec.defaults.as_dict(),
        "vfs_per_pf": pool.vfs_per_pf,
        "needs_start": needs_start,
    }


def _in_place_or_more(pf: PfSnapshot | None, wanted: int) -> bool:
    return pf is not None and pf.numvfs >= wanted and len(pf.vfs) == pf.numvfs


def info(ctx: Context, name: str) -> dict[str, Any]:
    with ctx.store.session() as session:
        return _record(ctx, session, _pool(session, name))


def list_pools(ctx: Context, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """Active pools, as `virsh net-list`; with ``include_inactive``, all of them."""
    with ctx.store.session() as session:
        query = select(Pool).order_by(Pool.name)
        if not include_inactive:
            query = query.where(Pool.state == "active")
        return [_record(ctx, session, pool) for pool in session.scalars(query)]


def dumpconfig(ctx: Context, name: str) -> str:
    with ctx.store.session() as session:
        return to_toml(spec_of(_pool(session, name)))


# ---------------------------------------------------------------- define and undefine

def _upsert_pf(session: Session, pf: PfSnapshot) -> Pf:
    row = session.get(Pf, str(pf.pci))
    if row is None:
        row = Pf(pci=str(pf.pci))
        session.add(row)
    row.netdev, row.driver = pf.netdev, pf.driver
    row.vendor, row.device = f"{pf.vendor:04x}", f"{pf.device:04x}"
    row.totalvfs, row.numa_node = pf.totalvfs, pf.numa_node
    row.last_seen = utcnow()
    return row


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
        others = session.execute(
            select(PoolPf, Pool.name).join(Pool, Pool.id == PoolPf.pool_id)
            .where(PoolPf.pf_pci == str(pf.pci)))
        for member, other_name in others:
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
        if resolve_method(spec.method, info_) != "module-param":
            continue
        count = used_indices(ref.range, spec.vfs).stop
        earlier = wanted.setdefault(info_.name, (count, spec.name))
        if earlier[0] != count:
            raise Conflict(_param_conflict(info_, earlier, (count, spec.name)))
    if not wanted:
        return
    rows = session.execute(select(Pool, PoolPf, Pf).join(PoolPf, PoolPf.pool_id == Pool.id)
                           .join(Pf, Pf.pci == PoolPf.pf_pci))
    for pool, member, pf_row in rows:
        if pool.id == exclude_pool or pf_row.driver not in wanted:
            continue
        info_ = driver_info(pf_row.driver)
        if resolve_method(pool.method, info_) != "module-param":  # type: ignore[arg-type]
            continue
        count = used_indices(range_of(member), pool.vfs_per_pf).stop
        if count != wanted[info_.name][0]:
            raise Conflict(_param_conflict(info_, (count, pool.name), wanted[info_.name]))


def _param_conflict(info_: DriverInfo, first: tuple[int, str], second: tuple[int, str]) -> str:
    return (f"driver {info_.name}'s {info_.module_param} parameter sizes every {info_.name} "
            f"port alike, but pool {first[1]!r} needs {first[0]} VFs per PF and pool "
            f"{second[1]!r} needs {second[0]}")


def define(ctx: Context, spec: PoolSpec) -> dict[str, Any]:
    """Validate a definition against the host and store it, inactive."""
    spec.validate()
    members = _resolve_members(ctx, spec)
    with ctx.store.immediate() as session:
        if session.scalars(select(Pool.id).where(Pool.name == spec.name)).first() is not None:
            raise Conflict(f"pool {spec.name!r} already exists")
        _check_overlaps(session, members)
        _check_module_params(session, spec, members)
        defaults = spec.defaults
        pool = Pool(name=spec.name, state="inactive", autostart=spec.autostart,
                    method=spec.method, mode=spec.mode, vfs_per_pf=spec.vfs,
                    vlan=defaults.vlan, qos=defaults.qos, trust=defaults.trust,
                    spoofchk=defaults.spoofchk, min_tx_rate=defaults.min_tx_rate,
                    max_tx_rate=defaults.max_tx_rate, mtu=defaults.mtu)
        for position, (ref, pf) in enumerate(members):
            pool.members.append(PoolPf(
                pf=_upsert_pf(session, pf), position=position,
                range_start=ref.range.start if ref.range else None,
                range_end=ref.range.end if ref.range else None))
        session.add(pool)
        resolved = spec.with_pfs(tuple(ref for ref, _ in members))
        events.record(session, "pool.define", pool=spec.name, definition=to_toml(resolved))
        session.flush()
        return _record(ctx, session, pool)


def undefine(ctx: Context, name: str) -> None:
    with ctx.store.immediate() as session:
        pool = _pool(session, name)
        if pool.state == "active":
            raise Conflict(f"pool {name!r} is active; destroy it before undefining it")
        session.delete(pool)
        events.record(session, "pool.undefine", pool=name)


def set_autostart(ctx: Context, name: str, enabled: bool) -> dict[str, Any]:
    with ctx.store.immediate() as session:
        pool = _pool(session, name)
        pool.autostart = enabled
        events.record(session, "pool.autostart", pool=name, enabled=enabled)
        return _record(ctx, session, pool)


# ---------------------------------------------------------------- sizing PFs

@dataclass
class PfPlan:
    """What one PF of a pool must look like, and how to get it there."""

    pci: str
    range: VfRange | None
    wanted: int  # sriov_numvfs the PF needs
    method: Literal["sysfs", "module-param"]
    info: DriverInfo
    snapshot: PfSnapshot


def _wanted_count(session: Session, pci: str, pool_id: int, member_range: VfRange | None,
                  vfs: int) -> int:
    """The PF's VF count: what every pool defined on it uses, active or not.

    Sizing a shared PF for all its pools at the first start means the others start without
    another N→0→M, which would take the first pool's VFs away.
    """
    wanted = used_indices(member_range, vfs).stop
    others = session.execute(
        select(PoolPf, Pool.vfs_per_pf).join(Pool, Pool.id == PoolPf.pool_id)
        .where(PoolPf.pf_pci == pci, Pool.id != pool_id))
    for member, other_vfs in others:
        wanted = max(wanted, used_indices(range_of(member), other_vfs).stop)
    return wanted


def _sharing_pools(session: Session, pci: str, pool_id: int) -> list[str]:
    return list(session.scalars(
        select(Pool.name).join(PoolPf, PoolPf.pool_id == Pool.id)
        .where(PoolPf.pf_pci == pci, Pool.state == "active", Pool.id != pool_id)))


def _live_leases(session: Session, pf_pcis: Iterable[str]) -> list[Lease]:
    return list(session.scalars(select(Lease).where(
        Lease.pf_pci.in_(list(pf_pcis)), Lease.state.in_(LIVE_LEASE_STATES))
        .order_by(Lease.id)))


def _owners(leases: list[Lease]) -> str:
    return ", ".join(sorted({lease.owner for lease in leases}))


def _plans(ctx: Context, session: Session, pool: Pool) -> list[PfPlan]:
    plans = []
    for member in pool.members:
        snapshot = _host_pf(ctx, member.pf_pci)
        if snapshot is None:
            raise NotFound(f"PF {member.pf_pci} of pool {pool.name!r} is not on this host; "
                           "was the card removed?")
        member_range = range_of(member)
        info_ = driver_info(snapshot.driver)
        plans.append(PfPlan(
            pci=member.pf_pci, range=member_range,
            wanted=_wanted_count(session, member.pf_pci, pool.id, member_range,
                                 pool.vfs_per_pf),
            method=resolve_method(pool.method, info_),  # type: ignore[arg-type]
            info=info_, snapshot=snapshot))
    return plans


def _resize_sysfs(ctx: Context, session: Session, pool: Pool, plan: PfPlan,
                  progress: Progress) -> bool:
    """N→0→M through sriov_numvfs, only when the PF is not already right."""
    pf = plan.snapshot
    netdevs = pool.mode != "vfio"
    if _in_place(pf, plan.wanted, netdevs):
        return False
    if pf.numvfs:
        sharing = _sharing_pools(session, plan.pci, pool.id)
        if sharing:
            raise Conflict(f"PF {pf.label} must go through 0 VFs to reach {plan.wanted}, which "
                           f"would remove the VFs of active pool {sharing[0]!r}; destroy it "
                           "first")
        leases = _live_leases(session, [plan.pci])
        if leases:
            raise Conflict(f"PF {pf.label} must go through 0 VFs to reach {plan.wanted}, which "
                           f"would take away leased VFs (owners: {_owners(leases)}); release "
                           "them first")
    if pf.drivers_autoprobe != netdevs:
        # vfio hand-off wants VFs unbound; macvtap and netdev want their net driver's netdevs.
        sriov.write_autoprobe(ctx.sysfs, pf, netdevs)
    if pf.numvfs:
        progress(f"PF {pf.label}: {pf.numvfs} -> 0 VFs")
        sriov.write_numvfs(ctx.sysfs, pf, 0)
    progress(f"PF {pf.label}: 0 -> {plan.wanted} VFs")
    sriov.write_numvfs(ctx.sysfs, pf, plan.wanted)
    return True


def _driver_ports(ctx: Context, driver: str) -> list[PfSnapshot]:
    return [pf for pf in ctx.sysfs.pfs(with_vfs=True) if pf.driver == driver]


def _check_disruption(ctx: Context, session: Session, info_: DriverInfo,
                      ports: list[PfSnapshot]) -> None:
    """Before a module reload: every netdev of the driver goes down with it."""
    in_pools = set(session.scalars(select(PoolPf.pf_pci)))
    exposed = [netdev.name for pf in ports if str(pf.pci) not in in_pools
               for netdev in pf.netdevs if netdev.operstate == "up"]
    leases = _live_leases(session, [str(pf.pci) for pf in ports])
    problems = []
    if exposed:
        problems.append(f"interfaces {', '.join(exposed)} are up and not in a vfpool pool")
    if leases:
        problems.append(f"VFs {', '.join(lease.vf_pci for lease in leases)} are leased "
                        f"(owners: {_owners(leases)})")
    if problems:
        raise Conflict(f"reloading {info_.name} takes down every port it serves: "
                       f"{'; '.join(problems)}; pass --allow-disruption to reload anyway")


def _check_other_pools(session: Session, pool: Pool, info_: DriverInfo,
                       ports: list[PfSnapshot], count: int) -> None:
    """A reload re-creates every port's VFs at ``count``: refuse when that would change the
    VF count another active pool relies on (a sysfs pool on another port, say)."""
    by_pci = {str(pf.pci): pf for pf in ports}
    rows = session.execute(select(Pool, PoolPf).join(PoolPf, PoolPf.pool_id == Pool.id).where(
        PoolPf.pf_pci.in_(list(by_pci)), Pool.state == "active", Pool.id != pool.id))
    for other, member in rows:
        needed = used_indices(range_of(member), other.vfs_per_pf).stop
        if needed != count:
            pf = by_pci[member.pf_pci]
            raise Conflict(f"reloading {info_.name} would re-create PF {pf.label} with {count} "
                           f"VFs, but active pool {other.name!r} needs {needed} there; destroy "
                           "it first")


def _resize_module(ctx: Context, session: Session, pool: Pool, plans: list[PfPlan], *,
                   allow_disruption: bool, progress: Progress,
                   count_override: int | None = None) -> bool:
    """Write options to modprobe.d and reload the driver; restore the old file on failure."""
    info_ = plans[0].info
    module = info_.name
    netdevs = pool.mode != "vfio"
    count = count_override if count_override is not None else max(p.wanted for p in plans)
    ports = _driver_ports(ctx, module)
    if all(_in_place(pf, count, netdevs) for pf in ports if str(pf.pci) in
           {p.pci for p in plans}) and count_override is None:
        return False
    _check_other_pools(session, pool, info_, ports, count)
    if not allow_disruption:
        _check_disruption(ctx, session, info_, ports)
    for pf in ports:
        if pf.drivers_autoprobe != netdevs and info_.param_kind == "scalar":
            sriov.write_autoprobe(ctx.sysfs, pf, netdevs)
    root = ctx.sysfs.root
    previous = sriov.read_modprobe_conf(root, module)
    text = sriov.conf_text(module, module_options(info_, count, probe=netdevs)) if count \
        else None
    sriov.write_modprobe_conf(root, module, text)
    progress(f"driver {module}: reloading with {module_options(info_, count, probe=netdevs)}")
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
    return True


def _verify(ctx: Context, pool: Pool, plans: list[PfPlan], timeout: float) -> dict[str,
                                                                                   PfSnapshot]:
    netdevs = pool.mode != "vfio"
    result = {}
    for plan in plans:
        pf = sriov.wait_for_vfs(ctx.sysfs, plan.snapshot.pci, plan.wanted, netdevs=netdevs,
                                timeout=timeout)
        if not _in_place(pf, plan.wanted, netdevs):
            diff: dict[str, tuple[object, object]] = {}
            if pf.numvfs != plan.wanted:
                diff["sriov_numvfs"] = (plan.wanted, pf.numvfs)
            if len(pf.vfs) != plan.wanted:
                diff["VFs present"] = (plan.wanted, len(pf.vfs))
            missing = [str(vf.pci) for vf in pf.vfs if not vf.netdevs]
            if netdevs and missing:
                diff["VFs without a netdev"] = (0, len(missing))
            raise VerificationError(f"PF {pf.label} (after {timeout:g} s)", diff)
        result[plan.pci] = pf
    return result


def _inventory(session: Session, pool: Pool, plans: list[PfPlan],
               snapshots: dict[str, PfSnapshot]) -> None:
    """Record the pool's VFs: new ones free, known ones updated, vanished ones unusable."""
    for plan in plans:
        pf = snapshots[plan.pci]
        _upsert_pf(session, pf)
        indices = used_indices(plan.range, pool.vfs_per_pf)
        present = {vf.index: vf for vf in pf.vfs if vf.index in indices}
        claimed = claimed_range(plan.range, pf.totalvfs)
        rows = {row.vf_index: row for row in session.scalars(select(Vf).where(
            Vf.pf_pci == plan.pci, Vf.vf_index >= claimed.start, Vf.vf_index <= claimed.end))}
        for index, row in rows.items():
            if index not in present:
                if row.state in ("leased", "reserved"):
                    row.state, row.reason = "unusable", "VF vanished while leased"
                else:
                    session.delete(row)
        session.flush()
        for index, vf in present.items():
            known = rows.get(index)
            if known is None:
                session.add(Vf(pf_pci=plan.pci, vf_index=index, pci=str(vf.pci),
                               netdev=vf.netdev, state="free"))
            else:
                known.pci, known.netdev = str(vf.pci), vf.netdev
                if known.state == "unusable" and known.reason in ("missing on host",
                                                                   "removed"):
                    held = session.scalars(select(Lease.id).where(
                        Lease.vf_id == known.id, Lease.state.in_(LIVE_LEASE_STATES))).first()
                    if held is None:  # it was only gone, and it is back
                        known.state, known.reason = "free", None


def _apply(ctx: Context, name: str, *, allow_disruption: bool, timeout: float,
           progress: Progress, action: str) -> dict[str, Any]:
    """Bring the host to the pool's definition, verify, inventory, and mark the pool active."""
    with ctx.store.session() as session:
        pool = _pool(session, name)
        plans = _plans(ctx, session, pool)
        changed: list[str] = []
        try:
            for plan in plans:
                if plan.method == "sysfs" and _resize_sysfs(ctx, session, pool, plan, progress):
                    changed.append(plan.pci)
            by_driver: dict[str, list[PfPlan]] = {}
            for plan in plans:
                if plan.method == "module-param":
                    by_driver.setdefault(plan.info.name, []).append(plan)
            for driver_plans in by_driver.values():
                if _resize_module(ctx, session, pool, driver_plans,
                                  allow_disruption=allow_disruption, progress=progress):
                    changed.extend(plan.pci for plan in driver_plans)
            snapshots = _verify(ctx, pool, plans, timeout)
        except VfpoolError as exc:
            session.rollback()
            with ctx.store.session() as log:
                events.record(log, f"{action}.failed", pool=name, error=str(exc))
            raise
    with ctx.store.immediate() as session:
        pool = _pool(session, name)
        was_active = pool.state == "active"
        _inventory(session, pool, plans, snapshots)
        pool.state = "active"
        for pci in changed:
            events.record(session, "pf.resize", pool=name, pf=pci,
                          numvfs=snapshots[pci].numvfs)
        events.record(session, action, pool=name, changed=changed, was_active=was_active)
        session.flush()
        record = _record(ctx, session, pool)
        record["changed"] = changed
        return record


def start(ctx: Context, name: str, *, allow_disruption: bool = False,
          timeout: float = DEFAULT_TIMEOUT, progress: Progress = _quiet) -> dict[str, Any]:
    """Start a pool. Idempotent: an active pool whose PFs are in place is left alone, and the
    result says so (``already_active``); an active pool whose VFs are gone (after a reboot)
    is brought back with the same VF indices and addresses."""
    ctx.require_root(f"pool start {name}")
    with host_lock(ctx.sysfs.root):
        with ctx.store.session() as session:
            pool = _pool(session, name)
            if pool.state == "active" and not _record(ctx, session, pool)["needs_start"]:
                record = _record(ctx, session, pool)
                record["already_active"] = True
                return record
        record = _apply(ctx, name, allow_disruption=allow_disruption, timeout=timeout,
                        progress=progress, action="pool.start")
        record["already_active"] = False
        return record


def start_autostarted(ctx: Context, *, allow_disruption: bool = False,
                      timeout: float = DEFAULT_TIMEOUT,
                      progress: Progress = _quiet) -> list[dict[str, Any]]:
    """Start every autostart pool; one failure does not stop the others."""
    ctx.require_root("pool start --autostarted")
    with ctx.store.session() as session:
        names = list(session.scalars(select(Pool.name).where(Pool.autostart.is_(True))
                                     .order_by(Pool.name)))
    results: list[dict[str, Any]] = []
    for name in names:
        try:
            record = start(ctx, name, allow_disruption=allow_disruption, timeout=timeout,
                           progress=progress)
            results.append({"name": name, "result": "already active" if
                            record["already_active"] else "started", "error": None})
        except VfpoolError as exc:
            results.append({"name": name, "result": "failed", "error": str(exc),
                            "exit_code": exc.exit_code})
    return results


def destroy(ctx: Context, name: str, *, force: bool = False, keep_vfs: bool = False,
            allow_disruption: bool = False, progress: Progress = _quiet) -> dict[str, Any]:
    """Deactivate a pool; refused while it has leases unless ``force`` releases them."""
    ctx.require_root(f"pool destroy {name}")
    with host_lock(ctx.sysfs.root):
        with ctx.store.session() as session:
            pool = _pool(session, name)
            if pool.state != "active":
                raise Conflict(f"pool {name!r} is not active")
            leases = list(session.scalars(select(Lease).where(
                Lease.pool_id == pool.id, Lease.state.in_(LIVE_LEASE_STATES))))
            if leases and not force:
                raise Conflict(f"pool {name!r} has {len(leases)} active lease(s) (owners: "
                               f"{_owners(leases)}); release them or pass --force")
            lease_ids = [lease.id for lease in leases]
        if lease_ids:
            for lease_id in lease_ids:
                lease_service.release(ctx, lease_id, force=True,
                                      reason=f"pool destroy --force {name}")
        emptied: list[str] = []
        if not keep_vfs:
            emptied = _empty_pfs(ctx, name, allow_disruption=allow_disruption,
                                 progress=progress)
        with ctx.store.immediate() as session:
            pool = _pool(session, name)
            for pci in emptied:
                for row in session.scalars(select(Vf).where(Vf.pf_pci == pci)):
                    session.delete(row)
            pool.state = "inactive"
            events.record(session, "pool.destroy", pool=name, force=force, keep_vfs=keep_vfs,
                          released=lease_ids, emptied=emptied)
            session.flush()
            record = _record(ctx, session, pool)
            record["released"] = lease_ids
            return record


def _empty_pfs(ctx: Context, name: str, *, allow_disruption: bool,
               progress: Progress) -> list[str]:
    """Set the pool's PFs back to 0 VFs, except those another active pool still uses."""
    emptied = []
    with ctx.store.session() as session:
        pool = _pool(session, name)
        plans = _plans(ctx, session, pool)
        module_plans: dict[str, list[PfPlan]] = {}
        for plan in plans:
            if _sharing_pools(session, plan.pci, pool.id):
                progress(f"PF {plan.snapshot.label}: kept, another active pool uses it")
                continue
            if plan.method == "sysfs":
                if plan.snapshot.numvfs:
                    progress(f"PF {plan.snapshot.label}: {plan.snapshot.numvfs} -> 0 VFs")
                    sriov.write_numvfs(ctx.sysfs, plan.snapshot, 0)
                emptied.append(plan.pci)
            else:
                module_plans.setdefault(plan.info.name, []).append(plan)
        for driver, driver_plans in module_plans.items():
            users = _module_users(session, driver, exclude_pool=pool.id)
            if users:
                progress(f"driver {driver}: kept its VFs, active pool {users[0]!r} uses them")
                continue
            _resize_module(ctx, session, pool, driver_plans, allow_disruption=allow_disruption,
                           progress=progress, count_override=0)
            emptied.extend(plan.pci for plan in driver_plans)
    return emptied


def _module_users(session: Session, driver: str, *, exclude_pool: int) -> list[str]:
    rows = session.execute(select(Pool).join(PoolPf, PoolPf.pool_id == Pool.id)
                           .join(Pf, Pf.pci == PoolPf.pf_pci)
                           .where(Pf.driver == driver, Pool.state == "active",
                                  Pool.id != exclude_pool))
    return sorted({pool.name for (pool,) in rows
                   if resolve_method(pool.method, driver_info(driver)) == "module-param"})  # type: ignore[arg-type]


def resize(ctx: Context, name: str, vfs: int, *, allow_disruption: bool = False,
           timeout: float = DEFAULT_TIMEOUT, progress: Progress = _quiet) -> dict[str, Any]:
    """Change a pool's VFs per PF. An active pool is resized on the host at once, but never
    below a leased VF."""
    ctx.require_root(f"pool resize {name}")
    with host_lock(ctx.sysfs.root):
        with ctx.store.immediate() as session:
            pool = _pool(session, name)
            spec = spec_of(pool)
            new_spec = PoolSpec(spec.name, spec.pfs, vfs, spec.method, spec.mode,
                                spec.defaults, spec.autostart).validate()
            members = []
            for ref in new_spec.pfs:
                pf = _host_pf(ctx, ref.pf)
                if pf is None:
                    raise NotFound(f"PF {ref.pf} of pool {name!r} is not on this host")
                info_ = driver_info(pf.driver)
                check_member(new_spec, ref, pf, info_, resolve_method(new_spec.method, info_))
                members.append((ref, pf))
            _check_module_params(session, new_spec, members, exclude_pool=pool.id)
            if pool.state == "active":
                _check_shrink(session, pool, vfs)
            old = pool.vfs_per_pf
            pool.vfs_per_pf = vfs
            events.record(session, "pool.resize", pool=name, old=old, new=vfs)
            active = pool.state == "active"
            if not active:
                session.flush()
                return _record(ctx, session, pool)
        try:
            return _apply(ctx, name, allow_disruption=allow_disruption, timeout=timeout,
                          progress=progress, action="pool.resize.apply")
        except VfpoolError:
            with ctx.store.immediate() as session:
                _pool(session, name).vfs_per_pf = old
                events.record(session, "pool.resize.revert", pool=name, old=vfs, new=old)
            raise


def _check_shrink(session: Session, pool: Pool, vfs: int) -> None:
    for member in pool.members:
        start_index = used_indices(range_of(member), vfs).start
        held = session.scalars(select(Lease).where(
            Lease.pf_pci == member.pf_pci, Lease.pool_id == pool.id,
            Lease.state.in_(LIVE_LEASE_STATES), Lease.vf_index >= start_index + vfs)
            .order_by(Lease.vf_index.desc())).first()
        if held is not None:
            raise Conflict(f"cannot shrink pool {pool.name!r} to {vfs} VFs per PF: VF "
                           f"{held.vf_index} of PF {member.pf_pci} is leased to {held.owner!r}")


def replace_name(spec: PoolSpec, name: str) -> PoolSpec:
    return replace(spec, name=validate_name(name))


def parse_spec(name: str, pfs: list[str], vfs: int, method: str, mode: str,
               defaults: VfDefaults) -> PoolSpec:
    validate_name(name)
    return PoolSpec(name=name, pfs=tuple(PfRef.parse(text) for text in pfs), vfs=vfs,
                    method=method, mode=mode,  # type: ignore[arg-type]
                    defaults=defaults).validate()


__all__ = ["Method", "Mode", "define", "destroy", "dumpconfig", "from_toml",
           "info", "list_pools", "parse_spec", "replace_name", "resize", "set_autostart", "start",
           "start_autostarted", "undefine"]
