"""The inventory report (`vfpool report`): pools, PFs, VFs with their live leases, and the
newest events, read from the store alone, in one transaction and a handful of set-based
queries, then rendered as a table, JSON, CSV or the Prometheus text exposition format.

A pool's VFs are those of its members' ``used_indices`` (the first ``vfs_per_pf`` of each
member's range), as in ``pools.info``; an inactive pool has none, so its counts are zero.

CSV is one rectangle, one row per VF with its pool and PF columns repeated, because that is
what a spreadsheet or ``csvkit`` wants; the pool and PF counts are a GROUP BY away, and the
JSON format carries the whole report. Lines end in ``\\n`` (not RFC 4180's CRLF), like
every other vfpool output.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.orm import Session

from vfpool.errors import HostError, InvalidInput, PermissionDenied, describe_oserror
from vfpool.service.context import Context
from vfpool.service.events import EventRow, read_events
from vfpool.store import LIVE_LEASE_STATES, Lease, Pf, Pool, PoolPf, Vf, utcnow
from vfpool.store.models import VF_STATES, Host
from vfpool.store.queries import in_member, zero_counts
from vfpool.store.scope import set_host

FORMATS = ("table", "json", "csv", "prometheus")
EVENT_LIMIT = 20
MISSING = "-"


# ---------------------------------------------------------------- the report as data

@dataclass
class PfSummary:
    """One PF of one pool: where it is, and the pool's VFs on it by state."""

    pci: str
    netdev: str | None
    driver: str | None
    numa_node: int | None
    range: str | None
    vfs: dict[str, int] = field(default_factory=zero_counts)


@dataclass
class PoolSummary:
    name: str
    state: str
    autostart: bool
    mode: str
    leases: int  # live (reserved or active) leases
    pfs: list[PfSummary] = field(default_factory=list)

    @property
    def vfs(self) -> dict[str, int]:
        totals = zero_counts()
        for pf in self.pfs:
            for key, count in pf.vfs.items():
                totals[key] += count
        return totals


@dataclass(frozen=True)
class VfRow:
    """A VF of an active pool, with its live lease if it has one."""

    pool: str
    pf: str
    pf_netdev: str | None
    numa_node: int | None
    index: int
    pci: str
    netdev: str | None
    state: str
    reason: str | None
    lease_id: int | None
    lease_state: str | None
    owner: str | None
    mac: str | None
    vlan: int | None
    lease_created_at: datetime | None
    lease_age: int | None  # whole seconds since lease_created_at


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    pools: list[PoolSummary]
    vfs: list[VfRow]
    events: list[EventRow]  # newest first


# ---------------------------------------------------------------- building it

def _pools(session: Session) -> tuple[list[PoolSummary], dict[tuple[int, str], PfSummary]]:
    live: dict[int, int] = {pool_id: count for pool_id, count in session.execute(
        select(Lease.pool_id, func.count()).where(Lease.state.in_(LIVE_LEASE_STATES))
        .group_by(Lease.pool_id))}
    rows = session.execute(
        select(Pool.id, Pool.name, Pool.state, Pool.autostart, Pool.mode, PoolPf.pf_pci,
               PoolPf.range_start, PoolPf.range_end, Pf.netdev, Pf.driver, Pf.numa_node)
        .select_from(Pool).outerjoin(PoolPf, PoolPf.pool_id == Pool.id)
        .outerjoin(Pf, Pf.pci == PoolPf.pf_pci)
        .order_by(Pool.name, PoolPf.position))
    summaries: dict[int, PoolSummary] = {}
    members: dict[tuple[int, str], PfSummary] = {}
    for (pool_id, name, state, autostart, mode, pf_pci, range_start, range_end, netdev,
         driver, numa_node) in rows:
        summary = summaries.get(pool_id)
        if summary is None:
            summary = summaries[pool_id] = PoolSummary(name, state, bool(autostart), mode,
                                                       live.get(pool_id, 0))
        if pf_pci is None:
            continue
        member_range = None if range_start is None else f"{range_start}-{range_end}"
        pf = PfSummary(pf_pci, netdev, driver, numa_node, member_range)
        summary.pfs.append(pf)
        members[(pool_id, pf_pci)] = pf
    return list(summaries.values()), members


