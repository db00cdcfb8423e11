"""`vfpool reconcile`: repair what a crash left behind."""

from __future__ import annotations

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.progress import progress
from vfpool.cli.render import emit, emit_json
from vfpool.service import reconcile as reconcile_service

app = VfpoolTyper()


@app.command("reconcile")
def reconcile(
    cli: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Report, change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare the store with the host and repair it; a second run finds nothing.

    \b
    Example:
      vfpool reconcile --dry-run
    """
    with settings(cli).context() as ctx, progress("reconcile") as shown:
        report = reconcile_service.reconcile(ctx, dry_run=dry_run, progress=shown)
    if as_json:
        emit_json(report.document())
        return
    if not report.findings:
        emit("nothing to repair")
    for finding in report.findings:
        result = f" -> {finding.result}" if finding.result is not None else ""
        if finding.lease is not None:
            subject = f"lease {finding.lease} ({finding.vf})"
        elif finding.vf is not None:
            subject = f"pool {finding.pool}: VF {finding.vf}"
        else:
            subject = f"pool {finding.pool}: PF {finding.pf}"
        emit(f"{subject}: {finding.problem}; {'would ' if dry_run else ''}"
             f"{finding.action}{result}")
