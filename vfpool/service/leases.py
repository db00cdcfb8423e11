"""VF leases: atomic acquire and release, with the VF's config applied and restored.

Acquire is reserve → save → apply → bind → verify → activate (DESIGN.md, safety rules):

1. one ``BEGIN IMMEDIATE`` transaction picks the VFs and writes ``reserved`` leases, with the
   config vfpool will apply (``applied_config``);
2. under the VF's lock, the VF's current config and driver are saved in the lease row and
   committed *before* anything changes on the host, so a crash at any later point leaves the
   store holding what to restore;
3. the config is applied through the PF, 4. the mode's driver bound, 5. everything read back,
6. the lease marked ``active``.

On failure the host changes are undone and the VF is free again. Release restores the saved
config and driver under the same VF lock, after re-reading the lease: a late release of a lease
that is no longer live never touches the VF (SRIOV-FACTS.md, "what goes wrong in the field").

Locks (host/lock.py): an acquire or a release holds the shared lock of the PFs it works on for
its whole run, so no pool start, resize, destroy or module reload changes those PFs under it;
and the VF's lock while it changes that VF. Each store transaction is short and holds no host
I/O: the host is read or changed between transactions, never inside one.

What a context remembers (service/context.py), for a process that leases all day through the
Python API; a CLI command starts with nothing remembered and takes the steps above:

- The VF its last release freed in each pool, which the pool's next acquire is likely to pick
  (the lowest free index). That acquire takes the VF's lock first, if it is free to take, and
  reads the VF's config and driver; the reservation then saves them in the lease row when it
  does pick that VF, and step 2's transaction is skipped. The lock is held from the read until
  the lease is set up, so what was read is what the VF has when it is changed, and the saved
  config is durable before the host changes, as above. A guess the reservation does not pick
  is let go before the set-up.
- The leases it acquired, with their PF, VF and token hash: their release checks the token
  and finds its locks without a read of the store. The lease itself is read again under the
  locks, as for any release.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import secrets
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from vfpool.errors import (
    Conflict,
    Exhausted,
    HostError,
    InvalidInput,
    KernelRefusal,
    NotFound,
    PermissionDenied,
    VerificationError,
    VfpoolError,
    describe_oserror,
)
from vfpool.host import binding
from vfpool.host.netlink import fields_for
from vfpool.model.drivers import DriverInfo, driver_info
from vfpool.model.pci import PciAddress
from vfpool.model.pool import VfRange, validate_link_state
from vfpool.model.snapshot import PfLink, PfSnapshot, VfSnapshot
from vfpool.model.vfconfig import (
    VfConfig,
    generated_mac,
    validate_lease_mac,
    validate_owner,
    validate_vlan,
)
from vfpool.service import events
from vfpool.service.context import Context, FreedVf, KnownLease
from vfpool.service.lease_results import (
    LeaseAcquired,
    LeaseDetail,
    LeaseInfo,
    LeasePf,
    LeasePreview,
    LeaseVf,
)
from vfpool.store.direct import Transaction
from vfpool.store.leasing import FreeVfRow, LeaseRow, LeaseRows
from vfpool.store.pool_rows import PoolRow
from vfpool.store.states import LeaseState, Mode, PoolState, VfState
from vfpool.store.types import utcnow

if TYPE_CHECKING:
    # The ORM classes, for the functions that reconcile, watch and pool changes call with a
    # session; a lease command never loads them (tests/leases/test_cold_path.py).
    from vfpool.store.models import Lease

TOKEN_BYTES = 24
NETDEV_TIMEOUT = 10.0
# Bounds of what the kernel can hold: a PID (PID_MAX_LIMIT), a NUMA node (MAX_NUMNODES with
# CONFIG_NODES_SHIFT=10).
PID_MAX = 4_194_304
NUMA_NODES = 1024
COUNT_MAX = 4096


class _Ranged(Protocol):
    """A membership's stored range (a ``PoolPf``, or a row of store/pool_rows.py)."""

    @property
    def range_start(self) -> int | None: ...

    @property
    def range_end(self) -> int | None: ...


def member_range(member: _Ranged) -> VfRange | None:
    if member.range_start is None or member.range_end is None:
        return None
    return VfRange(member.range_start, member.range_end)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------- records

def lease_info(lease: LeaseRow, *, token: str | None = None) -> LeaseInfo:
    """A lease as the services return it; ``token`` only right after acquire."""
    return LeaseInfo(**_info_fields(lease), token=token)


def _info_fields(lease: LeaseRow) -> dict[str, Any]:
    return {"id": lease.id, "pool": lease.pool, "owner": lease.owner, "state": lease.state,
            "mode": lease.mode, "mac": lease.mac, "vlan": lease.vlan,
            "numa_node": lease.numa_node, "created_at": lease.created_at,
            "pf": LeasePf(lease.pf_pci, lease.pf_netdev),
            "vf": LeaseVf(lease.vf_index, lease.vf_pci, lease.vf_netdev),
            "owner_pid": lease.owner_pid, "released_at": lease.released_at}