def _count_vfs(session: Session, members: dict[tuple[int, str], PfSummary]) -> None:
    counts = session.execute(
        select(PoolPf.pool_id, PoolPf.pf_pci, Vf.state, func.count())
        .select_from(PoolPf)
        .join(Pool, and_(Pool.id == PoolPf.pool_id, Pool.state == "active"))
        .join(Vf, in_member(Pool.vfs_per_pf))
        .group_by(PoolPf.pool_id, PoolPf.pf_pci, Vf.state))
    for pool_id, pf_pci, state, count in counts:
        pf = members[(pool_id, pf_pci)]
        pf.vfs[state] += count
        pf.vfs["total"] += count


def _age(created_at: datetime | None, now: datetime) -> int | None:
    if created_at is None:
        return None
    # A lease stamped after `now` (clock skew between hosts of a fleet) is 0 s old, not negative.
    return max(0, int((now - created_at).total_seconds()))


def _vf_rows(session: Session, now: datetime) -> list[VfRow]:
    rows = session.execute(
        select(Pool.name, PoolPf.pf_pci, Pf.netdev, Pf.numa_node, Vf.vf_index, Vf.pci,
               Vf.netdev, Vf.state, Vf.reason, Lease.id, Lease.state, Lease.owner, Lease.mac,
               Lease.vlan, Lease.created_at)
        .select_from(Pool)
        .join(PoolPf, PoolPf.pool_id == Pool.id)
        .join(Pf, Pf.pci == PoolPf.pf_pci)
        .join(Vf, in_member(Pool.vfs_per_pf))
        # At most one: the partial unique index allows one live lease per VF. The states are
        # inlined as literals, because SQLite uses that partial index only when the query's
        # terms imply its WHERE, which a bound parameter never does.
        .outerjoin(Lease, and_(Lease.vf_id == Vf.id, Lease.state.in_(
            bindparam("live_states", LIVE_LEASE_STATES, expanding=True,
                      literal_execute=True))))
        .where(Pool.state == "active")
        .order_by(Pool.name, PoolPf.position, Vf.vf_index))
    return [VfRow(pool, pf, pf_netdev, numa_node, index, pci, netdev, state, reason, lease_id,
                  lease_state, owner, mac, vlan, created_at, _age(created_at, now))
            for (pool, pf, pf_netdev, numa_node, index, pci, netdev, state, reason, lease_id,
                 lease_state, owner, mac, vlan, created_at) in rows]


def build_report(ctx: Context, *, now: datetime | None = None) -> Report:
    """The inventory at ``now`` (default: the current time; tests pass a fixed one, which
    only lease ages depend on). Reads the store only, never the host."""
    if now is None:
        now = utcnow()
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()} given as now; pass an aware one")
    now = now.astimezone(UTC)
    # One read transaction: the counts, rows and events are one consistent snapshot.
    def read(session: Session) -> Report:
        return _one_host(session, now)

    return ctx.store.read(read)


def _one_host(session: Session, now: datetime) -> Report:
    pools, members = _pools(session)
    _count_vfs(session, members)
    return Report(now, pools, _vf_rows(session, now),
                  read_events(session, limit=EVENT_LIMIT))


@dataclass
class HostReport:
    """One host's part of ``report --fleet``."""

    name: str
    machine_id: str | None
    report: Report


def build_fleet_report(ctx: Context, *, now: datetime | None = None) -> list[HostReport]:
    """Every host's report, by host name, in one read transaction (one snapshot)."""
    when = (now or utcnow()).astimezone(UTC)

    def read(session: Session) -> list[HostReport]:
        hosts = list(session.execute(select(Host.id, Host.name, Host.machine_id)
                                     .order_by(Host.name, Host.id)))
        found = []
        for host_id, name, machine_id in hosts:
            set_host(session, host_id)  # this host's rows, as its own commands see them
            found.append(HostReport(name or f"host-{host_id}", machine_id,
                                    _one_host(session, when)))
        return found

    return ctx.store.read(read, operation="reading every host's report")


# ---------------------------------------------------------------- rendering

