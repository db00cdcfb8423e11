"""The `vfpool` command. Each command parses, calls one service function, and renders.

The command tree is built lazily: ``COMMANDS`` names each top-level command, the module that
defines it and its one-line help. A module is imported when its command runs (or its help is
asked for), so `vfpool --help` and `vfpool --version` import neither a subcommand module nor
the service layer, the store or SQLAlchemy, and `vfpool lease acquire` imports only what a
lease needs. The global options live in the root context's ``obj`` (see vfpool.cli.core).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import typer
import typer.main

from vfpool import __version__
from vfpool.cli.core import Settings, VfpoolGroupBase, settings, usage_message
from vfpool.errors import VfpoolError
from vfpool.host.lock import DEFAULT_LOCK_TIMEOUT


class Entry(NamedTuple):
    """A top-level command: the module whose ``app`` defines it, its one-line help for
    `vfpool --help`, and whether it is a group of subcommands (``vfpool contrib`` is one, with
    a single subcommand) or one command (``vfpool report``)."""

    module: str
    help: str
    group: bool = True


# The top-level commands, in the order of `vfpool --help`. A test checks that each line of help
# here is the command's own.
COMMANDS: dict[str, Entry] = {
    "sim": Entry("vfpool.cli.sim", "Simulated SR-IOV hosts for tests and the demo."),
    "pf": Entry("vfpool.cli.pf", "SR-IOV physical functions (PFs)."),
    "pool": Entry("vfpool.cli.pool", "Network pools of VFs."),
    "lease": Entry("vfpool.cli.lease", "Lease VFs to VMs and release them."),
    "vm": Entry("vfpool.cli.vm", "Hand leased VFs to QEMU."),
    "reconcile": Entry("vfpool.cli.reconcile", "Compare the store with the host and repair "
                       "it; a second run finds nothing.", group=False),
    "watch": Entry("vfpool.cli.watch", "Follow udev and keep the store in step.", group=False),
    "report": Entry("vfpool.cli.report", "Report pools, PFs, VFs with their leases, and the "
                    "20 newest events, from the store.", group=False),
    "events": Entry("vfpool.cli.events", "Read the audit log: who did what, when and why.",
                    group=False),
    "host": Entry("vfpool.cli.host", "The hosts that share this store."),
    "fleet": Entry("vfpool.cli.fleet", "Decisions across the hosts sharing the store."),
    "db": Entry("vfpool.cli.db", "The vfpool database."),
    "contrib": Entry("vfpool.cli.contrib",
                     "Write files that fit vfpool into the system (systemd units)."),
}


def load_command(name: str) -> Any:
    """The click command ``name`` of COMMANDS, built from its module's ``app``."""
    entry = COMMANDS[name]
    module = importlib.import_module(entry.module)
    build = typer.main.get_group if entry.group else typer.main.get_command
    command = build(module.app)
    command.name = name
    return command


class LazyCommands(MutableMapping[str, Any]):
    """The commands of the root group: names are known up front, a command is built (and its
    module imported) when it is looked up. Listing names imports nothing."""

    def __init__(self, eager: dict[str, Any]) -> None:
        self._loaded: dict[str, Any] = dict(eager)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._loaded if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + len([name for name in self._loaded if name not in COMMANDS])

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._loaded

    def short_help(self, name: str, limit: int) -> str:
        if name in self._loaded or name not in COMMANDS:
            return str(self[name].get_short_help_str(limit))
        return COMMANDS[name].help


class VfpoolGroup(VfpoolGroupBase):
    """The root: lazy subcommands, and the one place that turns every error into one
    `error: …` line on stderr and the exit code from DESIGN.md."""

    globals_after = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = LazyCommands(dict(self.commands))

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return list(self.commands)

    def format_commands(self, ctx: typer.Context,  # type: ignore[override]
                        formatter: Any) -> None:
        assert isinstance(self.commands, LazyCommands)
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.commands.short_help(name, limit)) for name in names])

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except VfpoolError as exc:
            raise typer.Exit(_fail(ctx, str(exc), exc.exit_code)) from None
        except typer.TyperException as exc:  # usage errors below the root: bad option, …
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            raise typer.Exit(_fail(ctx, usage_message(exc), 2)) from None
        except KeyboardInterrupt:
            raise typer.Exit(_fail(ctx, "interrupted", 130)) from None
        except Exception as exc:  # a bug: say so, keep the traceback behind --debug
            raise typer.Exit(_fail(ctx, f"internal error: {type(exc).__name__}: {exc} (run "
                                        "with --debug for the traceback)", 1)) from None

    def main(self, args: Sequence[str] | None = None,
             prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        code = 0
        try:
            # The name in usage lines is vfpool however it was started (python -m, a runner).
            result = super().main(args, "vfpool", complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except VfpoolError as exc:  # raised while the root's own options were parsed
            code = _fail(None, str(exc), exc.exit_code)
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                # `vfpool` or `vfpool pool` alone: the help, on stderr, as a usage error.
                typer.echo(exc.format_message(), err=True)
                code = 2
            else:
                code = _fail(None, usage_message(exc), 2)
        except typer.Exit as exc:
            code = exc.exit_code
        except (typer.Abort, KeyboardInterrupt):
            code = _fail(None, "interrupted", 130)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(ctx: typer.Context | None, message: str, code: int) -> int:
    if ctx is not None and settings(ctx).debug:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    return code


app = typer.Typer(cls=VfpoolGroup, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Manage SR-IOV NICs as network pools: size PFs, lease VFs, hand them "
                       "to QEMU.\n\n\b\nExample:\n  vfpool --sim /tmp/host pf list")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vfpool {__version__}")
        raise typer.Exit(0)


@app.callback()
def global_options(
    ctx: typer.Context,
    db: str | None = typer.Option(None, "--db", envvar="VFPOOL_DB", metavar="URL",
                                  help="Database URL (default: /var/lib/vfpool/vfpool.db "
                                       "for root, DIR/vfpool.db under --sim)."),
    sim: Path | None = typer.Option(None, "--sim", envvar="VFPOOL_SIM", metavar="DIR",
                                    help="Work on the simulated host in DIR."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print JSON (every command that prints data)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    lock_timeout: float = typer.Option(DEFAULT_LOCK_TIMEOUT, "--lock-timeout", metavar="S",
                                       envvar="VFPOOL_LOCK_TIMEOUT", min=0.0, max=86400.0,
                                       help="How long to wait for a vfpool lock, or for the "
                                            "store while another process writes to it."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Global options: given before or after the command."""
    ctx.obj = Settings(db=db, sim=sim, debug=debug, lock_timeout=lock_timeout, json=as_json)


def main() -> None:
    app()
