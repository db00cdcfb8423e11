"""The `vfpool` command. Each command parses, calls one service function, and renders."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from vfpool import __version__
from vfpool.errors import VfpoolError
from vfpool.host.lock import DEFAULT_LOCK_TIMEOUT
from vfpool.service.context import Context, open_context


@dataclass
class Settings:
    db: str | None = None
    sim: Path | None = None
    debug: bool = False
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def context(self) -> Context:
        return open_context(db=self.db, sim=self.sim, lock_timeout=self.lock_timeout)


_settings = Settings()


class VfpoolGroup(TyperGroup):
    """Maps every error to one `error: …` line on stderr and the exit code from DESIGN.md."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        code = 0
        try:
            result = super().main(args, prog_name or "vfpool", complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except VfpoolError as exc:
            code = _fail(str(exc), exc.exit_code)
        except typer.TyperException as exc:  # usage errors: bad option, missing argument
            code = _fail(exc.format_message(), 2)
        except typer.Exit as exc:
            code = exc.exit_code
        except (typer.Abort, KeyboardInterrupt):
            code = _fail("interrupted", 130)
        except Exception as exc:  # a bug: say so, keep the traceback behind --debug
            code = _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for "
                         "the traceback)", 1)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str, code: int) -> int:
    if _settings.debug:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    return code


app = typer.Typer(cls=VfpoolGroup, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False, rich_markup_mode=None,
                  help="Manage SR-IOV NICs as network pools: size PFs, lease VFs, hand them "
                       "to QEMU.\n\nExample: vfpool --sim /tmp/host pf list")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vfpool {__version__}")
        raise typer.Exit(0)


@app.callback()
def global_options(
    db: str | None = typer.Option(None, "--db", envvar="VFPOOL_DB", metavar="URL",
                                  help="Database URL (default: /var/lib/vfpool/vfpool.db "
                                       "for root, DIR/vfpool.db under --sim)."),
    sim: Path | None = typer.Option(None, "--sim", envvar="VFPOOL_SIM", metavar="DIR",
                                    help="Work on the simulated host in DIR."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    lock_timeout: float = typer.Option(DEFAULT_LOCK_TIMEOUT, "--lock-timeout", metavar="S",
                                       envvar="VFPOOL_LOCK_TIMEOUT", min=0.0, max=86400.0,
                                       help="How long to wait for a vfpool lock, or for the "
                                            "store while another process writes to it."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Global options."""
    _settings.db, _settings.sim, _settings.debug = db, sim, debug
    _settings.lock_timeout = lock_timeout


def settings() -> Settings:
    return _settings


def _register() -> None:
    from vfpool.cli import (
        contrib,
        db,
        fleet,
        host,
        lease,
        pf,
        pool,
        reconcile,
        report,
        sim,
        vm,
        watch,
    )

    app.add_typer(sim.app, name="sim")
    app.add_typer(pf.app, name="pf")
    app.add_typer(pool.app, name="pool")
    app.add_typer(lease.app, name="lease")
    app.add_typer(vm.app, name="vm")
    app.command("reconcile")(reconcile.reconcile)
    app.command("watch")(watch.watch)
    app.command("report")(report.report)
    app.add_typer(host.app, name="host")
    app.add_typer(fleet.app, name="fleet")
    app.add_typer(db.app, name="db")
    app.add_typer(contrib.app, name="contrib")


_register()


def main() -> None:
    app()
