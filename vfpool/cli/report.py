"""`vfpool report`: the inventory report, as a table, JSON, CSV or Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import emit
from vfpool.errors import InvalidInput
from vfpool.service import report as report_service

app = VfpoolTyper()


@app.command("report")
def report(
    cli: typer.Context,
    output_format: str = typer.Option("table", "--format",
                                      metavar="table|json|csv|prometheus",
                                      help="table for people, json for scripts, csv (one row "
                                           "per VF) for spreadsheets, prometheus for "
                                           "node_exporter's textfile collector."),
    output: Path | None = typer.Option(None, "--output", metavar="FILE",
                                       help="Write to FILE instead of stdout, atomically "
                                            "(temp file, then rename), mode 0644."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fleet: bool = typer.Option(False, "--fleet",
                               help="Every host that shares the store, each part naming its "
                                    "host (Prometheus samples get a host label)."),
) -> None:
    """Report pools, PFs, VFs with their leases, and the 20 newest events, from the store.

    \b
    Example:
      vfpool report --format prometheus --output /var/lib/node_exporter/vfpool.prom
    """
    report_service.check_format(output_format)
    if as_json:
        if output_format not in ("table", "json"):
            raise InvalidInput(f"give --json or --format {output_format}, not both")
        output_format = "json"
    with settings(cli).reader() as ctx:
        if fleet:
            text = report_service.render_fleet(report_service.build_fleet_report(ctx),
                                               output_format)
        else:
            text = report_service.render(report_service.build_report(ctx), output_format)
    if output is not None:
        report_service.write_atomically(output, text)
    else:
        emit(text.rstrip("\n"))
