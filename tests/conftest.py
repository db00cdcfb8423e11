"""Shared fixtures: simulated hosts, the CLI runner and golden files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vfpool.cli.main import app
from vfpool.host.sysfs import Sysfs
from vfpool.sim.host import SimHost

GOLDEN = Path(__file__).parent / "data" / "golden"
VFPOOL = Path(sys.executable).parent / "vfpool"


def run_as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `vfpool ARGS` as user nobody (65534): the suite itself runs as root."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed, so no process can drop root here")
    if os.geteuid() != 0:
        pytest.skip("the suite is not running as root, so it cannot switch to another user")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           str(VFPOOL), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60, check=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regenerate-output", action="store_true",
                     help="Rewrite the golden files in tests/data/golden/ from this run.")


@pytest.fixture
def sim_root(tmp_path: Path) -> Path:
    """The default simulated host: a dual-port 82599 on NUMA 0 and a dual-port X710 on NUMA 1."""
    root = tmp_path / "host"
    SimHost.create(root)
    return root


@pytest.fixture
def sim(sim_root: Path) -> SimHost:
    return SimHost(sim_root)


@pytest.fixture
def sysfs(sim: SimHost) -> Sysfs:
    return Sysfs(sim)


@pytest.fixture
def make_sim(tmp_path: Path) -> Callable[..., SimHost]:
    """Build a simulated host from NIC specs: ``make_sim("mellanox-cx3", "intel-i350")``."""
    counter = iter(range(1000))

    def make(*nics: str) -> SimHost:
        return SimHost.create(tmp_path / f"host{next(counter)}", list(nics) or None)

    return make


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``vfpool ARGS`` in-process, with no VFPOOL_* from the caller's environment."""
    monkeypatch.delenv("VFPOOL_SIM", raising=False)
    monkeypatch.delenv("VFPOOL_DB", raising=False)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        result = runner.invoke(app, list(args), env=env)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/data/golden/NAME; --regenerate-output rewrites the file."""
    regenerate = bool(request.config.getoption("--regenerate-output"))

    def compare(name: str, text: str) -> None:
        path = GOLDEN / name
        if regenerate or not path.exists():
            if not regenerate:
                pytest.fail(f"golden file {path} is missing; run pytest --regenerate-output")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), f"output differs from golden file {name}"

    return compare
