"""Hostile input: every bad value gets one `error:` line and a contract exit code (2 for bad
input, 3 for an unknown id), never an internal error, and changes nothing.

The table covers what issue 9 found accepted or crashing; the sweep throws numbers that no
kernel field holds at every numeric option and argument.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import VFPOOL, CliResult, run_as_nobody
from vfpool.sim.host import SimHost

HUGE = str(2**63)
HUGER = str(2**64)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default sim with an active netdev pool `p` on the first X710 port, shared by the
    module's tests: each of them checks that it changed nothing."""
    root = tmp_path_factory.mktemp("hostile") / "host"
    SimHost.create(root)
    for args in (("pool", "define", "p", "--pf", "enp133s0f0", "--vfs", "2", "--mode",
                  "netdev"), ("pool", "start", "p")):
        result = subprocess.run([str(VFPOOL), "--sim", str(root), *args], capture_output=True,
                                text=True, check=False, env={"PATH": os.environ["PATH"]})
        assert result.returncode == 0, result.stderr
    return root


def _one_error_line(result: CliResult) -> str:
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


CASES = [
    # (args after --sim DIR, exit code, the error line)
    (("pool", "define", "bad\n", "--pf", "enp133s0f1", "--vfs", "1"), 2,
     "error: invalid pool name 'bad\\n': use 1 to 64 letters, digits, '_', '.' or '-', "
     "starting with a letter or digit"),
    (("pool", "define", "b\u00e9", "--pf", "enp133s0f1", "--vfs", "1"), 2,
     "error: invalid pool name 'b\u00e9': use 1 to 64 letters, digits, '_', '.' or '-', "
     "starting with a letter or digit"),
    (("lease", "acquire", "p", "--owner", "x", "--owner-pid", "0"), 2,
     "error: --owner-pid 0 is not a process id (1-4194304)"),
    (("lease", "acquire", "p", "--owner", "x", "--owner-pid", "-5"), 2,
     "error: --owner-pid -5 is not a process id (1-4194304)"),
    (("lease", "acquire", "p", "--owner", "x", "--owner-pid", HUGE), 2,
     f"error: --owner-pid {HUGE} is not a process id (1-4194304)"),
    (("lease", "acquire", "p", "--owner", "x", "--count", HUGE), 2,
     f"error: --count must be 1-4096, not {HUGE}"),
    (("lease", "acquire", "p", "--owner", "x", "--numa-node", HUGER), 2,
     f"error: NUMA node {HUGER} is outside 0-1023"),
    (("lease", "acquire", "p", "--owner", "x", "--vlan", HUGE), 2,
     f"error: VLAN {HUGE} is outside 1-4094"),
    (("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--max-tx-rate", str(2**32)),
     2, f"error: max_tx_rate {2**32} Mbps is outside 0-{2**32 - 1}"),
    (("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--min-tx-rate", HUGE),
     2, f"error: min_tx_rate {HUGE} Mbps is outside 0-{2**32 - 1}"),
    (("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", HUGE), 2,
     f"error: --vfs must be 1-65535, not {HUGE}"),
    (("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--mtu", HUGE), 2,
     f"error: MTU {HUGE} is outside 68-9216"),
    (("pool", "resize", "p", "--vfs", HUGER), 2, f"error: --vfs must be 1-65535, not {HUGER}"),
    (("lease", "show", HUGE), 3, f"error: no lease {HUGE}"),
    (("lease", "show", str(2**63 - 1)), 3, f"error: no lease {2**63 - 1}"),
    (("lease", "release", HUGER, "--force"), 3, f"error: no lease {HUGER}"),
    (("vm", "args", HUGE), 3, f"error: no lease {HUGE}"),
]