def _lease(session: Session, lease_id: int) -> Lease:
    from vfpool.store.queries import Queries

    return Queries(session).lease(lease_id)


# ---------------------------------------------------------------- acquire

def _leasable(rows: LeaseRows, pool_name: str, count: int, *, numa_node: int | None,
              spread: bool, lock: bool) -> tuple[PoolRow, list[FreeVfRow]]:
    """An active pool and the ``count`` free VFs the allocation policy picks (the requested
    NUMA node first, then the lowest index in pool order, or with ``spread`` the lowest index
    across PFs in turn); Exhausted when it has fewer. ``lock``: lock the chosen rows (an
    acquire's write transaction)."""
    pool = rows.pool(pool_name)
    if pool.state != PoolState.ACTIVE:
        raise Conflict(f"pool {pool_name!r} is not active; start it with `vfpool pool start "
                       f"{pool_name}`")
    chosen = rows.free_vfs(pool, count, numa_node=numa_node, spread=spread, lock=lock)
    if len(chosen) < count:
        raise Exhausted(f"pool {pool_name!r} has {len(chosen)} free VF(s); {count} "
                        "requested")
    return pool, chosen


@dataclass(frozen=True)
class _Found:
    """A VF as the host has it before vfpool changes it: its PF, itself, and what a lease
    saves to restore it (its config, driver, driver override and MTU)."""

    pf: PfLink
    vf: VfSnapshot
    saved: dict[str, Any]


def _found(ctx: Context, pf_pci: str, vf_index: int) -> _Found:
    pf, vf = _pf_and_vf(ctx, pf_pci, vf_index)
    saved = _read_config(ctx, pf, vf_index).as_dict()
    saved["driver"] = vf.driver
    saved["driver_override"] = ctx.sysfs.driver_override(vf.pci)
    saved["mtu"] = vf.netdevs[0].mtu if vf.netdevs else None
    return _Found(pf, vf, saved)


@dataclass
class _Planned:
    lease_id: int
    token: str
    token_hash: str
    vf_id: int
    vf_pci: str
    vf_index: int
    pf_pci: str
    owner: str
    desired: VfConfig
    driver: str | None  # the VF's driver for the lease's mode
    mtu: int | None
    mode: str
    ahead: _Found | None  # the VF read before the reservation, which saved it


def validate_count(count: int) -> None:
    if not 1 <= count <= COUNT_MAX:
        raise InvalidInput(f"--count must be 1-{COUNT_MAX}, not {count}")


def validate_numa_node(numa_node: int | None) -> None:
    if numa_node is not None and not 0 <= numa_node < NUMA_NODES:
        raise InvalidInput(f"NUMA node {numa_node} is outside 0-{NUMA_NODES - 1}")


def _validate_acquire(owner: str, count: int, mac: str | None, vlan: int | None,
                      numa_node: int | None, owner_pid: int | None = None) -> str | None:
    validate_owner(owner)
    validate_count(count)
    if vlan is not None:
        validate_vlan(vlan)
    validate_numa_node(numa_node)
    if owner_pid is not None and not 0 < owner_pid <= PID_MAX:
        raise InvalidInput(f"--owner-pid {owner_pid} is not a process id (1-{PID_MAX})")
    if mac is None:
        return None
    mac = validate_lease_mac(mac)
    if count > 1:
        raise InvalidInput(f"--mac names one VF; it cannot go with --count {count}")
    return mac


class _MembersChanged(Exception):
    """The pool's PFs are not the ones locked: it was redefined meanwhile; look again."""


def _pool_pfs(ctx: Context, pool_name: str) -> frozenset[str]:
    def read(transaction: Transaction, host_id: int | None) -> frozenset[str]:
        rows = LeaseRows(transaction, host_id)
        return rows.member_pcis(rows.pool(pool_name))

    return ctx.store.read_rows(read)


def _link_state(wanted: str | None, info: DriverInfo) -> str | None:
    """The link state a leased VF gets: the lease's or the pool's, else ``auto`` (the VF's
    link follows the PF's), so that a VF an administrator left ``disable`` is not handed out
    disabled. Drivers without link state control (igb) are left alone unless asked."""
    if "link_state" in info.unsupported_vf_fields:
        if wanted is not None:
            raise InvalidInput(f"driver {info.name} cannot set link_state on its VFs")
        return None
    return wanted or "auto"


