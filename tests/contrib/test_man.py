"""contrib/man/vfpool.1: generated from the command tree, current, and readable by man."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main

from vfpool.cli.main import app

MAN = Path(__file__).resolve().parents[2] / "contrib" / "man"
PAGE = MAN / "vfpool.1"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vfpool_man_generate", MAN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_man_page_is_up_to_date() -> None:
    page = generator().render(typer.main.get_command(app))
    assert page == PAGE.read_text(), (
        "contrib/man/vfpool.1 is stale: run `make contrib` "
        "(or .venv/bin/python contrib/man/generate.py)")


def commands(command: Any, path: str = "vfpool") -> list[tuple[str, Any]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            found += commands(sub, f"{path} {name}")
    return found


def rendered() -> str:
    if shutil.which("man") is None:
        pytest.skip("man is not installed (Debian package man-db)")
    result = subprocess.run(["man", "-l", str(PAGE)], capture_output=True, text=True,
                            timeout=300, check=False,
                            env={**os.environ, "MANWIDTH": "250", "MANPAGER": "cat",
                                 "PAGER": "cat", "MAN_KEEP_FORMATTING": ""})
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no troff warnings
    return result.stdout


def test_groff_renders_the_page_without_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (Debian package groff-base)")
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(PAGE)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert (result.returncode, result.stderr) == (0, "")


def test_every_command_option_and_example_is_in_the_rendered_page() -> None:
    text = rendered()
    lines = [line.strip() for line in text.splitlines()]
    tree = commands(typer.main.get_command(app))
    assert len(tree) > 30
    for path, command in tree:
        if path != "vfpool":
            assert path in lines, f"no section for {path}"
        for param in command.params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("-"):
                    assert re.search(rf"(^|[\s,|]){re.escape(name)}([\s,]|$)", text, re.M), (
                        f"{path} {name} is not in the page")
        help_text = command.help or ""
        for example in re.findall(r"^Example:\s*(.+)$", help_text, re.M):
            # Pasted from the page, an example is the same command line as in --help.
            assert example.strip() in lines, f"the example of {path} is not verbatim"


def test_the_page_has_the_sections_of_a_man_page() -> None:
    text = rendered()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS",
                    "ENVIRONMENT", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), section
    assert re.search(r"^\s+VFPOOL_DB\s*$", text, re.M)
    assert re.search(r"^\s+6\s+PermissionDenied:", text, re.M)
