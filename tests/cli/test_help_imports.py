"""The command tree is lazy: `vfpool --help` and `--version` import no subcommand module and
none of the heavy libraries, and the root's list of commands says what the commands say."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

from tests.conftest import CliResult
from vfpool.cli.main import COMMANDS, app, load_command

HEAVY = ("sqlalchemy", "alembic", "pyroute2", "pyudev")


# `python -m vfpool ARGS`, which then writes every module it ended up with to stderr: -X
# importtime misses modules that importlib.import_module loads (the lazy command tree's way).
RUN = ("import atexit, runpy, sys; atexit.register(lambda: sys.stderr.write("
       "'modules: ' + ' '.join(sorted(sys.modules)) + '\\n')); "
       "runpy.run_module('vfpool', run_name='__main__', alter_sys=True)")


def imported_modules(*args: str) -> list[str]:
    """The modules a fresh `python -X importtime -m vfpool ARGS` imports: those -X importtime
    reports, and those in sys.modules at exit."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN, *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    timed = [line.rsplit("|", 1)[1].strip() for line in lines
             if line.startswith("import time:") and "|" in line]
    assert "vfpool.cli.main" in timed  # -X importtime did report
    at_exit = [line for line in lines if line.startswith("modules: ")]
    assert len(at_exit) == 1
    return sorted({*timed, *at_exit[0].split()[1:]})


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--version",)])
def test_help_and_version_import_nothing_heavy(args: tuple[str, ...]) -> None:
    names = imported_modules(*args)
    heavy = sorted({name for name in names if name.split(".")[0] in HEAVY})
    assert heavy == []
    commands = sorted({name for name in names
                       if name in {entry.module for entry in COMMANDS.values()}})
    assert commands == []
    assert not any(name.startswith(("vfpool.service", "vfpool.store")) for name in names)


def test_a_command_imports_its_own_module_only() -> None:
    names = imported_modules("pool", "--help")
    loaded = sorted({name for name in names
                     if name in {entry.module for entry in COMMANDS.values()}})
    assert loaded == ["vfpool.cli.pool"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_root_help_line_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert COMMANDS[name].help == command.get_short_help_str(limit=1000)


def test_the_root_help_lists_every_command(cli: Callable[..., CliResult]) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:\n", 1)[1]
    for name in COMMANDS:
        assert f"\n  {name} " in "\n" + listed
    root = typer.main.get_command(app)
    assert list(root.commands) == list(COMMANDS)  # type: ignore[attr-defined]


def test_settings_do_not_outlive_an_invocation(cli: Callable[..., CliResult],
                                               sim_root: Path, tmp_path: Path) -> None:
    """Two runs in one process: what the first one set (--debug, --db) is gone in the
    second, since the settings live in the invocation's context, not in a global (undefine
    is a write, so it opens the store the options name)."""
    url = f"sqlite:///{tmp_path}/first.db"
    first = cli("--debug", "--db", url, "--sim", str(sim_root), "pool", "undefine", "nope")
    assert first.exit_code == 3
    assert "Traceback" in first.stderr  # --debug
    assert (tmp_path / "first.db").exists()
    second = cli("--sim", str(sim_root), "pool", "undefine", "nope")
    assert (second.exit_code, second.stderr) == (3, first.stderr.splitlines()[-1] + "\n")
    assert (sim_root / "vfpool.db").exists()  # not first.db: --db did not stick