def _read_ahead(ctx: Context, held: ExitStack, guess: FreedVf | None,
                locked: frozenset[str]) -> _Found | None:
    """The VF this context freed last in the pool, read under its lock (entered on ``held``)
    for the reservation to save; None without a guess, for a guess on a PF not ``locked``,
    when another process holds the VF's lock, or when the VF cannot be read (the acquire
    then goes the usual way)."""
    if guess is None or guess.pf_pci not in locked or \
            not held.enter_context(ctx.locks.vf(guess.vf_pci, wait=False)):
        return None
    try:
        found = _found(ctx, guess.pf_pci, guess.vf_index)
    except (VfpoolError, OSError):
        return None
    return found if str(found.vf.pci) == guess.vf_pci else None


def _reserve(ctx: Context, pool_name: str, owner: str, count: int, mac: str | None,
             vlan: int | None, numa_node: int | None, spread: bool,
             owner_pid: int | None, acquirer: str, locked: frozenset[str],
             link_state: str | None = None, ahead: _Found | None = None
             ) -> tuple[list[_Planned], bool | None]:
    """Step 1. ``ahead``: a VF read under its lock before this (``_read_ahead``); if the
    reservation picks it, its lease row takes what was read as its saved config."""
    boot_id = ctx.sysfs.boot_id()

    def reserve(transaction: Transaction, host_id: int | None
                ) -> tuple[list[_Planned], bool | None, frozenset[str]]:
        rows = LeaseRows(transaction, host_id)
        pool, chosen = _leasable(rows, pool_name, count, numa_node=numa_node, spread=spread,
                                 lock=True)
        members = rows.member_pcis(pool)
        if not members <= locked:
            raise _MembersChanged
        numa_met = None if numa_node is None else all(
            candidate.numa_node == numa_node for candidate in chosen)
        if mac is not None and (holder := rows.live_lease_with_mac(mac)) is not None:
            raise Conflict(f"MAC {mac} is already used by lease {holder[0]} of {holder[1]!r}")
        # Each VF's first generated MAC, checked in one statement; a taken one (rare) is
        # followed by the next attempt, checked on its own.
        taken = set() if mac is not None else rows.live_macs(
            [generated_mac(pool_name, owner, candidate.vf_index) for candidate in chosen])
        planned = []
        logged = []
        for candidate in chosen:
            lease_mac = mac
            attempt = 0
            while lease_mac is None:
                wanted = generated_mac(pool_name, owner, candidate.vf_index, attempt)
                if wanted not in taken and (attempt == 0 or not rows.live_macs([wanted])):
                    lease_mac = wanted
                attempt += 1
            taken.add(lease_mac)
            lease_vlan = vlan if vlan is not None else pool.vlan
            info = driver_info(candidate.pf_driver)
            desired = VfConfig(mac=lease_mac, vlan=lease_vlan or 0,
                               qos=(pool.qos or 0) if lease_vlan else 0, spoofchk=pool.spoofchk,
                               trust=pool.trust, link_state=_link_state(
                                   link_state or pool.link_state, info),
                               min_tx_rate=pool.min_tx_rate, max_tx_rate=pool.max_tx_rate)
            driver = "vfio-pci" if pool.mode == Mode.VFIO else info.vf_driver
            token = secrets.token_urlsafe(TOKEN_BYTES)
            token_hash = hash_token(token)
            read = ahead if ahead is not None and candidate.vf_pci == str(ahead.vf.pci) \
                and candidate.pf_pci == str(ahead.pf.pci) else None
            lease_id = rows.add_lease({
                "host_id": pool.host_id, "pool_id": pool.id, "vf_id": candidate.vf_id,
                "pf_pci": candidate.pf_pci, "vf_pci": candidate.vf_pci,
                "vf_index": candidate.vf_index, "owner": owner, "owner_pid": owner_pid,
                "acquirer": acquirer, "token_hash": token_hash,
                "state": LeaseState.RESERVED, "mode": pool.mode, "mac": lease_mac,
                "vlan": lease_vlan or None, "numa_node": candidate.numa_node,
                "boot_id": boot_id,
                "applied_config": {**desired.as_dict(), "driver": driver, "mtu": pool.mtu},
                "saved_config": None if read is None else read.saved})
            logged.append({"host_id": pool.host_id, **events.entry(
                "lease.reserve", pool=pool_name, pf=candidate.pf_pci, vf=candidate.vf_pci,
                lease_id=lease_id, owner=owner)})
            planned.append(_Planned(lease_id, token, token_hash, candidate.vf_id,
                                    candidate.vf_pci, candidate.vf_index, candidate.pf_pci,
                                    owner, desired, driver, pool.mtu, pool.mode, read))
        rows.set_vfs([candidate.vf_id for candidate in chosen], VfState.RESERVED)
        rows.add_events(logged)
        return planned, numa_met, members

    planned, numa_met, members = ctx.store.write_rows(
        reserve, operation=f"lease acquire from pool {pool_name}")
    ctx.pool_pfs[pool_name] = members
    return planned, numa_met