@pytest.mark.parametrize(("args", "code", "line"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_input_gets_one_line_and_its_exit_code(host: Path, cli: Callable[..., CliResult],
                                                   args: tuple[str, ...], code: int,
                                                   line: str) -> None:
    before = cli("--sim", str(host), "pool", "list", "--all", "--json").stdout
    result = cli("--sim", str(host), *args)
    assert result.exit_code == code, result.stderr
    assert _one_error_line(result) == line
    assert cli("--sim", str(host), "pool", "list", "--all", "--json").stdout == before
    assert cli("--sim", str(host), "lease", "list", "--json").stdout == "[]\n"


NUMERIC = [
    ("lease", "acquire", "p", "--owner", "x", "--count", "{}"),
    ("lease", "acquire", "p", "--owner", "x", "--vlan", "{}"),
    ("lease", "acquire", "p", "--owner", "x", "--numa-node", "{}"),
    ("lease", "acquire", "p", "--owner", "x", "--owner-pid", "{}"),
    ("lease", "show", "{}"),
    ("lease", "release", "{}", "--force"),
    ("vm", "args", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--vlan", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--vlan", "5", "--qos", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--min-tx-rate", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--max-tx-rate", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1", "--vfs", "1", "--mtu", "{}"),
    ("pool", "define", "q", "--pf", "enp133s0f1#{}-3", "--vfs", "1"),
    ("pool", "resize", "p", "--vfs", "{}"),
    ("pool", "start", "p", "--timeout", "{}"),
    ("--lock-timeout", "{}", "pool", "list"),
]
VALUES = ["-1", "0", str(2**31), str(2**32), HUGE, HUGER, str(10**30), "1e999", "nan"]


@pytest.mark.parametrize("template", NUMERIC, ids=[" ".join(t) for t in NUMERIC])
def test_numbers_no_field_holds_are_refused_cleanly(host: Path, cli: Callable[..., CliResult],
                                                    template: tuple[str, ...]) -> None:
    for value in VALUES:
        args = [part.replace("{}", value) for part in template]
        result = cli("--sim", str(host), *args)
        assert result.exit_code in (0, 2, 3, 4), (args, result.stderr)
        if result.exit_code:
            _one_error_line(result)
        if result.exit_code == 0 and args[0] == "lease":
            assert cli("--sim", str(host), "lease", "release", "--owner", "x").exit_code == 0
        if result.exit_code == 0 and args[:2] == ["pool", "define"]:  # e.g. --qos 0 is fine
            assert cli("--sim", str(host), "pool", "undefine", "q").exit_code == 0
    assert cli("--sim", str(host), "lease", "list", "--json").stdout == "[]\n"
    assert cli("--sim", str(host), "pool", "list", "--all", "--json").stdout.count(
        '"name"') == 1


def test_a_definition_that_is_not_utf8_or_too_deep(host: Path, tmp_path: Path,
                                                   cli: Callable[..., CliResult]) -> None:
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b'name = "caf\xe9"\nvfs = 1\n[[pf]]\npci = "0000:85:00.1"\n')
    result = cli("--sim", str(host), "pool", "define", "--file", str(latin))
    assert result.exit_code == 2
    assert _one_error_line(result) == (f"error: {latin} is not UTF-8 text (byte 11); TOML must "
                                       "be UTF-8")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    result = cli("--sim", str(host), "pool", "define", "--file", str(deep))
    assert result.exit_code == 2
    assert _one_error_line(result) in (
        f"error: {deep} is nested too deeply to be a pool definition",
        f"error: {deep}: unknown key 'x'")
    newline = tmp_path / "newline.toml"
    newline.write_text('name = "q\\n"\nvfs = 1\n[[pf]]\npci = "0000:85:00.1"\n')
    result = cli("--sim", str(host), "pool", "define", "--file", str(newline))
    assert result.exit_code == 2
    assert "invalid pool name 'q\\n'" in _one_error_line(result)
    assert cli("--sim", str(host), "pool", "list", "--all", "--json").stdout.count('"name"') == 1


def test_a_database_of_another_application_is_refused_and_left_alone(
        host: Path, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    result = cli("--sim", str(host), "--db", f"sqlite:///{path}", "pool", "list")
    assert result.exit_code == 2
    assert _one_error_line(result) == (
        f"error: database sqlite:///{path} holds tables of another application (customers, "
        "invoices); give vfpool a database of its own")
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"customers", "invoices"}
    result = cli("--db", f"sqlite:///{path}", "db", "upgrade")
    assert result.exit_code == 2
    assert "holds tables of another application" in _one_error_line(result)


def test_a_non_owner_gets_exit_6_from_sim_fault_and_sim_reboot(tmp_path: Path) -> None:
    # A directory nobody can reach: pytest's own temporary tree is root's alone (0700).
    shared = Path(tempfile.mkdtemp(prefix="vfpool-nobody-"))
    try:
        shared.chmod(0o755)
        root = shared / "host"
        SimHost.create(root)
        for args in (("sim", "fault", str(root), "sys/bus/pci/devices/0000:85:00.0/"
                      "sriov_numvfs", "--errno", "EIO"), ("sim", "reboot", str(root)),
                     ("sim", "fault", str(root), "--clear")):
            result = run_as_nobody(*args, cwd=shared)
            assert result.returncode == 6, result.stderr
            assert result.stderr == (f"error: the simulated host {root} belongs to uid 0; run "
                                     "as that user or as root\n")
        assert SimHost(root).state()["faults"] == []
        hidden = tmp_path / "host"
        SimHost.create(hidden)
        result = run_as_nobody("sim", "reboot", str(hidden), cwd=shared)
        assert result.returncode == 6, result.stderr
        assert result.stderr == (f"error: cannot read the simulated host {hidden}: permission "
                                 "denied\n")
    finally:
        shutil.rmtree(shared)


def test_a_modprobe_hang_fault_really_hangs_modprobe(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-i350")
    sim.inject_fault("modprobe:igb", kind="hang")
    process = subprocess.Popen([str(VFPOOL.parent / "python"), "-c",
                                "import sys; from vfpool.sim.host import SimHost; "
                                f"r = SimHost({str(sim.root)!r}).modprobe(['-r', 'igb']); "
                                "sys.exit(r.returncode)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
        assert (sim.root / "sys/bus/pci/drivers/igb").is_dir()  # nothing unloaded yet
        sim.clear_faults()
        assert process.wait(timeout=60) == 0
        assert not (sim.root / "sys/bus/pci/drivers/igb").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
