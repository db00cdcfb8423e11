"""contrib/examples/vm-with-vfs.sh: leases VFs with --json and jq, and always releases them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vfpool.service import pools
from vfpool.service.context import Context

SCRIPT = Path(__file__).resolve().parents[2] / "contrib" / "examples" / "vm-with-vfs.sh"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def started_pool(sim_root: Path, ctx: Context) -> Path:
    """The default sim host with pool ``p``: 4 VFs of the first X710 port, VLAN 100, started."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (apt-get install jq); vm-with-vfs.sh needs it")
    pools.define(ctx, pools.parse_spec("p", ["enp133s0f0"], 4, "auto", "vfio",
                                       pools.VfDefaults(vlan=100)))
    pools.start(ctx, "p")
    return sim_root


def run_script(sim_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VFPOOL")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["VFPOOL_SIM"] = str(sim_root)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def live_leases(cli: Callable[..., CliResult], sim_root: Path) -> list[dict[str, object]]:
    result = cli("--sim", str(sim_root), "lease", "list", "--json")
    assert result.exit_code == 0, result.stderr
    leases: list[dict[str, object]] = json.loads(result.stdout)
    return leases


def test_prints_the_leases_the_store_holds_while_the_command_runs(
        started_pool: Path, cli: Callable[..., CliResult], tmp_path: Path,
        ctx: Context) -> None:
    seen = tmp_path / "seen.json"
    environment = tmp_path / "env.txt"
    probe = ('vfpool lease list --owner vm1 --json > "$1"; '
             'printf "%s\\n" "$VFPOOL_LEASE_IDS" "$VFPOOL_VF_PCIS" "$VFPOOL_VF_MACS" > "$2"')
    result = run_script(started_pool, "p", "vm1", "2", "--", "sh", "-c", probe, "sh",
                        str(seen), str(environment))
    assert result.returncode == 0, result.stderr
    held = json.loads(seen.read_text())  # the store, read while the script held the leases
    assert [(lease["owner"], lease["state"], lease["vlan"]) for lease in held] == [
        ("vm1", "active", 100)] * 2
    printed = [dict(field.split("=", 1) for field in line.split())
               for line in result.stdout.splitlines()]
    assert [(int(row["lease"]), row["vf"], row["mac"], row["vlan"]) for row in printed] == [
        (lease["id"], lease["vf"]["pci"], lease["mac"], "100") for lease in held]
    assert [row["vf"] for row in printed] == ["0000:85:02.0", "0000:85:02.1"]
    ids, pcis, macs = environment.read_text().splitlines()
    assert ids.split() == [str(lease["id"]) for lease in held]
    assert pcis.split() == [lease["vf"]["pci"] for lease in held]
    assert macs.split() == [lease["mac"] for lease in held]
    assert sorted(result.stderr.splitlines()) == [f"released lease {lease['id']}"
                                                  for lease in held]
    assert live_leases(cli, started_pool) == []
    assert pools.info(ctx, "p").vfs.free == 4


def test_command_failure_is_passed_on_and_the_leases_are_still_released(
        started_pool: Path, cli: Callable[..., CliResult]) -> None:
    result = run_script(started_pool, "p", "vm1", "1", "--", "sh", "-c", "exit 7")
    assert result.returncode == 7, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert live_leases(cli, started_pool) == []


def test_sigterm_while_the_command_runs_releases_the_leases(
        started_pool: Path, cli: Callable[..., CliResult]) -> None:
    # The command signals the script itself (its parent); bash runs the trap when it returns.
    result = run_script(started_pool, "p", "vm1", "1", "--", "sh", "-c", 'kill -TERM "$PPID"')
    assert result.returncode == 143, result.stderr
    assert "released lease" in result.stderr
    assert live_leases(cli, started_pool) == []


def test_exhausted_pool_passes_vfpools_error_on_and_leases_nothing(
        started_pool: Path, cli: Callable[..., CliResult]) -> None:
    result = run_script(started_pool, "p", "vm1", "5", "--", "true")
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr == "error: pool 'p' has 4 free VF(s); 5 requested\n"
    assert live_leases(cli, started_pool) == []


@pytest.mark.parametrize("args", [["p", "vm1"], ["p", "vm1", "two"], ["p", "vm1", "1", "true"]])
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = run_script(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")