def acquire(ctx: Context, pool_name: str, owner: str, *, count: int = 1,
            mac: str | None = None, vlan: int | None = None, numa_node: int | None = None,
            spread: bool = False, owner_pid: int | None = None,
            link_state: str | None = None) -> list[LeaseAcquired]:
    """Lease ``count`` VFs of a pool to ``owner``: all of them, or none."""
    mac = _validate_acquire(owner, count, mac, vlan, numa_node, owner_pid)
    if link_state is not None:
        validate_link_state(link_state)
    ctx.require_root("lease acquire")
    guess = ctx.freed.pop(pool_name, None) if count == 1 else None
    with ctx.locks.acquirer() as acquirer:
        for _ in range(3):
            # The PFs this context found in the pool last time, else read now: _reserve
            # checks them under the lock either way, so a stale guess costs one more round.
            pfs = ctx.pool_pfs.get(pool_name) or _pool_pfs(ctx, pool_name)
            # Shared: other leases go on; a start, resize, destroy or reload of these PFs waits.
            with ctx.locks.pfs(pfs, exclusive=False), ExitStack() as held:
                ahead = _read_ahead(ctx, held, guess, pfs)
                try:
                    planned, numa_met = _reserve(ctx, pool_name, owner, count, mac, vlan,
                                                 numa_node, spread, owner_pid, acquirer, pfs,
                                                 link_state, ahead)
                except _MembersChanged:
                    ctx.pool_pfs.pop(pool_name, None)
                    continue
                except VfpoolError:
                    ctx.pool_pfs.pop(pool_name, None)
                    raise
                if not any(item.ahead for item in planned):
                    held.close()  # a guess not picked: its VF's lock goes before the set-up
                return _set_up(ctx, pool_name, planned, numa_met)
    raise Conflict(f"pool {pool_name!r} kept changing while this acquire waited for it; retry")


def _set_up(ctx: Context, pool_name: str, planned: list[_Planned],
            numa_met: bool | None) -> list[LeaseAcquired]:
    activated: list[int] = []
    records: list[LeaseAcquired] = []
    try:
        for item in planned:
            records.append(_activate(ctx, item, pool_name, numa_met))
            activated.append(item.lease_id)
    except BaseException:
        # All or none: undo what is done. A lease that never started setting up is freed too.
        for item in planned:
            if item.lease_id in activated:
                _release_quietly(ctx, item.lease_id, "acquire of the others failed")
            else:
                _cancel_reserved(ctx, item.lease_id, "acquire failed before setting it up")
        raise
    for item in planned:
        _remember_lease(ctx, item.lease_id, KnownLease(item.pf_pci, item.vf_pci,
                                                       item.token_hash))
    return records


LEASES_REMEMBERED = 4096  # per context: a process that never releases what it leases


def _remember_lease(ctx: Context, lease_id: int, known: KnownLease) -> None:
    if len(ctx.leased) >= LEASES_REMEMBERED:
        del ctx.leased[next(iter(ctx.leased))]  # the oldest
    ctx.leased[lease_id] = known


def preview(ctx: Context, pool_name: str, owner: str, *, count: int = 1,
            numa_node: int | None = None, spread: bool = False) -> list[LeasePreview]:
    """The VFs an acquire would choose now, without reserving anything (`--dry-run`)."""
    _validate_acquire(owner, count, None, None, numa_node)

    def choose_now(transaction: Transaction, host_id: int | None) -> list[LeasePreview]:
        pool, chosen = _leasable(LeaseRows(transaction, host_id), pool_name, count,
                                 numa_node=numa_node, spread=spread, lock=False)
        return [LeasePreview(pool.mode, generated_mac(pool_name, owner, c.vf_index),
                             c.numa_node, LeasePf(c.pf_pci, c.pf_netdev),
                             LeaseVf(c.vf_index, c.vf_pci, c.vf_netdev)) for c in chosen]

    return ctx.store.read_rows(choose_now)


def _release_quietly(ctx: Context, lease_id: int, reason: str) -> None:
    # release marks the VF unusable itself when it cannot restore it
    with contextlib.suppress(VfpoolError):
        release_locked(ctx, lease_id, reason=reason)


def _cancel_reserved(ctx: Context, lease_id: int, reason: str) -> None:
    """Free a reserved lease whose VF was never touched. If the store stays busy, the lease
    stays reserved under this process's acquirer lock, and reconcile frees it once this
    process is gone."""
    def cancel(transaction: Transaction, host_id: int | None) -> None:
        rows = LeaseRows(transaction, host_id)
        lease = rows.lease(lease_id)
        if lease.state != LeaseState.RESERVED or lease.saved_config is not None:
            return
        finish_row(rows, lease, VfState.FREE, None, "lease.cancel", reason)

    with contextlib.suppress(VfpoolError):
        ctx.store.write_rows(cancel, operation=f"cancelling reserved lease {lease_id}")


