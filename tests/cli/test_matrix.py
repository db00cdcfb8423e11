"""The CLI matrix: valid, invalid and compare cases, in the manner of virt-manager's tests.

Each case runs `vfpool --sim {sim} ARGS` against a fresh default simulated host (a dual-port
82599 on NUMA 0 and a dual-port X710 on NUMA 1) with its own database. ``{sim}`` and ``{tmp}``
in arguments and expected texts are replaced by the host's directory and the test's tmp_path.
Invalid cases assert the exact error line; compare cases assert stdout against a golden file.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tests.conftest import CliResult
from vfpool.cli.main import app


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    exit_code: int = 0
    stderr: str | None = None  # exact stderr (without the trailing newline) when given
    golden: str | None = None  # tests/data/golden/<golden> holds the exact stdout
    stdout_has: tuple[str, ...] = field(default=())
    use_sim: bool = True


def valid(name: str, *args: str, stdout_has: tuple[str, ...] = (), use_sim: bool = True) -> Case:
    return Case(name, args, stdout_has=stdout_has, use_sim=use_sim)


def invalid(name: str, exit_code: int, stderr: str, *args: str, use_sim: bool = True) -> Case:
    return Case(name, args, exit_code=exit_code, stderr=stderr, use_sim=use_sim)


def compare(name: str, golden: str, *args: str) -> Case:
    return Case(name, args, golden=golden)


CASES = [
    # --- pf
    compare("pf-list", "pf-list.txt", "pf", "list"),
    compare("pf-list-json", "pf-list.json", "pf", "list", "--json"),
    compare("pf-show-netdev", "pf-show-enp5s0f0.txt", "pf", "show", "enp5s0f0"),
    compare("pf-show-json", "pf-show-85-00-1.json", "pf", "show", "0000:85:00.1", "--json"),
    valid("pf-show-short-bdf", "pf", "show", "85:00.0", stdout_has=("enp133s0f0",)),
    invalid("pf-show-traversal", 2,
            "error: invalid PF '../../etc/passwd': expected a PCI address such as 0000:05:00.0 "
            "or an interface name such as enp5s0f0", "pf", "show", "../../etc/passwd"),
    invalid("pf-show-unknown-name", 3,
            "error: no PF named 'enp9s0f0': no such PCI address or network interface on this "
            "host", "pf", "show", "enp9s0f0"),
    invalid("pf-show-unknown-bdf", 3, "error: no PCI device 0000:99:00.0 on this host",
            "pf", "show", "0000:99:00.0"),
    invalid("pf-show-not-sriov", 2,
            "error: 0000:00:1f.6 (eno1) is not SR-IOV capable (driver e1000e)",
            "pf", "show", "eno1"),
    invalid("pf-show-virtual", 2, "error: interface lo is not a PCI device, so it cannot be a PF",
            "pf", "show", "lo"),
    invalid("pf-show-bad-bdf-slot", 2,
            "error: invalid PCI address '0000:05:20.0': slot 0x20 is above 0x1f",
            "pf", "show", "0000:05:20.0"),
    invalid("pf-show-missing-arg", 2, "error: Missing argument 'PF'.", "pf", "show"),
    invalid("pf-list-unknown-option", 2, "error: No such option: --bogus", "pf", "list",
            "--bogus"),
    invalid("sim-dir-missing", 3,
            "error: {tmp}/nope is not a simulated host (no sim.json); create one with "
            "`vfpool sim create {tmp}/nope`", "--sim", "{tmp}/nope", "pf", "list",
            use_sim=False),
    # --- sim
    compare("sim-profiles", "sim-profiles.txt", "sim", "profiles"),
    valid("sim-profiles-json", "sim", "profiles", "--json", stdout_has=('"mellanox-cx3"',)),
    valid("sim-create", "sim", "create", "{tmp}/new", "--nic", "intel-i350@0000:03:00.0",
          "--nic", "mellanox-cx3:numa=1", stdout_has=("enp3s0f0", "enp3s0f1", "enp5s0,enp5s0d1"),
          use_sim=False),
    valid("sim-create-json", "sim", "create", "{tmp}/new", "--nic", "mellanox-cx5", "--json",
          stdout_has=('"enp5s0f1np0"',), use_sim=False),
    invalid("sim-create-unknown-profile", 2,
            "error: unknown NIC profile 'intel-e1000'; `vfpool sim profiles` lists them: "
            "intel-82576, intel-82599, intel-e810, intel-i350, intel-x710, mellanox-cx3, "
            "mellanox-cx5", "sim", "create", "{tmp}/new", "--nic", "intel-e1000",
            use_sim=False),
    invalid("sim-create-bad-spec", 2,
            "error: invalid NIC spec 'intel-x710@05:00': expected PROFILE[@BDF][:numa=N]"
            "[:totalvfs=N], for example intel-82599@0000:05:00.0:numa=0",
            "sim", "create", "{tmp}/new", "--nic", "intel-x710@05:00", use_sim=False),
    invalid("sim-create-bad-numa", 2,
            "error: invalid NIC spec 'intel-x710:numa=x': numa must be an integer from -1 to 63",
            "sim", "create", "{tmp}/new", "--nic", "intel-x710:numa=x", use_sim=False),
    invalid("sim-create-overlap", 2,
            "error: NIC intel-x710 at 0000:05:00.0 overlaps the PCI addresses of another "
            "device; pick another @BDF", "sim", "create", "{tmp}/new", "--nic",
            "intel-82599@0000:05:00.0", "--nic", "intel-x710@0000:05:00.0", use_sim=False),
    invalid("sim-create-exists", 4,
            "error: {sim} already exists and is not empty; pass --force to rebuild the "
            "simulated host there", "sim", "create", "{sim}"),
    valid("sim-create-force", "sim", "create", "{sim}", "--force", stdout_has=("enp5s0f0",)),
    invalid("sim-create-force-not-sim", 4,
            "error: refusing to replace {tmp}: it is not a simulated host (no sim.json)",
            "sim", "create", "{tmp}", "--force", use_sim=False),
    valid("sim-reboot", "sim", "reboot", "{sim}"),
    invalid("sim-reboot-not-sim", 3,
            "error: {tmp} is not a simulated host (no sim.json); create one with "
            "`vfpool sim create {tmp}`", "sim", "reboot", "{tmp}", use_sim=False),
    valid("sim-fault", "sim", "fault", "{sim}",
          "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "--errno", "EIO"),
    invalid("sim-fault-two-kinds", 2,
            "error: give exactly one of --errno, --ignore, --no-netdev and --hang", "sim", "fault",
            "{sim}", "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "--errno", "EIO",
            "--ignore"),
    valid("sim-fault-clear", "sim", "fault", "{sim}", "--clear"),
    invalid("sim-fault-unknown-errno", 2,
            "error: unknown errno 'EWHAT'; use a name such as EIO or EBUSY", "sim", "fault",
            "{sim}", "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "--errno", "EWHAT"),
    invalid("sim-fault-outside", 2, "error: fault target /etc/passwd is outside the simulated "
            "host", "sim", "fault", "{sim}", "/etc/passwd", "--errno", "EIO"),
    # --- db
    valid("db-upgrade", "--db", "sqlite:///{tmp}/x.db", "db", "upgrade",
          stdout_has=("empty -> 0004",), use_sim=False),
    valid("db-current", "db", "current", stdout_has=("(head 0004)",)),
    valid("db-current-json-fresh", "db", "current", "--json",
          stdout_has=('"current": null', '"up_to_date": false')),
    valid("db-current-after-use", "--db", "sqlite:///{tmp}/x.db", "db", "upgrade", "--json",
          stdout_has=('"to": "0004"',), use_sim=False),
    invalid("db-bad-url", 1, "error: cannot open database nonsense://: Can't load plugin: "
            "sqlalchemy.dialects:nonsense", "--db", "nonsense://", "db", "current",
            use_sim=False),
    # --- watch
    invalid("watch-sim", 2, "error: vfpool watch follows this machine's udev, and a simulated "
            "host has none: run it without --sim (or VFPOOL_SIM)", "watch"),
    # --- global
    valid("version", "--version", stdout_has=("vfpool ",), use_sim=False),
]


def check_result(result: CliResult, case: Any, fill: Callable[[str], str],
                 golden: Callable[[str, str], None]) -> None:
    """What every CLI matrix checks: the exit code, no traceback, the exact error line, the
    golden stdout (parsed when it is JSON) and the expected pieces of stdout."""
    assert result.exit_code == case.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    if case.stderr is not None:
        assert result.stderr.rstrip("\n") == fill(case.stderr)
    if case.golden is not None:
        golden(case.golden, result.stdout)
        if case.golden.endswith(".json"):
            json.loads(result.stdout)
    for expected in case.stdout_has:
        assert fill(expected) in result.stdout


def _fill(text: str, sim: Path, tmp: Path) -> str:
    return text.replace("{sim}", str(sim)).replace("{tmp}", str(tmp))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli(case: Case, cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    args = [_fill(arg, sim_root, tmp_path) for arg in case.args]
    if case.use_sim:
        args = ["--sim", str(sim_root), *args]
    result = cli(*args)
    check_result(result, case, lambda text: _fill(text, sim_root, tmp_path), golden)


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


def _all_cases() -> list[object]:
    """CASES of every CLI matrix module (tests/cli/test_*matrix.py)."""
    found: list[object] = []
    for path in sorted(Path(__file__).parent.glob("test_*matrix.py")):
        module = importlib.import_module(f"tests.cli.{path.stem}")
        found.extend(getattr(module, "CASES", []))
    return found


def test_every_command_has_help_with_an_example_and_a_test() -> None:
    tested = {" ".join(arg for arg in getattr(case, "args", ())
                       if not arg.startswith(("-", "{", "sqlite")))
              for case in _all_cases()}
    problems = []
    for path, command in _leaf_commands():
        help_text = getattr(command, "help", None) or ""
        if not help_text.strip():
            problems.append(f"{path}: no help text")
        elif "Example:" not in help_text:
            problems.append(f"{path}: help has no example")
        if not any(words.startswith(path) for words in tested):
            problems.append(f"{path}: no CLI matrix case")
    assert problems == []
