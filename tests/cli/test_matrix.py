"""Runs the CLI matrix: every case of tests/cli/matrix/ through the harness in
tests/cli/clitest.py, and the meta-tests over the matrix itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

from tests.cli.clitest import SETUPS, Case, Category, run_case, words
from tests.cli.matrix import CATEGORIES, all_cases
from tests.conftest import GOLDEN, CliResult
from vfpool.cli.main import app

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cli(case: Case, cli: Callable[..., CliResult], tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    run_case(case, cli, tmp_path, golden)


def _leaf_commands() -> list[tuple[str, object]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, object]] = []

    def walk(command: object, path: str) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, f"{path} {name}".strip())
        else:
            found.append((path, command))

    walk(root, "")
    return found


def test_every_command_has_help_with_an_example_and_a_case() -> None:
    tested = {words(case) for case in CASES}
    problems = []
    for path, command in _leaf_commands():
        help_text = getattr(command, "help", None) or ""
        if not help_text.strip():
            problems.append(f"{path}: no help text")
        elif "Example:" not in help_text:
            problems.append(f"{path}: help has no example")
        if not any(command_words.startswith(path) for command_words in tested):
            problems.append(f"{path}: no CLI matrix case")
    assert problems == []


def test_every_invalid_case_pins_its_error_line() -> None:
    assert [case.id for case in CASES if case.exit_code != 0 and not case.stderr] == []


def test_cases_have_unique_ids_and_known_setups() -> None:
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.setup.name for case in CASES} <= set(SETUPS)
    assert all(SETUPS[case.setup.name] is case.setup for case in CASES)
    assert len({category.name for category in CATEGORIES}) == len(CATEGORIES)


# Cases that are wrong on purpose: the harness must fail each one, or a matrix case could pass
# whatever vfpool does. They are not part of the matrix (no category list holds them).
_wrong = Category("harness-self-test")
WRONG = [
    _wrong.invalid("other-error-line", 2, "error: not what vfpool says", "pf", "show", "lo"),
    _wrong.valid("other-exit-code", "pf", "show", "lo"),
    _wrong.valid("stdout-has-missing", "pf", "list", stdout_has=("enp9s0f9",)),
    _wrong.valid("stdout-lacks-present", "pf", "list", stdout_lacks=("enp5s0f0",)),
    _wrong.valid("other-stdout", "pf", "list", stdout="enp5s0f0\n"),
    _wrong.compare("other-golden", "pf-list.json", "pf", "list"),
    _wrong.valid("unfilled-placeholder", "pf", "list", stdout_lacks=("{token}",)),
    _wrong.valid("other-file", "report", "--format", "prometheus", "--output", "{tmp}/m.prom",
                 writes=("{tmp}/m.prom", "report-metrics.prom")),
]


def _golden_read_only(name: str, text: str) -> None:
    """The golden check without --regenerate-output: a wrong case must never rewrite a file."""
    assert text == (GOLDEN / name).read_text()


@pytest.mark.parametrize("case", WRONG, ids=[case.name for case in WRONG])
def test_the_harness_fails_a_wrong_case(case: Case, cli: Callable[..., CliResult],
                                        tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        run_case(case, cli, tmp_path, _golden_read_only)