def _pf_and_vf(ctx: Context, pf_pci: str, vf_index: int) -> tuple[PfLink, VfSnapshot]:
    pf = ctx.sysfs.pf_link(PciAddress.parse(pf_pci))
    return pf, _vf(ctx, pf, vf_index)


def _vf(ctx: Context, pf: PfLink, vf_index: int) -> VfSnapshot:
    vf = ctx.sysfs.virtfn(pf.pci, vf_index)
    if vf is None:
        raise HostError(f"VF {vf_index} of PF {pf.label} is not on the host")
    return vf


def _netlink_error(exc: OSError, pf: PfLink | PfSnapshot, index: int, what: str) -> HostError:
    if exc.errno == errno.EOPNOTSUPP:
        return HostError(f"driver {pf.driver} cannot set {what} on VF {index} of PF {pf.label} "
                         "(EOPNOTSUPP)", errno=exc.errno)
    refused = ""
    if isinstance(exc, KernelRefusal):
        refused = f": driver {exc.driver or pf.driver} refused it{exc.why}"
    return HostError(f"setting {what} on VF {index} of PF {pf.label} failed with "
                     f"{describe_oserror(exc)}{refused}", errno=exc.errno)


def _apply_config(ctx: Context, pf: PfLink | PfSnapshot, index: int, config: VfConfig,
                  groups: list[str]) -> None:
    if pf.netdev is None:
        raise HostError(f"PF {pf.label} has no netdev, so its VFs cannot be configured")
    for group in groups:
        try:
            ctx.kernel.netlink.set_vf(pf.netdev, index, group, config)
        except OSError as exc:
            raise _netlink_error(exc, pf, index, group) from exc


def _read_config(ctx: Context, pf: PfLink | PfSnapshot, index: int) -> VfConfig:
    if pf.netdev is None:
        raise HostError(f"PF {pf.label} has no netdev, so its VFs cannot be read")
    try:
        config = ctx.kernel.netlink.vf_config(pf.netdev, index)
    except OSError as exc:
        raise HostError(f"reading the VF config of PF {pf.label} failed with "
                        f"{describe_oserror(exc)}", errno=exc.errno) from exc
    if config is None:
        raise HostError(f"PF {pf.label} reports no config for VF {index}")
    return config


def _wait_for_netdev(ctx: Context, pf_pci: str, index: int) -> VfSnapshot:
    """The VF once its driver's netdev exists and udev has handled it: a fresh netdev is
    ``eth0`` until udev renames it, and that first name must not reach the lease."""
    deadline = time.monotonic() + NETDEV_TIMEOUT
    while True:
        _, vf = _pf_and_vf(ctx, pf_pci, index)
        settled = bool(vf.netdevs) and all(ctx.sysfs.udev_done_with(netdev)
                                            for netdev in vf.netdevs)
        if settled and not ctx.sysfs.udev_runs():
            return vf  # no udev: the name is the driver's and stays
        if settled:
            # udev renames a netdev before it writes its entry, so the snapshot taken before
            # the check may still carry the first name: read again, as udev left it.
            _, again = _pf_and_vf(ctx, pf_pci, index)
            if _ifindexes(again) == _ifindexes(vf):
                return again
            continue
        if time.monotonic() >= deadline:
            if not vf.netdevs:
                raise VerificationError(f"VF {vf.pci} (after {NETDEV_TIMEOUT:g} s)",
                                        {"netdev": ("present", None)})
            return vf
        time.sleep(0.05)


def _ifindexes(vf: VfSnapshot) -> list[int | None]:
    return [netdev.ifindex for netdev in vf.netdevs]


