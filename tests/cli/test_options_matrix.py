"""CLI matrix cases for the verbs and options of issue 13 (`pool show`, its `pool info` alias,
global options after the command). test_matrix.py's meta-test reads CASES from every
tests/cli/test_*matrix.py module, so these count as the commands' matrix cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vfpool.service import pools
from vfpool.service.context import open_context


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    exit_code: int = 0
    stderr: str | None = None  # the exact error line
    json_keys: tuple[str, ...] = ()  # keys stdout's JSON object must have


CASES = [
    Case("pool-show", ("pool", "show", "a", "--json"),
         json_keys=("name", "state", "autostart", "method", "mode", "pfs", "vfs", "defaults")),
    Case("pool-show-json-before", ("--json", "pool", "show", "a"), json_keys=("name", "pfs")),
    Case("pool-info-alias", ("pool", "info", "a", "--json"), json_keys=("name", "pfs")),
    Case("pool-show-unknown", ("pool", "show", "b"), 3, "error: no pool named 'b'"),
    Case("pool-show-missing-name", ("pool", "show"), 2, "error: missing argument NAME"),
    Case("pool-typo", ("pool", "shwo", "a"), 2,
         "error: no such command 'shwo'; did you mean 'show'?"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case(case: Case, cli: Callable[..., CliResult], sim_root: Path) -> None:
    pools.define(open_context(sim=sim_root), pools.parse_spec(
        "a", ["enp133s0f0"], 2, "auto", "vfio", pools.VfDefaults()))
    result = cli("--sim", str(sim_root), *case.args)
    assert result.exit_code == case.exit_code, result.stderr
    if case.stderr is not None:
        assert result.stderr == case.stderr + "\n"
    else:
        assert result.stderr == ""
    if case.json_keys:
        document = json.loads(result.stdout)
        assert document["name"] == "a"
        assert set(case.json_keys) <= set(document)
