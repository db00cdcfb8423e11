"""`vfpool report`: the inventory report, as a table, JSON, CSV or Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from vfpool.cli import report_files, report_render
from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import colour_on, emit
from vfpool.errors import InvalidInput
from vfpool.service import report as report_service
from vfpool.service.report import FleetReport, Report, Summary

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
    report_render.check_format(output_format)
    if as_json:
        if output_format not in ("table", "json"):
            raise InvalidInput(f"give --json or --format {output_format}, not both")
        output_format = "json"
    if output_format == "prometheus":  # the metrics need neither VF rows nor events
        from vfpool.cli import report_metrics

        with settings(cli).reader() as ctx:
            summary: Summary | FleetReport[Summary] = \
                report_service.build_fleet_summary(ctx) if fleet \
                else report_service.build_summary(ctx)
        if output is None:
            emit(report_metrics.render_prometheus(summary).rstrip("\n"))
        else:
            report_metrics.write_textfile(output, report_metrics.registry_for(summary))
        return
    with settings(cli).reader() as ctx:
        found: Report | FleetReport[Report] = report_service.build_fleet_report(ctx) if fleet \
            else report_service.build_report(ctx)
    if output is None:
        emit(report_render.render(found, output_format, colour=colour_on()).rstrip("\n"))
    else:  # a file never gets colour codes
        report_files.write_atomically(output, report_render.render(found, output_format))