def _activate(ctx: Context, item: _Planned, pool_name: str,
              numa_met: bool | None) -> LeaseAcquired:
    """Steps 2-6 for one reserved lease, under its VF's lock; the lease's record, token
    included, as the activating transaction left it."""
    with ctx.locks.vf(item.vf_pci):
        found = item.ahead  # read, and saved by the reservation, under this lock
        if found is None:
            # Reading the host changes nothing, so it comes before the one transaction that
            # checks the lease is still reserved and saves what the VF has.
            found = _found(ctx, item.pf_pci, item.vf_index)

            def save(transaction: Transaction, host_id: int | None) -> None:
                now = LeaseRows(transaction, host_id).change_reserved(
                    item.lease_id, saved_config=found.saved)
                if now is not None:
                    raise Conflict(f"lease {item.lease_id} was cancelled while it was being "
                                   f"set up (now {now})")

            ctx.store.write_rows(save, operation=f"saving the config of VF {item.vf_pci}")
        pf, vf, saved = found.pf, found.vf, found.saved
        try:
            _apply_config(ctx, pf, item.vf_index, item.desired, fields_for(item.desired))
            binding.bind(ctx.sysfs, vf.pci, item.driver)
            diff = item.desired.differences(_read_config(ctx, pf, item.vf_index))
            if diff:
                raise VerificationError(f"VF {item.vf_index} of PF {pf.label}", diff)
            netdev = None
            if item.mode != Mode.VFIO:
                vf = _wait_for_netdev(ctx, item.pf_pci, item.vf_index)
                if item.desired.mac and vf.netdevs[0].mac != item.desired.mac:
                    # igb and ixgbe give a bound VF the MAC the PF set only at its next probe.
                    binding.reprobe(ctx.sysfs, vf.pci)
                    vf = _wait_for_netdev(ctx, item.pf_pci, item.vf_index)
                    if vf.netdevs[0].mac != item.desired.mac:
                        raise VerificationError(f"VF {vf.pci}", {
                            "netdev mac": (item.desired.mac, vf.netdevs[0].mac)})
                netdev = vf.netdev
                if item.mtu is not None and netdev is not None:
                    try:
                        ctx.kernel.netlink.set_link(netdev, mtu=item.mtu)
                    except OSError as exc:
                        raise HostError(f"setting MTU {item.mtu} on {netdev} failed with "
                                        f"{describe_oserror(exc)}", errno=exc.errno) from exc

            def activate(transaction: Transaction, host_id: int | None) -> LeaseAcquired:
                rows = LeaseRows(transaction, host_id)
                now = rows.change_reserved(item.lease_id, state=LeaseState.ACTIVE,
                                           acquirer=None)
                if now is not None:
                    # `watch` marked it lost (the VF vanished), or reconcile closed it.
                    raise Conflict(f"lease {item.lease_id} became {now} while it was being "
                                   "set up")
                rows.set_vf_netdev(item.vf_id, VfState.LEASED, netdev)
                lease = rows.lease(item.lease_id)
                rows.add_events([{"host_id": lease.host_id, **events.entry(
                    "lease.acquire", pool=pool_name, pf=item.pf_pci, vf=item.vf_pci,
                    lease_id=item.lease_id, owner=item.owner, mode=item.mode,
                    mac=item.desired.mac)}])
                return LeaseAcquired(**_info_fields(lease), token=item.token,
                                     numa_met=numa_met)

            return ctx.store.write_rows(activate,
                                        operation=f"activating lease {item.lease_id}")
        except BaseException as exc:
            outcome, reason = restore_vf(ctx, item.pf_pci, item.vf_index, saved,
                                         applied={**item.desired.as_dict(),
                                                  "driver": item.driver, "mtu": item.mtu})
            why = str(exc) or type(exc).__name__

            def fail(transaction: Transaction, host_id: int | None) -> None:
                rows = LeaseRows(transaction, host_id)
                lease = rows.lease(item.lease_id)
                if lease.live:
                    finish_row(rows, lease, outcome, reason, "lease.acquire.failed", why)

            # If the store stays busy here, the lease stays reserved under this process's
            # acquirer lock, and reconcile finishes it once the process is gone.
            with contextlib.suppress(VfpoolError):
                ctx.store.write_rows(fail, operation=f"undoing lease {item.lease_id}")
            raise


def restore_vf(ctx: Context, pf_pci: str, vf_index: int, saved: dict[str, Any],
               applied: dict[str, Any] | None) -> tuple[VfState, str | None]:
    """Put back the saved config (the fields vfpool set) and driver.

    Returns (free, None), or (unusable, reason) when the VF could not be restored."""
    try:
        pf, vf = _pf_and_vf(ctx, pf_pci, vf_index)
        original = VfConfig.from_dict(saved)
        touched = fields_for(VfConfig.from_dict(applied)) if applied else fields_for(original)
        groups = [group for group in touched if group in fields_for(original)]
        binding.bind(ctx.sysfs, vf.pci, saved.get("driver"))
        binding.set_override(ctx.sysfs, vf.pci, saved.get("driver_override"))
        _apply_config(ctx, pf, vf_index, original, groups)
        current = _read_config(ctx, pf, vf_index)
        wanted = VfConfig.from_dict({key: value for key, value in original.as_dict().items()
                                     if _group_of(key) in groups})
        diff = wanted.differences(current)
        if diff:
            raise VerificationError(f"VF {vf_index} of PF {pf.label}", diff)
        vf = _vf(ctx, pf, vf_index)
        lease_mac = applied.get("mac") if applied else None
        if lease_mac and lease_mac != original.mac and vf.netdevs and \
                vf.netdevs[0].mac == lease_mac:
            # A bound igbvf or ixgbevf keeps the lease's MAC until it is probed again.
            binding.reprobe(ctx.sysfs, vf.pci)
        if saved.get("mtu") and applied and applied.get("mtu"):
            vf = _vf(ctx, pf, vf_index)
            if vf.netdev is not None:
                ctx.kernel.netlink.set_link(vf.netdev, mtu=int(saved["mtu"]))
    except (VfpoolError, OSError) as exc:
        return VfState.UNUSABLE, f"restore failed: {exc}"
    return VfState.FREE, None


