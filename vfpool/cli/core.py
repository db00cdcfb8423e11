"""The machinery every `vfpool` command shares, kept light: it imports typer and the standard
library only, never a subcommand module, the service layer or the store.

- ``Settings`` holds the global options. The root callback puts one in ``ctx.obj`` of the root
  context; commands reach it with ``settings(ctx)``. Nothing is kept in module globals.
- ``VfpoolTyper`` is the ``typer.Typer`` of every subcommand module: its groups and commands
  accept the global options (``--json``, ``--db``, ``--sim``, ``--debug``, ``--lock-timeout``)
  after the subcommand as well, resolve unknown commands with a suggestion, and format usage,
  arguments and options themselves, so neither metavars nor wording follow typer's version.
- ``usage_message`` words click's and typer's usage errors as vfpool does.
"""

from __future__ import annotations

import difflib
import os
import signal
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from vfpool.errors import InvalidInput
from vfpool.host.lock import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    from vfpool.service.context import Context


@dataclass
class Settings:
    """The global options of one invocation."""

    db: str | None = None
    sim: Path | None = None
    debug: bool = False
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    json: bool = False

    def context(self) -> Context:
        # The service layer (and with it the store and SQLAlchemy) is imported here, when a
        # command runs, never when the command tree is built.
        from vfpool.service.context import open_context

        return open_context(db=self.db, sim=self.sim, lock_timeout=self.lock_timeout)

    def reader(self) -> Context:
        """The context of a command that only reads: a missing store is not created."""
        from vfpool.service.context import open_context

        return open_context(db=self.db, sim=self.sim, lock_timeout=self.lock_timeout,
                            read_only=True)


