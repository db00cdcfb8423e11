"""Help that can be trusted: every example in `--help` is one whole line that parses as the
command it illustrates, and metavars read like DESIGN.md's (POOL, PF[#START-END]), never
typer's ({POOL}, <str>, <list[str]>)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

import pytest
import typer.main

from tests.conftest import CliResult
from vfpool.cli.core import help_record
from vfpool.cli.main import app

SHELL_OPERATORS = {">", ">>", "<", "|", "||", "&&", ";", "&", "2>"}
TYPER_METAVAR = re.compile(r"<[^>]*>|\{[^}]*\}|\[str\]")


def command_paths() -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) of the root and every command below it, hidden aliases included."""
    root = typer.main.get_command(app)
    found: list[tuple[tuple[str, ...], Any]] = [((), root)]

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            found.append(((*path, name), sub))
            walk(sub, (*path, name))

    walk(root, ())
    return found


PATHS = command_paths()
IDS = [" ".join(path) or "vfpool" for path, _ in PATHS]


def examples(help_text: str) -> list[str]:
    """The lines of the Example(s): block of a rendered --help."""
    found: list[str] = []
    lines = help_text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() in ("Example:", "Examples:"):
            for following in lines[index + 1:]:
                if not following.strip():
                    break
                found.append(following.strip())
    return found


def unwrap(callback: Any) -> Any:
    return getattr(callback, "__wrapped__", callback)


def parse(words: list[str]) -> tuple[tuple[str, ...], Any]:
    """Parse ``vfpool ARGS`` as the CLI would, down to the command's own parameters, with
    click's make_context (no resilient parsing) and without running anything. Returns the
    command path and the command's context; a bad example raises the usage error."""
    assert words[0] == "vfpool"
    command: Any = typer.main.get_command(app)
    context = command.make_context("vfpool", words[1:], resilient_parsing=False)
    path: tuple[str, ...] = ()
    while getattr(command, "commands", None) is not None:
        rest = [*(getattr(context, "_protected_args", None) or context.protected_args),
                *context.args]
        name, command, rest = command.resolve_command(context, rest)
        path += (name,)
        context = command.make_context(name, rest, parent=context)
    return path, context


@pytest.mark.parametrize(("path", "command"), PATHS, ids=IDS)
def test_every_help_example_parses_as_its_command(path: tuple[str, ...], command: Any,
                                                  cli: Callable[..., CliResult]) -> None:
    result = cli(*path, "--help")
    assert (result.exit_code, result.stderr) == (0, "")
    lines = examples(result.stdout)
    if not getattr(command, "commands", None):
        assert lines, f"`vfpool {' '.join(path)}` has no example in its help"
    for line in lines:
        # One whole command a line: a wrapped example would leave a line that is not one.
        words = shlex.split(line)
        cut = next((i for i, word in enumerate(words) if word in SHELL_OPERATORS), len(words))
        parsed_path, context = parse(words[:cut])
        if command.hidden:  # an alias (pool info) shows the example of its command
            assert unwrap(context.command.callback) is unwrap(command.callback)
        else:
            assert parsed_path[:len(path)] == path, f"{line!r} is not an example of {path}"


def test_the_parser_of_examples_rejects_what_the_cli_rejects() -> None:
    """The meta-test above is only as good as parse(): it must refuse bad command lines."""
    for bad in (["vfpool", "pool", "shwo"], ["vfpool", "lease", "acquire", "p"],
                ["vfpool", "lease", "acquire", "p", "--owner", "x", "--count", "two"],
                ["vfpool", "pf", "list", "extra"]):
        with pytest.raises(Exception):  # noqa: B017 - click's or vfpool's usage error
            parse(bad)
    assert parse(["vfpool", "--sim", "/tmp/h", "pool", "show", "a"])[0] == ("pool", "show")


@pytest.mark.parametrize(("path", "command"), PATHS, ids=IDS)
def test_metavars_read_like_the_design(path: tuple[str, ...], command: Any,
                                       cli: Callable[..., CliResult]) -> None:
    help_text = cli(*path, "--help").stdout
    usage = help_text.split("\n\n", 1)[0]
    assert not TYPER_METAVAR.search(usage), usage
    context = command.context_class(command, info_name=path[-1] if path else "vfpool")
    for param in command.get_params(context):
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        term, _ = help_record(param)
        assert not TYPER_METAVAR.search(term), f"{' '.join(path)}: {term}"
        assert f"  {term}" in help_text  # what the help shows is this record
    for bad in ("<str>", "<list[str]>", "<int>", "<path>", "[str]"):
        assert bad not in help_text


def test_every_option_with_a_value_names_it() -> None:
    """An option that takes a value shows a metavar: declared, or its name in capitals."""
    for path, command in PATHS:
        for param in command.params:
            if param.param_type_name != "option" or param.is_flag or param.hidden:
                continue
            term, _ = help_record(param)
            assert re.fullmatch(r"(-\w, )?--[a-z0-9-]+( / --[a-z0-9-]+)? \S+", term), (
                f"{' '.join(path)}: {term}")