def _group_of(key: str) -> str:
    return {"qos": "vlan", "min_tx_rate": "rate", "max_tx_rate": "rate"}.get(key, key)


def finish_lease(session: Session, lease: Lease, vf_state: VfState, vf_reason: str | None,
                 action: str, why: str | None, *,
                 final_state: LeaseState = LeaseState.RELEASED) -> None:
    """``finish_row`` inside an ORM write transaction (reconcile's and watch's): its
    statements run on the session's connection after the session's changes so far, and the
    lease and its VF are expired after them, so that the session reads what they wrote."""
    # Imported when used: store/scope.py loads the ORM's classes, which a lease command never
    # imports (tests/leases/test_cold_path.py).
    from vfpool.store.scope import rows_in

    with rows_in(session, LeaseRows) as rows:
        finish_row(rows, rows.lease(lease.id), vf_state, vf_reason, action, why,
                   final_state=final_state)
    vf = lease.vf
    session.expire(lease)
    if vf is not None:
        session.expire(vf)


def finish_row(rows: LeaseRows, lease: LeaseRow, vf_state: VfState, vf_reason: str | None,
               action: str, why: str | None, *,
               final_state: LeaseState = LeaseState.RELEASED) -> LeaseRow:
    """Close a live lease, read in the same transaction: its final state, its VF's state and
    reason, and the event that says so; the lease as it now is."""
    now = utcnow()
    rows.change_lease(lease.id, None, state=final_state, acquirer=None, released_at=now)
    if lease.vf_id is not None:
        rows.set_vfs([lease.vf_id], vf_state, reason=vf_reason)
    rows.add_events([{"host_id": lease.host_id, **events.entry(
        action, pool=lease.pool, pf=lease.pf_pci, vf=lease.vf_pci, lease_id=lease.id,
        owner=lease.owner, reason=why, vf_state=vf_state, vf_reason=vf_reason)}])
    return lease._replace(state=final_state, acquirer=None, released_at=now)


# ---------------------------------------------------------------- release

def release(ctx: Context, lease_id: int, *, token: str | None = None, force: bool = False,
            reason: str | None = None) -> LeaseInfo:
    """Restore the VF's saved config and driver, free it, and close the lease."""
    lease = ctx.leased.pop(lease_id, None)
    if lease is None:
        def check(transaction: Transaction, host_id: int | None) -> KnownLease:
            found = LeaseRows(transaction, host_id).lease(lease_id)
            return KnownLease(found.pf_pci, found.vf_pci, found.token_hash)

        lease = ctx.store.read_rows(check)
    if not force:
        if token is None:
            raise InvalidInput(f"releasing lease {lease_id} needs its --token (or --force "
                               "for administrators)")
        if not hmac.compare_digest(hash_token(token), lease.token_hash):
            raise PermissionDenied(f"wrong token for lease {lease_id}")
    ctx.require_root("lease release")
    with ctx.locks.acquirer(), ctx.locks.pfs([lease.pf_pci], exclusive=False):
        return release_locked(ctx, lease_id,
                              reason=reason or ("forced" if force else "released by its owner"),
                              vf_pci=lease.vf_pci)


def release_locked(ctx: Context, lease_id: int, *, reason: str,
                   vf_pci: str | None = None) -> LeaseInfo:
    """Release a lease; the caller holds this process's acquirer lock and the lease's PF lock
    (shared, or exclusive for a pool destroy). Takes the VF lock, re-reads the lease under it,
    and refuses one that is no longer live. ``vf_pci``: the lease's VF, when the caller has
    read it already (a lease's VF address never changes)."""
    with ctx.locks.acquirer() as change:
        if vf_pci is None:
            vf_pci = ctx.store.read_rows(
                lambda transaction, host_id: LeaseRows(transaction, host_id).lease(lease_id).vf_pci)
        with ctx.locks.vf(vf_pci):
            def claim(transaction: Transaction, host_id: int | None) -> LeaseRow:
                rows = LeaseRows(transaction, host_id)
                lease = rows.lease(lease_id)
                if not lease.live:
                    raise Conflict(f"lease {lease_id} is {lease.state}, not active; nothing to "
                                   "release")
                # Name this process's lock in the lease before touching the host: if it dies
                # mid-restore, reconcile sees the lock free and finishes the release.
                rows.change_lease(lease_id, None, acquirer=change)
                return lease

            claimed = ctx.store.write_rows(claim, operation=f"lease release {lease_id}")
            outcome: VfState = VfState.FREE
            problem: str | None = None
            if claimed.saved_config is not None:
                outcome, problem = restore_vf(ctx, claimed.pf_pci, claimed.vf_index,
                                              claimed.saved_config, claimed.applied_config)

            def finish(transaction: Transaction, host_id: int | None) -> LeaseInfo:
                rows = LeaseRows(transaction, host_id)
                lease = rows.lease(lease_id)
                # `watch` may have marked it lost meanwhile (its VF vanished): that stands.
                if lease.live and lease.acquirer == change:
                    lease = finish_row(rows, lease, outcome, problem, "lease.release", reason)
                return lease_info(lease)

            record = ctx.store.write_rows(finish, operation=f"recording the release of lease "
                                                            f"{lease_id}")
    if record.state == LeaseState.RELEASED and outcome == VfState.FREE:
        ctx.freed[record.pool] = FreedVf(claimed.pf_pci, claimed.vf_pci, claimed.vf_index)
    if problem:
        raise HostError(f"lease {lease_id} is released, but VF {record.vf.pci} is now "
                        f"unusable: {problem}")
    return record


