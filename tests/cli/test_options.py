"""Global options before or after the subcommand, -h everywhere, `show` as the one verb for one
object, and usage errors as one `error: …` line in vfpool's words with exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tests.conftest import CliResult
from vfpool.cli.main import app
from vfpool.service import leases, pools
from vfpool.service.context import open_context

Cli = Callable[..., CliResult]

# Commands that print data, with their arguments; each takes every global option.
COMMANDS = [("pf", "list"), ("pool", "list", "--all"), ("lease", "list"), ("db", "current"),
            ("report",)]


POSITIONS = ("before", "group", "end")


def place(command: tuple[str, ...], *options: tuple[str, tuple[str, ...]]) -> list[str]:
    """``command`` with each (position, option words) put before it, after its group word,
    or at its end."""
    before = [word for position, words in options if position == "before" for word in words]
    group = [word for position, words in options if position == "group" for word in words]
    end = [word for position, words in options if position == "end" for word in words]
    return [*before, *command[:1], *group, *command[1:], *end]


def placements(command: tuple[str, ...], option: tuple[str, ...]) -> list[list[str]]:
    """``option`` before the command, after its group word, and at the end."""
    return [place(command, (position, option)) for position in POSITIONS
            if position != "group" or len(command) > 1]


def ok(result: CliResult) -> CliResult:
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    return result


def _define(sim_root: Path, name: str = "a") -> None:
    pools.define(open_context(sim=sim_root), pools.parse_spec(
        name, ["enp133s0f0"], 2, "auto", "vfio", pools.VfDefaults()))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_sim_and_json_anywhere(command: tuple[str, ...], cli: Cli, sim_root: Path) -> None:
    _define(sim_root)
    sim = ("--sim", str(sim_root))
    outputs = set()
    for sim_at in POSITIONS:
        for json_at in POSITIONS:
            stdout = ok(cli(*place(command, (sim_at, sim), (json_at, ("--json",))))).stdout
            document = json.loads(stdout)
            if isinstance(document, dict):
                document.pop("generated_at", None)  # the report's time
            outputs.add(json.dumps(document))
    assert len(outputs) == 1
    document = json.loads(outputs.pop())
    if command[:2] == ("pool", "list"):
        assert [pool["name"] for pool in document] == ["a"]  # the sim's store was used


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_db_anywhere(command: tuple[str, ...], cli: Cli, sim_root: Path,
                     tmp_path: Path) -> None:
    """The store --db names is the one read, wherever --db stands: it holds a started pool
    with a lease, which every command shows, and the sim's own store is never made."""
    url = f"sqlite:///{tmp_path}/other.db"
    with open_context(db=url, sim=sim_root) as ctx:
        pools.define(ctx, pools.parse_spec("a", ["enp133s0f0"], 2, "auto", "vfio",
                                           pools.VfDefaults()))
        pools.start(ctx, "a")
        leases.acquire(ctx, "a", "vm1")
    for args in placements(command, ("--db", url)):
        stdout = ok(cli("--sim", str(sim_root), *args, "--json")).stdout
        assert ('"a"' in stdout or url in stdout), (args, stdout)
    assert not (sim_root / "vfpool.db").exists()


