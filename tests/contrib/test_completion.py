"""contrib/bash-completion: the committed file matches the typer tree; bash completes with it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from vfpool.cli.main import app

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "bash-completion"
BASH = shutil.which("bash")


def test_committed_completion_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(CONTRIB / "generate.py"), "--stdout"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CONTRIB / "vfpool").read_text(), (
        "contrib/bash-completion/vfpool is stale: run "
        ".venv/bin/python contrib/bash-completion/generate.py")


def complete(line: str, cwd: Path | None = None) -> list[str]:
    """What <TAB> offers at the end of ``line``; a trailing space starts a new word."""
    if BASH is None:
        pytest.skip("bash is not installed")
    words = line.split()
    if line.endswith(" "):
        words.append("")
    array = " ".join("'" + word.replace("'", "'\\''") + "'" for word in words)
    script = (f"source {CONTRIB / 'vfpool'}; COMP_WORDS=({array}); "
              f"COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT={len(line)}; "
              '_vfpool; printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run([BASH, "--norc", "--noprofile", "-c", script], capture_output=True,
                            text=True, timeout=10, check=False, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return sorted(word for word in result.stdout.splitlines() if word)


def tree_commands(*path: str) -> list[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return sorted(command.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("line", "expected"), [
    ("vfpool pool st", ["start"]),
    ("vfpool lease ", ["acquire", "list", "release", "show"]),
    ("vfpool --sim /tmp/host pool def", ["define"]),
    ("vfpool --debug --db sqlite:///x.db lease rel", ["release"]),
    ("vfpool --", ["--db", "--debug", "--help", "--lock-timeout", "--sim", "--version"]),
    ("vfpool lease release 3 --t", ["--token"]),
    ("vfpool pool define p --pf enp5s0f0 --me", ["--method"]),
    ("vfpool pool define p --method ", ["auto", "module-param", "sysfs"]),
    ("vfpool pool define p --method = s", ["sysfs"]),
    ("vfpool pool define p --mode m", ["macvtap"]),
    ("vfpool pool define p --no-", ["--no-spoofchk", "--no-trust"]),
    ("vfpool report --format ", ["csv", "json", "prometheus", "table"]),
    ("vfpool lease acquire p --owner ", []),            # free text: no guesses
    ("vfpool lease acquire p --owner --count 2 --j", ["--json"]),
    ("vfpool pool nosuch ", []),
    ("vfpool vm launch --owner vm1 -- -m", []),         # QEMU's argv: files only
])
def test_bash_completes(line: str, expected: list[str], tmp_path: Path) -> None:
    assert complete(line, cwd=tmp_path) == expected


def test_top_level_and_every_group_complete_their_subcommands(tmp_path: Path) -> None:
    assert complete("vfpool ", cwd=tmp_path) == tree_commands()
    for group in ("sim", "pf", "pool", "lease", "vm", "db"):
        assert complete(f"vfpool {group} ", cwd=tmp_path) == tree_commands(group), group


def test_paths_complete_as_files_or_directories(tmp_path: Path) -> None:
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "pool.toml").write_text("")
    assert complete("vfpool --sim ", cwd=tmp_path) == ["hostdir"]
    assert complete("vfpool sim reboot h", cwd=tmp_path) == ["hostdir"]
    assert complete("vfpool pool define --file po", cwd=tmp_path) == ["pool.toml"]
    assert complete("vfpool report --output ", cwd=tmp_path) == ["hostdir", "pool.toml"]