def release_owner(ctx: Context, owner: str, *, reason: str | None = None) -> list[LeaseInfo]:
    """Release every live lease of ``owner``; the owner's name stands in for the tokens."""
    validate_owner(owner)
    ids = ctx.store.read_rows(lambda transaction, host_id: [
        lease.id for lease in LeaseRows(transaction, host_id).leases(owner=owner)])
    if not ids:
        raise NotFound(f"owner {owner!r} holds no leases")
    records, problems = [], []
    for lease_id in ids:
        # One VF that cannot be restored must not keep the owner's other leases alive.
        try:
            records.append(release(ctx, lease_id, force=True,
                                   reason=reason or f"release --owner {owner}"))
        except HostError as exc:
            problems.append(str(exc))
    if problems:
        raise HostError(f"released {len(ids)} lease(s) of {owner!r}, but "
                        f"{'; '.join(problems)}")
    return records


# ---------------------------------------------------------------- drift

def drift(applied: dict[str, Any] | None, current: VfConfig | None,
          driver: str | None) -> dict[str, tuple[object, object]]:
    """What of a lease's applied config a VF no longer has: field -> (desired, current).

    ``current`` None means the VF is not on the host at all."""
    if applied is None:
        return {}
    wanted = VfConfig.from_dict(applied)
    if current is None:
        return {"present": (True, False)}
    diff = wanted.differences(current)
    if "driver" in applied and applied["driver"] != driver:
        diff["driver"] = (applied["driver"], driver)
    return diff


def host_drift(ctx: Context, pf_pci: str, vf_index: int,
               applied: dict[str, Any] | None) -> dict[str, tuple[object, object]]:
    """``drift()`` against the VF as the host has it now."""
    try:
        pf, vf = _pf_and_vf(ctx, pf_pci, vf_index)
    except (HostError, NotFound):
        return drift(applied, None, None)
    return drift(applied, _read_config(ctx, pf, vf_index), vf.driver)


def settle_resets(ctx: Context,
                  lease_ids: list[int]) -> dict[int, tuple[VfState, str | None]]:
    """After a disruptive step failed: the leases whose VF it did reset (gone, or no longer
    carrying the lease's config), with the VF state to record: ``free`` for a VF that came
    back fresh, ``unusable`` ("missing on host") for one that is gone."""
    settled: dict[int, tuple[VfState, str | None]] = {}
    for lease_id in lease_ids:
        def where(session: Session, lease_id: int = lease_id) -> tuple[str, int, Any]:
            lease = _lease(session, lease_id)
            return lease.pf_pci, lease.vf_index, lease.applied_config

        pf_pci, vf_index, applied = ctx.store.read(where)
        diff = host_drift(ctx, pf_pci, vf_index, applied)
        if "present" in diff:
            settled[lease_id] = (VfState.UNUSABLE, "missing on host")
        elif diff:
            settled[lease_id] = (VfState.FREE, None)
    return settled


# ---------------------------------------------------------------- reading

def list_leases(ctx: Context, *, pool: str | None = None, owner: str | None = None,
                include_finished: bool = False) -> list[LeaseInfo]:
    return ctx.store.read_rows(lambda transaction, host_id: [
        lease_info(lease) for lease in LeaseRows(transaction, host_id).leases(
            pool=pool, owner=owner, include_finished=include_finished)])


def show_lease(ctx: Context, lease_id: int) -> LeaseDetail:
    def show(transaction: Transaction, host_id: int | None) -> LeaseDetail:
        lease = LeaseRows(transaction, host_id).lease(lease_id)
        return LeaseDetail(**_info_fields(lease), saved_config=lease.saved_config,
                           applied_config=lease.applied_config, boot_id=lease.boot_id)

    return ctx.store.read_rows(show)


def live_leases(session: Session) -> list[Lease]:
    from vfpool.store.queries import Queries

    return Queries(session).live_leases()