def _timestamp(value: datetime | None) -> str | None:
    """ISO-8601 in UTC, to the second: what a person reads in the table."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_age(seconds: int | None) -> str | None:
    """``59s``, ``5m07s``, ``3h04m``, ``2d05h``: two units are enough to read at a glance."""
    if seconds is None:
        return None
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _cell(value: Any) -> str:
    # As vfpool.cli.render.cell; the service layer may not import the CLI.
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """As vfpool.cli.render.table: two spaces between columns, no trailing blanks."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        widths = [max(width, len(value)) for width, value in zip(widths, row, strict=True)]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths,
                                                                         strict=True)).rstrip()
                     for row in [list(headers), *text_rows])


def render_table(report: Report) -> str:
    """Four sections: pools, their PFs, their VFs, and the newest events."""
    counts = ("total", *VF_STATES)
    count_headers = [key.upper() for key in counts]
    pools = _table(["POOL", "STATE", "AUTOSTART", "MODE", *count_headers, "LEASES"],
                   [[pool.name, pool.state, pool.autostart, pool.mode,
                     *(pool.vfs[key] for key in counts), pool.leases]
                    for pool in report.pools])
    pfs = _table(["POOL", "PF", "NETDEV", "DRIVER", "NUMA", "RANGE", *count_headers],
                 [[pool.name, pf.pci, pf.netdev, pf.driver, pf.numa_node, pf.range,
                   *(pf.vfs[key] for key in counts)]
                  for pool in report.pools for pf in pool.pfs])
    vfs = _table(["POOL", "PF", "INDEX", "VF", "NETDEV", "STATE", "OWNER", "LEASE", "MAC",
                  "VLAN", "AGE"],
                 [[vf.pool, vf.pf, vf.index, vf.pci, vf.netdev, vf.state, vf.owner, vf.lease_id,
                   vf.mac, vf.vlan, format_age(vf.lease_age)] for vf in report.vfs])
    events = _table(["ID", "AT", "ACTOR", "ACTION", "POOL", "PF", "VF", "LEASE"],
                    [[event.id, _timestamp(event.at), event.actor, event.action, event.pool,
                      event.pf, event.vf, event.lease_id] for event in report.events])
    return "\n".join([
        f"vfpool report at {_timestamp(report.generated_at)}", "",
        "Pools", pools, "",
        "PFs", pfs, "",
        "VFs", vfs, "",
        f"Events (newest {EVENT_LIMIT})", events,
    ]) + "\n"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def report_document(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data; pool keys follow DESIGN.md's pool object."""
    return {
        "generated_at": _iso(report.generated_at),
        "pools": [{
            "name": pool.name, "state": pool.state, "autostart": pool.autostart,
            "mode": pool.mode, "vfs": pool.vfs, "leases": pool.leases,
            "pfs": [{"pci": pf.pci, "netdev": pf.netdev, "driver": pf.driver,
                     "numa_node": pf.numa_node, "range": pf.range, "vfs": dict(pf.vfs)}
                    for pf in pool.pfs],
        } for pool in report.pools],
        "vfs": [{
            "pool": vf.pool, "pf": vf.pf, "index": vf.index, "pci": vf.pci,
            "netdev": vf.netdev, "state": vf.state, "reason": vf.reason,
            "lease_id": vf.lease_id, "lease_state": vf.lease_state, "owner": vf.owner,
            "mac": vf.mac, "vlan": vf.vlan, "lease_created_at": _iso(vf.lease_created_at),
            "lease_age": vf.lease_age,
        } for vf in report.vfs],
        "events": [event.document() for event in report.events],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_document(report), indent=2) + "\n"


CSV_COLUMNS = ("pool", "pf", "pf_netdev", "numa_node", "index", "pci", "netdev", "state",
               "reason", "lease_id", "lease_state", "owner", "mac", "vlan", "lease_created_at",
               "lease_age")


def _csv_rows(report: Report, *prefix: object) -> Iterator[list[object]]:
    for vf in report.vfs:
        yield [*prefix, vf.pool, vf.pf, vf.pf_netdev, vf.numa_node, vf.index, vf.pci,
               vf.netdev, vf.state, vf.reason, vf.lease_id, vf.lease_state, vf.owner, vf.mac,
               vf.vlan, _iso(vf.lease_created_at), vf.lease_age]


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def render_csv(report: Report) -> str:
    """One row per VF (see the module docstring); empty cells for absent values."""
    return _csv(CSV_COLUMNS, _csv_rows(report))


def _label(value: str) -> str:
    """A label value escaped as the text exposition format wants: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_METRICS = (
    ("vfpool_vfs", "VFs of each PF of a pool, by state (0 for an inactive pool)."),
    ("vfpool_leases", "Live (reserved or active) leases of each pool."),
    ("vfpool_pool_active", "1 when the pool is active, 0 when it is inactive."),
)


def _samples(report: Report, host: str | None) -> dict[str, list[str]]:
    """Each metric's sample lines for one report; with ``host``, every sample carries a
    ``host`` label first (``report --fleet``)."""
    prefix = "" if host is None else f'host="{_label(host)}",'
    samples: dict[str, list[str]] = {name: [] for name, _ in _METRICS}
    for pool in report.pools:
        pool_label = f'{prefix}pool="{_label(pool.name)}"'
        for pf in pool.pfs:
            for state in VF_STATES:
                samples["vfpool_vfs"].append(
                    f'vfpool_vfs{{{pool_label},pf="{_label(pf.pci)}",state="{state}"}} '
                    f'{pf.vfs[state]}')
        samples["vfpool_leases"].append(f"vfpool_leases{{{pool_label}}} {pool.leases}")
        samples["vfpool_pool_active"].append(
            f'vfpool_pool_active{{{pool_label}}} {int(pool.state == "active")}')
    return samples


def _exposition(parts: Sequence[dict[str, list[str]]]) -> str:
    lines: list[str] = []
    for name, help_text in _METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for part in parts:
            lines += part[name]
    return "\n".join(lines) + "\n"


def render_prometheus(report: Report) -> str:
    """The text exposition format for node_exporter's textfile collector: gauges only, a
    sample for every pool, PF and state even when zero (so a series never vanishes just
    because its count dropped to zero), and no timestamps, which the collector rejects."""
    return _exposition([_samples(report, None)])


def render_fleet(hosts: Sequence[HostReport], output_format: str) -> str:
    """``report --fleet``: every host's report, each part naming its host."""
    if output_format == "prometheus":
        return _exposition([_samples(host.report, host.name) for host in hosts])
    if output_format == "json":
        when = hosts[0].report.generated_at if hosts else utcnow()  # one snapshot for all
        document = {"generated_at": _iso(when), "hosts": [
            {"name": host.name, "machine_id": host.machine_id,
             **{key: value for key, value in report_document(host.report).items()
                if key != "generated_at"}} for host in hosts]}
        return json.dumps(document, indent=2) + "\n"
    if output_format == "csv":
        return _csv(("host", *CSV_COLUMNS),
                    (row for host in hosts for row in _csv_rows(host.report, host.name)))
    return "\n".join(f"host {host.name}\n{render_table(host.report)}" for host in hosts)


RENDERERS = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
    "prometheus": render_prometheus,
}


