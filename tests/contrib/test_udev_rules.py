"""contrib/udev: the PF naming rules are well formed and name the simulated host's PFs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vfpool.model.pci import PciAddress

RULES = (Path(__file__).resolve().parents[2] / "contrib" / "udev"
         / "70-vfpool-pf-names.rules.example")
# One udev key: KEY or KEY{attr}, an operator, a double-quoted value.
_KEY = re.compile(r'^(?P<key>[A-Z_]+(?:\{[A-Za-z0-9_]+\})?)(?P<op>==|!=|=)"(?P<value>[^"]*)"$')
_FULL_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")
_NETDEV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,14}$")


def parse_rule(line: str) -> list[tuple[str, str, str]]:
    clauses = []
    for part in line.split(", "):
        match = _KEY.match(part.strip())
        assert match is not None, f"not a udev key clause: {part!r} in {line!r}"
        clauses.append((match["key"], match["op"], match["value"]))
    return clauses


def rules(text: str, *, include_commented: bool = False) -> list[list[tuple[str, str, str]]]:
    parsed = []
    for raw in text.splitlines():
        line = raw.strip()
        if include_commented and line.startswith("# ") and "NAME=" in line:
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        parsed.append(parse_rule(line))
    return parsed


@pytest.mark.parametrize("include_commented", [False, True], ids=["rules", "commented-rules"])
def test_every_rule_renames_one_pf_by_pci_address(include_commented: bool) -> None:
    parsed = rules(RULES.read_text(), include_commented=include_commented)
    assert len(parsed) >= (5 if include_commented else 4)
    for clauses in parsed:
        *matches, (key, op, name) = clauses
        assert (key, op) == ("NAME", "="), clauses
        assert _NETDEV_NAME.match(name) and not name.startswith("eth"), name
        assert all(op in ("==", "!=") for _, op, _ in matches), clauses
        found = {key: value for key, op, value in matches if op == "=="}
        assert found["SUBSYSTEM"] == "net" and found["ACTION"] == "add", clauses
        assert _FULL_BDF.match(found["KERNELS"]), found["KERNELS"]
        assert str(PciAddress.parse(found["KERNELS"])) == found["KERNELS"]
        assert found["DRIVERS"], clauses
    names = [clauses[-1][2] for clauses in parsed]
    addresses = [dict((k, v) for k, _, v in clauses)["KERNELS"] for clauses in parsed]
    assert len(set(names)) == len(names) and len(set(addresses)) == len(addresses)


def test_parser_rejects_malformed_lines() -> None:
    for bad in ['SUBSYSTEM=="net" NAME="x"', "SUBSYSTEM==net, NAME=\"x\"",
                'subsystem=="net", NAME="x"']:
        with pytest.raises(AssertionError):
            parse_rule(bad)


def test_active_rules_name_the_pfs_of_the_default_sim_host(
        sim_root: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("--sim", str(sim_root), "pf", "list", "--json")
    assert result.exit_code == 0, result.stderr
    drivers = {row["pci"]: row["driver"] for row in json.loads(result.stdout)}
    for clauses in rules(RULES.read_text()):
        found = {key: value for key, _, value in clauses}
        assert drivers.get(found["KERNELS"]) == found["DRIVERS"], found


def test_udevadm_verify_accepts_the_rules(tmp_path: Path) -> None:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.skip("udevadm is not installed; only the rule syntax above was checked")
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, text=True,
                           timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip("this udevadm has no `verify` (it needs systemd >= 254); only the rule "
                    "syntax above was checked")
    target = tmp_path / "70-vfpool-pf-names.rules"
    target.write_text(RULES.read_text())
    result = subprocess.run([udevadm, "verify", str(target)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