def settings(ctx: typer.Context) -> Settings:
    """The ``Settings`` of the invocation ``ctx`` belongs to (in its root context's ``obj``)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list[str]]:
    """For commands that run until stopped (`watch`, `events --follow`): SIGTERM and SIGINT
    set ``stop``, and the loop ends after the work in hand; yields the names of the signals
    received. The previous handlers come back afterwards.

    The handler itself takes no lock: it only notes the signal. A handler that called
    ``stop.set()`` ran in the main thread, which may be inside ``stop.wait()`` holding the
    Event's own lock at that moment, and then waited for that lock forever (CI saw `events
    --follow` ignore SIGTERM). Python's C-level handler writes each signal's number to a
    wakeup pipe before any Python code runs; a thread reads it and sets ``stop``."""
    received: list[str] = []
    wanted = {int(signum) for signum in STOP_SIGNALS}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def relay() -> None:
        while data := os.read(read_end, 64):
            if wanted.intersection(data):
                stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    relay_thread = threading.Thread(target=relay, name="vfpool-stop-signals", daemon=True)
    relay_thread.start()
    try:
        yield received
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_end)  # the relay reads end-of-file and ends
        relay_thread.join(timeout=5)
        os.close(read_end)


# -- The global options, accepted after a subcommand too ---------------------------------------

# Parameter name -> the Settings field it sets. The copies that groups and commands below the
# root carry are hidden (the root's --help lists them) and have no environment variable, so a
# VFPOOL_* variable never overrides what was given before the subcommand.
GLOBAL_FIELDS = {"vfpool_db": "db", "vfpool_sim": "sim", "vfpool_debug": "debug",
                 "vfpool_lock_timeout": "lock_timeout", "vfpool_json": "json"}
_global_params: list[Any] = []


def global_params() -> list[Any]:
    """The hidden copies of the global options, as click parameters (built once)."""
    if not _global_params:
        holder = typer.Typer(add_completion=False)

        @holder.command()
        def options(
            vfpool_db: str | None = typer.Option(None, "--db", metavar="URL", hidden=True),
            vfpool_sim: Path | None = typer.Option(None, "--sim", metavar="DIR", hidden=True),
            vfpool_debug: bool = typer.Option(False, "--debug", hidden=True),
            vfpool_lock_timeout: float | None = typer.Option(
                None, "--lock-timeout", metavar="S", min=0.0, max=86400.0, hidden=True),
            vfpool_json: bool = typer.Option(False, "--json", hidden=True),
        ) -> None:
            """Never run: only its parameters are used."""

        _global_params.extend(typer.main.get_command(holder).params)
    return _global_params


def apply_globals(ctx: typer.Context) -> None:
    """Move the global options given after a subcommand from ``ctx.params`` into the Settings;
    the last one given wins, as for any option."""
    current = settings(ctx)
    for name, field in GLOBAL_FIELDS.items():
        value = ctx.params.pop(name, None)
        if value is None or value is False:
            continue
        setattr(current, field, value)


def _with_globals(params: list[Any]) -> list[Any]:
    """``params`` plus the global options it does not have itself (a command's own --json)."""
    taken = {opt for param in params for opt in getattr(param, "opts", ())}
    extra = [param for param in global_params() if not taken.intersection(param.opts)]
    return [*params, *extra]


# -- Help: usage, arguments and options, formatted here ----------------------------------------

def metavar(param: Any) -> str:
    """The declared metavar, else the parameter's name in capitals (``--owner OWNER``)."""
    return str(param.metavar or (param.name or "").upper())


def usage_pieces(params: Sequence[Any]) -> list[str]:
    pieces = []
    for param in params:
        if param.param_type_name != "argument" or getattr(param, "hidden", False):
            continue
        word = metavar(param)
        if param.nargs == -1 and not word.endswith("..."):
            word += "..."
        pieces.append(word if param.required else f"[{word}]")
    return pieces


def _default_text(param: Any) -> str | None:
    default = param.default
    if (param.is_flag or param.count or callable(default) or default in (None, "", (), [])
            or param.show_default is False):
        return None
    return str(default)


def help_record(param: Any) -> tuple[str, str]:
    """One row of an Arguments or Options section: the term and its help."""
    notes = []
    if param.param_type_name == "argument":
        term = metavar(param)
    else:
        term = ", ".join(sorted(param.opts, key=lambda opt: (opt.startswith("--"), opt)))
        if param.secondary_opts:
            term += " / " + ", ".join(param.secondary_opts)
        if not (param.is_flag or param.count):
            term += " " + metavar(param)
        default = _default_text(param)
        if default is not None:
            notes.append(f"default: {default}")
        if param.envvar and getattr(param, "show_envvar", True):
            notes.append(f"env: {param.envvar}")
    if param.required:
        notes.append("required")
    text = getattr(param, "help", None) or ""
    if notes:
        text = f"{text}  [{'; '.join(notes)}]" if text else f"[{'; '.join(notes)}]"
    return term, text


def format_params(command: Any, ctx: typer.Context, formatter: Any) -> None:
    visible = [param for param in command.get_params(ctx) if not getattr(param, "hidden", False)]
    arguments = [help_record(p) for p in visible if p.param_type_name == "argument"]
    options = [help_record(p) for p in visible if p.param_type_name == "option"]
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


# -- Usage errors in vfpool's words -------------------------------------------------------------

def _closest(word: str, choices: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1)
    return found[0] if found else None


def no_such_command(name: str, choices: Sequence[str]) -> InvalidInput:
    best = _closest(name, [c for c in choices if not c.startswith("-")])
    hint = f"; did you mean {best!r}?" if best else ""
    return InvalidInput(f"no such command {name!r}{hint}")


def _option_param(ctx: Any, option: str) -> Any:
    command = getattr(ctx, "command", None)
    if command is None:
        return None
    for param in command.get_params(ctx):
        if option in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            return param
    return None


def _bad_number(exc: Exception, param: Any) -> str | None:
    """Why a number was refused, in vfpool's words: typer (through pydantic) keeps the value
    the user gave on the exception's cause. None when it is not a number parameter."""
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if typing.get_origin(kind) is list:  # LEASE_ID...: each value is checked
        kind = (typing.get_args(kind) or (None,))[0]
    errors = getattr(exc.__cause__, "errors", None)
    if kind not in (int, float) or not callable(errors):
        return None
    try:
        value = errors()[0]["input"]
    except (LookupError, TypeError):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return f"{value!r} is not {'a whole number' if kind is int else 'a number'}"
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        return f"{number} is not between {low} and {high}"
    if low is not None:
        return f"{number} is less than {low}"
    if high is not None:
        return f"{number} is more than {high}"
    return None


def usage_message(exc: Exception) -> str:
    """A usage error raised by click's parser (inside typer) in vfpool's words. The exception
    classes are told apart by name, so typer's copy of click and click itself both work."""
    kind = type(exc).__name__
    ctx = getattr(exc, "ctx", None)
    param = getattr(exc, "param", None)
    if kind == "NoSuchOption":
        option = str(getattr(exc, "option_name", ""))
        known = [opt for p in (ctx.command.get_params(ctx) if ctx is not None else [])
                 if not getattr(p, "hidden", False)
                 for opt in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))]
        best = _closest(option, [opt for opt in known if opt.startswith("--")])
        return f"no such option: {option}" + (f"; did you mean {best}?" if best else "")
    if kind == "MissingParameter" and param is not None:
        if param.param_type_name == "argument":
            return f"missing argument {metavar(param)}"
        return f"missing option {param.opts[0]} {metavar(param)}"
    if kind == "BadOptionUsage":
        option = str(getattr(exc, "option_name", ""))
        found = _option_param(ctx, option)
        if found is not None and (found.is_flag or found.count):
            return f"option {option} takes no value"
        return f"option {option} needs a value"
    if kind == "BadParameter" and param is not None:
        name = (param.opts[0] if param.param_type_name == "option"
                else metavar(param).removesuffix("..."))
        reason = _bad_number(exc, param)
        if reason is None:
            reason = str(getattr(exc, "message", "") or exc).strip().rstrip(".")
            reason = reason[:1].lower() + reason[1:]
        return f"invalid value for {name}: {reason}"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:]


# -- Values: the types vfpool's parameters have, converted without pydantic ---------------------

_KINDS: dict[Any, str] = {str: "text", int: "a whole number", float: "a number", Path: "a path",
                          bool: "yes or no"}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}
_PATH_CHECKS = ("exists", "resolve_path", "writable", "allow_dash", "path_type", "clamp",
                "parser", "click_type")


@dataclass(frozen=True)
class PlainValue:
    """How typer turns one parameter's words into a value (its runtime param), for str, int,
    float, bool and Path and lists of them. typer 0.29 does this with a pydantic TypeAdapter per
    parameter, and importing pydantic and building those costs a cold `vfpool lease acquire`
    about a fifth of its time. A bad number is refused in vfpool's words."""

    kind: Any
    many: bool
    low: float | None
    high: float | None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:
            return () if (param.multiple or param.nargs == -1) else None
        if self.many:
            if isinstance(value, str):
                raise typer.BadParameter("expected several values", ctx=ctx, param=param)
            return [self.one(item, param, ctx) for item in value]
        return self.one(value, param, ctx)

    def one(self, value: Any, param: Any, ctx: Any) -> Any:
        if self.kind is str:
            return value if isinstance(value, str) else str(value)
        if self.kind is Path:
            return value if isinstance(value, Path) else Path(value)
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in _BOOLS:
                return _BOOLS[str(value).lower()]
            raise typer.BadParameter(f"{value!r} is not yes or no", ctx=ctx, param=param)
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(value)
            except (TypeError, ValueError):
                raise typer.BadParameter(f"{value!r} is not {_KINDS[self.kind]}", ctx=ctx,
                                         param=param) from None
        low, high = self.low, self.high
        if (low is not None and not number >= low) or (high is not None and not number <= high):
            bounds = (f"between {low} and {high}" if low is not None and high is not None
                      else f"at least {low}" if low is not None else f"at most {high}")
            raise typer.BadParameter(f"{number} is not {bounds}", ctx=ctx, param=param)
        return number


def plain_values(params: Sequence[Any]) -> None:
    """Give each parameter of a plain type a ``PlainValue`` as its runtime param, before typer
    builds its own. Anything else (and a typer without this hook) keeps typer's conversion."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", False) is not None:
            continue
        kind, many = descriptor.annotation, False
        if typing.get_origin(kind) is list:
            kind, many = (typing.get_args(kind) or (None,))[0], True
        info = descriptor.parameter_info
        if kind not in _KINDS or any(getattr(info, name, None) for name in _PATH_CHECKS):
            continue
        param._runtime_param = PlainValue(kind, many, info.min, info.max)


# -- The group and command classes --------------------------------------------------------------

class VfpoolGroupBase(TyperGroup):
    """A group whose unknown commands are one vfpool error with a suggestion, whose usage and
    options vfpool formats, and which accepts the global options (see ``get_params``)."""

    globals_after = True  # the root has the real global options and needs no copies

    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        params: list[Any] = super().get_params(ctx)
        return _with_globals(params) if self.globals_after else params

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        plain_values(self.get_params(ctx))
        rest: list[str] = super().parse_args(ctx, args)
        return rest

    def resolve_command(self, ctx: typer.Context,  # type: ignore[override]
                        args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0]
        command = self.get_command(ctx, name)
        if command is None and not ctx.resilient_parsing:
            if name.startswith("-"):
                self.parse_args(ctx, args)  # an unknown option: say that instead
            raise no_such_command(name, self.list_commands(ctx))
        return (name if command is not None else None), command, args[1:]

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [str(self.options_metavar or "[OPTIONS]"), "COMMAND [ARGS]..."]

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        apply_globals(ctx)
        return super().invoke(ctx)


class VfpoolCommand(TyperCommand):
    """A command that accepts the global options after its name, merges a ``--json`` given
    anywhere into its own, and whose usage and options vfpool formats."""

    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        params: list[Any] = super().get_params(ctx)
        return _with_globals(params)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        # Extra arguments are vfpool's error, not click's "Got unexpected extra argument".
        plain_values(self.get_params(ctx))
        allowed = ctx.allow_extra_args
        ctx.allow_extra_args = True
        try:
            rest: list[str] = super().parse_args(ctx, args)
        except typer.TyperException as exc:
            if getattr(exc, "ctx", None) is None:  # the parser's errors come without it
                exc.ctx = ctx  # type: ignore[attr-defined]
            raise
        finally:
            ctx.allow_extra_args = allowed
        if ctx.args and not allowed and not ctx.resilient_parsing:
            raise InvalidInput(f"unexpected argument {ctx.args[0]!r}")
        return rest

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [str(self.options_metavar or "[OPTIONS]"), *usage_pieces(self.get_params(ctx))]

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        format_params(self, ctx, formatter)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        apply_globals(ctx)
        if settings(ctx).json and "as_json" in ctx.params:
            ctx.params["as_json"] = True
        return super().invoke(ctx)


class VfpoolSubGroup(VfpoolGroupBase):
    """The group of a subcommand module (``vfpool pool``, ``vfpool lease``, …)."""


class VfpoolTyper(typer.Typer):
    """``typer.Typer`` with vfpool's group and command classes and plain help."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", VfpoolSubGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("add_completion", False)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, name: str | None = None,
                **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", VfpoolCommand)
        return super().command(name, **kwargs)