def check_format(output_format: str, option: str = "--format") -> None:
    """Refuse a format that is not one of FORMATS (exit 2), naming the option."""
    if output_format not in FORMATS:
        raise InvalidInput(f"invalid {option} {output_format!r}: use table, json, csv or "
                           "prometheus")


def render(report: Report, output_format: str) -> str:
    return RENDERERS[output_format](report)


# ---------------------------------------------------------------- writing it

def _write_error(path: Path, exc: OSError) -> HostError | PermissionDenied:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return PermissionDenied(f"cannot write {path}: {reason}", path=str(path),
                                errno=exc.errno)
    if exc.errno == errno.ENOENT:
        return HostError(f"cannot write {path}: directory {path.parent} does not exist",
                         errno=exc.errno, path=str(path))
    return HostError(f"cannot write {path}: {describe_oserror(exc)}", errno=exc.errno,
                     path=str(path))


def write_atomically(path: Path | str, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` whole, or leave it as it was.

    The text goes to a temp file in the same directory (so the rename cannot cross file
    systems), is fsynced, then renamed over ``path``; a reader such as node_exporter sees the
    old file or the new one, never half of one. The temp name starts with a dot and ends in
    ``.tmp``, which the textfile collector (``*.prom`` only) ignores. ``mode`` is set with
    fchmod, so the umask does not narrow it.
    """
    path = Path(path)
    if path.is_dir():
        raise HostError(f"cannot write {path}: it is a directory", errno=errno.EISDIR,
                        path=str(path))
    try:
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temp_name)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    # Make the rename itself durable; a file system that cannot fsync a directory still
    # has the complete file in place.
    with suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