def test_db_current_names_the_url_given_after_the_command(cli: Cli, sim_root: Path,
                                                          tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    for args in placements(("db", "current", "--json"), ("--db", url)):
        assert json.loads(ok(cli(*args)).stdout)["url"] == url


@pytest.mark.parametrize("command", [("pool", "show", "nope"), ("lease", "show", "7"),
                                     ("pf", "show", "enp9s0f0")], ids=" ".join)
def test_debug_anywhere(command: tuple[str, ...], cli: Cli, sim_root: Path) -> None:
    plain = cli("--sim", str(sim_root), *command)
    assert plain.exit_code == 3 and "Traceback" not in plain.stderr
    assert len(plain.stderr.splitlines()) == 1
    for args in placements(command, ("--debug",)):
        result = cli("--sim", str(sim_root), *args)
        assert result.exit_code == 3
        assert "Traceback" in result.stderr, args
        assert result.stderr.splitlines()[-1] == plain.stderr.rstrip("\n")


def test_lock_timeout_anywhere(cli: Cli, sim_root: Path) -> None:
    _define(sim_root)
    context = open_context(sim=sim_root)
    with context.locks.pfs(["0000:85:00.0"], exclusive=True):
        for args in placements(("pool", "start", "a"), ("--lock-timeout", "0.2")):
            result = cli("--sim", str(sim_root), *args)
            assert result.exit_code == 4, result.stderr
            assert result.stderr.startswith("error: timed out after 0.2 s waiting for the lock")


def test_the_last_global_option_wins(cli: Cli, sim_root: Path, tmp_path: Path) -> None:
    _define(sim_root)
    result = ok(cli("--sim", str(tmp_path / "nope"), "pool", "list", "--all",
                    "--sim", str(sim_root), "--json"))
    assert [pool["name"] for pool in json.loads(result.stdout)] == ["a"]


def test_an_environment_variable_does_not_override_an_option_after_the_command(
        cli: Cli, sim_root: Path, tmp_path: Path) -> None:
    _define(sim_root)
    result = ok(cli("pool", "list", "--all", "--sim", str(sim_root), "--json",
                    env={"VFPOOL_SIM": str(tmp_path / "nope")}))
    assert [pool["name"] for pool in json.loads(result.stdout)] == ["a"]


def test_a_global_option_after_the_command_is_checked(cli: Cli, sim_root: Path) -> None:
    result = cli("--sim", str(sim_root), "pool", "list", "--lock-timeout", "-1")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == ("error: invalid value for --lock-timeout: -1.0 is not between 0.0 "
                             "and 86400.0\n")


# -- -h everywhere ----------------------------------------------------------------------------

def command_paths() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = [()]

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            found.append((*path, name))
            walk(sub, (*path, name))

    walk(root, ())
    return found


@pytest.mark.parametrize("path", command_paths(), ids=lambda path: " ".join(path) or "vfpool")
def test_dash_h_is_help_everywhere(path: tuple[str, ...], cli: Cli) -> None:
    long = ok(cli(*path, "--help"))
    assert long.stdout.startswith(f"Usage: vfpool {' '.join(path)}".rstrip() + " ")
    assert ok(cli(*path, "-h")).stdout == long.stdout
    assert "-h, --help" in long.stdout


# -- show ---------------------------------------------------------------------------------------

def test_show_is_the_verb_and_pool_info_its_alias(cli: Cli, sim_root: Path) -> None:
    _define(sim_root)
    sim = ("--sim", str(sim_root))
    for group in ("pool", "pf", "lease"):
        assert "show" in cli(group, "--help").stdout
    shown = ok(cli(*sim, "pool", "show", "a"))
    assert shown.stdout.startswith("name ")
    assert ok(cli(*sim, "pool", "info", "a")).stdout == shown.stdout
    assert ok(cli(*sim, "pool", "info", "a", "--json")).stdout == ok(
        cli(*sim, "pool", "show", "a", "--json")).stdout
    assert "  info" not in cli("pool", "--help").stdout  # the alias is not listed


# -- usage errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (("shwo",), "no such command 'shwo'"),
    (("pol", "list"), "no such command 'pol'; did you mean 'pool'?"),
    (("pool", "shwo", "a"), "no such command 'shwo'; did you mean 'show'?"),
    (("lease", "aquire", "a"), "no such command 'aquire'; did you mean 'acquire'?"),
    (("pool", "list", "--x"), "no such option: --x"),
    (("pool", "list", "--jsn"), "no such option: --jsn; did you mean --json?"),
    (("--bogus", "pool", "list"), "no such option: --bogus"),
    (("lease", "acquire", "a", "--ownr", "vm1"), "no such option: --ownr; did you mean --owner?"),
    (("pf", "show"), "missing argument PF"),
    (("lease", "acquire", "a"), "missing option --owner OWNER"),
    (("lease", "acquire", "a", "--owner"), "option --owner needs a value"),
    (("pool", "list", "--all=yes"), "option --all takes no value"),
    (("lease", "acquire", "a", "--owner", "x", "--count", "two"),
     "invalid value for --count: 'two' is not a whole number"),
    (("vm", "args", "1", "x"), "invalid value for LEASE_ID: 'x' is not a whole number"),
    (("pool", "start", "a", "--timeout", "1e9"),
     "invalid value for --timeout: 1000000000.0 is not between 0.0 and 86400.0"),
    (("pf", "list", "extra"), "unexpected argument 'extra'"),
])
def test_usage_errors_are_one_line_in_our_words(args: tuple[str, ...], message: str,
                                                cli: Cli, sim_root: Path) -> None:
    result = cli("--sim", str(sim_root), *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


@pytest.mark.parametrize("args", [(), ("pool",), ("lease",)])
def test_a_group_alone_prints_its_help_as_a_usage_error(args: tuple[str, ...],
                                                        cli: Cli) -> None:
    result = cli(*args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"Usage: vfpool {' '.join(args)}".rstrip() + " ")
    assert "error:" not in result.stderr
