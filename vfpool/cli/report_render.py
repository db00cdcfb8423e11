"""The inventory report (vfpool.service.report's ``Report``) as text: a table, JSON or CSV,
and the atomic ``--output`` write. Prometheus metrics are in ``report_metrics``, which
imports prometheus_client only when that format is asked for.

CSV is one rectangle, one row per VF with its pool and PF columns repeated, because that is
what a spreadsheet or ``csvkit`` wants; the pool and PF counts are a GROUP BY away, and the
JSON format carries the whole report. Lines end in ``\\n`` (not RFC 4180's CRLF), like
every other vfpool output.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from vfpool.cli.render import table
from vfpool.errors import InvalidInput
from vfpool.service.report import EVENT_LIMIT, VF_STATES, FleetReport, Report

FORMATS = ("table", "json", "csv", "prometheus")
COUNTS = ("total", *VF_STATES)


def check_format(output_format: str, option: str = "--format") -> None:
    """Refuse a format that is not one of FORMATS (exit 2), naming the option."""
    if output_format not in FORMATS:
        raise InvalidInput(f"invalid {option} {output_format!r}: use table, json, csv or "
                           "prometheus")


# ---------------------------------------------------------------- table

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


def render_table(report: Report, *, colour: bool = False) -> str:
    """Four sections: pools, their PFs, their VFs, and the newest events. ``colour``: state
    words coloured as on a terminal (never in a file)."""
    count_headers = [key.upper() for key in COUNTS]
    pools = table(["POOL", "STATE", "AUTOSTART", "MODE", *count_headers, "LEASES"],
                  [[pool.name, pool.state, pool.autostart, pool.mode,
                    *(pool.vfs[key] for key in COUNTS), pool.leases]
                   for pool in report.pools], colour=colour)
    pfs = table(["POOL", "PF", "NETDEV", "DRIVER", "NUMA", "RANGE", *count_headers],
                [[pool.name, pf.pci, pf.netdev, pf.driver, pf.numa_node, pf.range,
                  *(pf.vfs[key] for key in COUNTS)]
                 for pool in report.pools for pf in pool.pfs], colour=colour)
    vfs = table(["POOL", "PF", "INDEX", "VF", "NETDEV", "STATE", "OWNER", "LEASE", "MAC",
                 "VLAN", "AGE"],
                [[vf.pool, vf.pf, vf.index, vf.pci, vf.netdev, vf.state, vf.owner, vf.lease_id,
                  vf.mac, vf.vlan, format_age(vf.lease_age)] for vf in report.vfs],
                colour=colour)
    events = table(["ID", "AT", "ACTOR", "ACTION", "POOL", "PF", "VF", "LEASE"],
                   [[event.id, _timestamp(event.at), event.actor, event.action, event.pool,
                     event.pf, event.vf, event.lease_id] for event in report.events],
                   colour=colour)
    return "\n".join([
        f"vfpool report at {_timestamp(report.generated_at)}", "",
        "Pools", pools, "",
        "PFs", pfs, "",
        "VFs", vfs, "",
        f"Events (newest {EVENT_LIMIT})", events,
    ]) + "\n"


# ---------------------------------------------------------------- JSON

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


# ---------------------------------------------------------------- CSV

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


# ---------------------------------------------------------------- any format

def render(found: Report | FleetReport[Report], output_format: str, *,
           colour: bool = False) -> str:
    """A report (or, for ``report --fleet``, every host's) in ``output_format``, one of
    FORMATS. ``colour``: state words in tables coloured, as for a terminal."""
    if output_format == "prometheus":
        from vfpool.cli import report_metrics

        return report_metrics.render_prometheus(found)
    if isinstance(found, FleetReport):
        return _render_fleet(found, output_format, colour=colour)
    if output_format == "json":
        return render_json(found)
    if output_format == "csv":
        return render_csv(found)
    return render_table(found, colour=colour)


def _render_fleet(fleet: FleetReport[Report], output_format: str, *, colour: bool) -> str:
    """Every host's report, each part naming its host."""
    hosts = fleet.hosts
    if output_format == "json":
        document = {"generated_at": _iso(fleet.generated_at), "hosts": [
            {"name": host.name, "machine_id": host.machine_id,
             **{key: value for key, value in report_document(host.report).items()
                if key != "generated_at"}} for host in hosts]}
        return json.dumps(document, indent=2) + "\n"
    if output_format == "csv":
        return _csv(("host", *CSV_COLUMNS),
                    (row for host in hosts for row in _csv_rows(host.report, host.name)))
    return "\n".join(f"host {host.name}\n{render_table(host.report, colour=colour)}"
                     for host in hosts)
