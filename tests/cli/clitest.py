"""The CLI matrix harness, in the manner of virt-manager's virtinst ``tests/clitest.py``.

A matrix is a set of named **categories** (``pf``, ``pool``, ``lease``, ...), each holding
**cases** that only declare what to run and what to expect; tests/cli/matrix/ holds one table
per area and tests/cli/test_matrix.py runs every case. A case runs ``vfpool --sim {sim} ARGS``
in-process against a fresh host built from its named **setup** (see SETUPS below), with its own
database:

1. the setup builds the host (the default simulated host, another NIC profile, or none at
   all), writes its files and runs its commands: vfpool commands through the CLI, or a
   ``prepare`` function through the service API that returns placeholder values;
2. the case's own files and ``steps`` (more vfpool commands) follow;
3. the command runs, and every case is checked for: the exit code, no traceback, the exact
   error line (``stderr``), the golden stdout (``golden``; ``pytest --regenerate-output``
   rewrites tests/data/golden/), pieces stdout has or lacks, the exact stdout, JSON that parses
   when ``--json`` succeeds, and the file the command ``writes``;
4. the category's own checks follow (JSON records of leases, report formats, ...).

``{sim}`` (the host's directory), ``{tmp}`` (the test's tmp_path) and the values a setup
returns (``{lease}``, ``{token}``, ...) are filled into arguments, expected texts and file
names. A *quiet* category also asserts that a command that works prints nothing on stderr
(unless the case names what it prints) and a command that fails prints nothing on stdout.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.conftest import GOLDEN, CliResult
from vfpool.model.pool import VfDefaults
from vfpool.service import leases, pools
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost

Command = tuple[str, ...]
Files = tuple[tuple[str, str], ...]  # (path with placeholders, text)


# --------------------------------------------------------------------------- setups
@dataclass(frozen=True)
class Setup:
    """A named starting point: a host, files, then vfpool commands or a service-level
    ``prepare(host, tmp) -> placeholder values``."""

    name: str
    nics: tuple[str, ...] | None = ()  # NIC profiles; () = the default host; None = no host
    files: Files = ()
    commands: tuple[Command, ...] = ()
    prepare: Callable[[Path, Path], dict[str, str]] | None = None
    doc: str = ""


def expect(exit_code: int, *args: str) -> Command:
    """A step that must fail with ``exit_code`` (any other step must exit 0)."""
    return (f"exit={exit_code}", *args)


# -- vfpool commands, for setups and steps
def define(name: str, *pfs: str, vfs: int = 4, extra: tuple[str, ...] = ()) -> Command:
    """``pool define NAME --pf PF... --vfs N EXTRA...``"""
    pf_args = [arg for pf in pfs for arg in ("--pf", pf)]
    return ("pool", "define", name, *pf_args, "--vfs", str(vfs), *extra)


def start(name: str, *extra: str) -> Command:
    return ("pool", "start", name, *extra)


def fault(target: str, *kind: str) -> Command:
    """``sim fault {sim} TARGET KIND...``: the next write to TARGET fails as KIND says."""
    return ("sim", "fault", "{sim}", target, *kind)


REBOOT = ("sim", "reboot", "{sim}")
POOL_A = define("a", "enp5s0f0")  # 4 VFs of the first 82599 port
POOL_B = define("b", "enp133s0f1#8-15", vfs=2, extra=("--mode", "netdev"))  # an X710 range


def _define(ctx_root: Path, specs: tuple[tuple[str, str, str, VfDefaults], ...],
            start: tuple[str, ...]) -> None:
    with open_context(sim=ctx_root) as ctx:
        for name, pf, mode, defaults in specs:
            pools.define(ctx, pools.parse_spec(name, [pf], 2, "auto", mode, defaults))
        for name in start:
            pools.start(ctx, name)


# -- the lease matrix: pools net (netdev, enp5s0f0, VLAN 10) and v (vfio, enp133s0f0), 2 VFs
# each, started; idle (netdev, enp5s0f1) defined only.
LEASE_POOLS = (("net", "enp5s0f0", "netdev", VfDefaults(vlan=10)),
               ("v", "enp133s0f0", "vfio", VfDefaults()),
               ("idle", "enp5s0f1", "netdev", VfDefaults()))


def _pools_started(host: Path, tmp: Path) -> dict[str, str]:
    _define(host, LEASE_POOLS, ("net", "v"))
    return {}


def _net_full(host: Path, tmp: Path) -> dict[str, str]:
    _pools_started(host, tmp)
    with open_context(sim=host) as ctx:
        leases.acquire(ctx, "net", "vm1")
        leases.acquire(ctx, "net", "vm2")
    return {}


def _lease_held(host: Path, tmp: Path, then: str = "") -> dict[str, str]:
    _pools_started(host, tmp)
    with open_context(sim=host) as ctx:
        [lease] = leases.acquire(ctx, "net", "vm1", mac="52:54:00:00:00:01")
        values = {"lease": str(lease.id), "token": lease.token, "vf": lease.vf.pci}
        if then:
            leases.release(ctx, lease.id, token=lease.token)
        if then == "reacquired":
            [newer] = leases.acquire(ctx, "net", "vm2")
            assert newer.vf.pci == values["vf"]
            values.update(lease_b=str(newer.id), token_b=newer.token)
    return values


# -- the vm matrix: pools v (vfio, enp133s0f0), m (macvtap, enp133s0f1) and n (netdev,
# enp5s0f0), 2 VFs each, started; idle (netdev, enp5s0f1) defined only. vm1 holds lease 1 (v,
# 52:54:00:00:00:01), 2 (m, ...:02) and 3 (n, ...:03).
GUEST_POOLS = (("v", "enp133s0f0", "vfio", VfDefaults()),
               ("m", "enp133s0f1", "macvtap", VfDefaults()),
               ("n", "enp5s0f0", "netdev", VfDefaults()),
               ("idle", "enp5s0f1", "netdev", VfDefaults()))


def live_leases(host: Path) -> int:
    with open_context(sim=host) as ctx, ctx.store.session() as session:
        return len(leases.live_leases(session))


def _guest_leases(host: Path, tmp: Path, then: str = "") -> dict[str, str]:
    if then == "dead-socket":
        (tmp / "qmp.sock").write_text("")
    _define(host, GUEST_POOLS, ())
    with open_context(sim=host) as ctx:
        held = []
        for number, name in enumerate(("v", "m", "n"), start=1):
            pools.start(ctx, name)
            [lease] = leases.acquire(ctx, name, "vm1", mac=f"52:54:00:00:00:0{number}")
            assert lease.id == number
            held.append(lease)
        if then == "released":
            leases.release(ctx, held[0].id, token=held[0].token)
    # What the vm category checks: no vm command leases or releases anything.
    return {"live_leases": str(live_leases(host))}


def _report_scenario(host: Path, tmp: Path) -> dict[str, str]:
    from tests.report.test_report import populate

    populate(host)
    return {}


POOL_A_DEFINED = Setup("pool a defined", commands=(POOL_A,),
                       doc="pool a (enp5s0f0, 4 VFs) defined, not started")
POOL_A_STARTED = Setup("pool a started", commands=(POOL_A, start("a")),
                       doc="pool a (enp5s0f0, 4 VFs) started")
POOL_B_DEFINED = Setup("pool b defined", commands=(POOL_B,),
                       doc="pool b (netdev, VFs 8-15 of enp133s0f1, 2 VFs) defined, not started")
POOL_B_STARTED = Setup("pool b started", commands=(POOL_B, start("b")),
                       doc="pool b (netdev, VFs 8-15 of enp133s0f1, 2 VFs) started")
POOLS_AUTOSTART = Setup("pools a and b autostart",
                        commands=(POOL_A, POOL_B, ("pool", "autostart", "a"),
                                  ("pool", "autostart", "b")),
                        doc="pools a and b defined and marked autostart, not started")
POOLS_LISTED = Setup("pools a, b and c", commands=(POOL_A, POOL_B, define("c", "enp133s0f0", vfs=2),
                                                   start("a"), start("b"),
                                                   ("pool", "autostart", "b")),
                     doc="pools a and b started (b autostarts), pool c (enp133s0f0) defined")
TENANT_A = Setup("pool tenant-a started",
                 commands=(define("tenant-a", "enp5s0f0", "enp133s0f1#8-15",
                                  extra=("--mode", "macvtap", "--vlan", "100", "--mtu", "9000")),
                           start("tenant-a")),
                 doc="pool tenant-a (macvtap, VLAN 100, MTU 9000) on enp5s0f0 and VFs 8-15 of "
                     "enp133s0f1, 4 VFs each, started")
MACVTAP_A = Setup("macvtap pool a defined",
                  commands=(define("a", "enp5s0f0", extra=("--mode", "macvtap")),),
                  doc="pool a (macvtap, enp5s0f0, 4 VFs) defined, not started")
EMPTY_SIM = Setup("empty sim", doc="the default host: a dual-port 82599 (0000:05:00.0, NUMA 0) "
                                   "and a dual-port X710 (0000:85:00.0, NUMA 1); no pools")
NO_HOST = Setup("no host", nics=None, doc="no simulated host at all")
MLX4_HOST = Setup("mlx4 host", nics=("mellanox-cx3", "intel-82599"),
                  doc="a ConnectX-3 (mlx4, module-param only, one PF with two ports) and an "
                      "82599")
IGB_HOST = Setup("igb host", nics=("intel-i350",),
                 doc="a dual-port I350 (igb: one max_vfs for every port, at most 7 VFs)")
IGB_8_HOST = Setup("igb host, 8 VFs", nics=("intel-i350:totalvfs=8",),
                   doc="an I350 whose ports claim 8 VFs, one above igb's limit")
IGB_82576_HOST = Setup("82576 host", nics=("intel-82576",), doc="a dual-port 82576 (igb)")
POOLS_STARTED = Setup("pools started", prepare=_pools_started,
                      doc="pools net (netdev, enp5s0f0, VLAN 10) and v (vfio, enp133s0f0), 2 "
                          "VFs each, started; pool idle (enp5s0f1) defined only")
NET_FULL = Setup("pool net full", prepare=_net_full,
                 doc="pools started, and both VFs of net leased (vm1, vm2)")
LEASE_HELD = Setup("lease held", prepare=_lease_held,
                   doc="pools started, and vm1 holds VF 0 of net with MAC 52:54:00:00:00:01: "
                       "{lease}, {token}, {vf}")
LEASE_RELEASED = Setup("lease released",
                       prepare=lambda host, tmp: _lease_held(host, tmp, "released"),
                       doc="lease held, then released")
LEASE_REACQUIRED = Setup("lease reacquired",
                         prepare=lambda host, tmp: _lease_held(host, tmp, "reacquired"),
                         doc="lease released, then vm2 holds the same VF: {lease_b}, {token_b}")
GUEST_LEASES = Setup("guest leases held", prepare=_guest_leases,
                     doc="pools v (vfio), m (macvtap) and n (netdev) started, idle defined; "
                         "vm1 holds leases 1 (v), 2 (m) and 3 (n)")
GUEST_LEASE_RELEASED = Setup("guest lease released",
                             prepare=lambda host, tmp: _guest_leases(host, tmp, "released"),
                             doc="guest leases held, then lease 1 released")
DEAD_QMP_SOCKET = Setup("dead QMP socket",
                        prepare=lambda host, tmp: _guest_leases(host, tmp, "dead-socket"),
                        doc="guest leases held, and {tmp}/qmp.sock is a plain file: something "
                            "is at the path, but nobody listens (its QEMU is gone)")
MLX4_POOL_M = Setup("mlx4 pool m defined", nics=MLX4_HOST.nics, commands=(define("m", "enp5s0"),),
                    doc="mlx4 host, pool m (enp5s0, 4 VFs, method auto: module-param) defined")
IGB_POOL_A = Setup("igb pool a defined", nics=IGB_HOST.nics,
                   commands=(define("a", "enp5s0f0", vfs=3, extra=("--method", "module-param")),),
                   doc="igb host, pool a (enp5s0f0, 3 VFs, module-param) defined; enp5s0f1 is "
                       "up outside any pool")
REPORT_SCENARIO = Setup("report scenario", prepare=_report_scenario,
                        doc="the scenario of tests/report/test_report.py: pools idle, net and "
                            "v with live, reserved and released leases and an unusable VF")

SETUPS = {setup.name: setup for setup in (
    EMPTY_SIM, NO_HOST, POOL_A_DEFINED, POOL_A_STARTED, POOL_B_DEFINED, POOL_B_STARTED,
    POOLS_AUTOSTART, POOLS_LISTED, TENANT_A, MACVTAP_A, MLX4_HOST, MLX4_POOL_M, IGB_HOST,
    IGB_POOL_A, IGB_8_HOST, IGB_82576_HOST, POOLS_STARTED, NET_FULL, LEASE_HELD, LEASE_RELEASED,
    LEASE_REACQUIRED, GUEST_LEASES, GUEST_LEASE_RELEASED, DEAD_QMP_SOCKET, REPORT_SCENARIO)}


# --------------------------------------------------------------------------- cases
@dataclass
class Run:
    """One case's host, tmp directory and placeholder values."""

    tmp: Path
    host: Path | None
    values: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        if self.host is not None:
            text = text.replace("{sim}", str(self.host))
        text = text.replace("{tmp}", str(self.tmp))
        for key, value in self.values.items():
            text = text.replace(f"{{{key}}}", value)
        # A placeholder left unfilled would make an expectation vacuous (stdout never holds
        # the literal "{token}"), so it is an error in the case, not a pass.
        left = re.findall(r"\{(?:sim|tmp|lease|lease_b|token|token_b|vf|live_leases)\}", text)
        assert not left, f"placeholders {left} have no value in this setup"
        return text


Check = Callable[[Run, "Case", CliResult], None]


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    args: Command
    setup: Setup = EMPTY_SIM
    steps: tuple[Command, ...] = ()  # vfpool commands after the setup's
    files: Files = ()  # written after the setup's
    use_sim: bool = True  # prepend --sim {sim}
    exit_code: int = 0
    stderr: str | None = None  # the exact stderr without its trailing newline; None: unchecked
    golden: str | None = None  # tests/data/golden/<golden> holds the exact stdout
    stdout: str | None = None  # the exact stdout
    stdout_has: tuple[str, ...] = ()
    stdout_lacks: tuple[str, ...] = ()
    writes: tuple[str, str] | None = None  # (file, golden): the command wrote exactly that
    quiet: bool = False
    checks: tuple[Check, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"


@dataclass
class Category:
    """A named group of cases that share a default setup, whether --sim is given, whether
    the commands are quiet, and checks of their own."""

    name: str
    setup: Setup = EMPTY_SIM
    use_sim: bool = True
    quiet: bool = False
    checks: tuple[Check, ...] = ()
    doc: str = ""
    cases: list[Case] = field(default_factory=list)

    def _add(self, name: str, args: Command, *, setup: Setup | None, steps: tuple[Command, ...],
             files: Files, use_sim: bool | None, checks: tuple[Check, ...],
             **expected: object) -> Case:
        case = Case(self.name, name, args, setup or self.setup, steps, files,
                    self.use_sim if use_sim is None else use_sim, quiet=self.quiet,
                    checks=self.checks + checks)
        case = replace(case, **expected)  # type: ignore[arg-type]
        self.cases.append(case)
        return case

    def valid(self, name: str, *args: str, setup: Setup | None = None,
              steps: tuple[Command, ...] = (), files: Files = (), use_sim: bool | None = None,
              stdout_has: tuple[str, ...] = (), stdout_lacks: tuple[str, ...] = (),
              stdout: str | None = None, stderr: str | None = None,
              writes: tuple[str, str] | None = None, checks: tuple[Check, ...] = ()) -> Case:
        """A command that works (exit 0)."""
        return self._add(name, args, setup=setup, steps=steps, files=files, use_sim=use_sim,
                         checks=checks, stdout_has=stdout_has, stdout_lacks=stdout_lacks,
                         stdout=stdout, writes=writes,
                         stderr=("" if self.quiet else None) if stderr is None else stderr)

    def invalid(self, name: str, exit_code: int, stderr: str, *args: str,
                setup: Setup | None = None, steps: tuple[Command, ...] = (), files: Files = (),
                use_sim: bool | None = None, stdout_has: tuple[str, ...] = ()) -> Case:
        """A command that fails with ``exit_code`` and exactly the error line ``stderr``."""
        return self._add(name, args, setup=setup, steps=steps, files=files, use_sim=use_sim,
                         checks=(), exit_code=exit_code, stderr=stderr, stdout_has=stdout_has)

    def compare(self, name: str, golden: str, *args: str, setup: Setup | None = None,
                steps: tuple[Command, ...] = (), files: Files = (),
                use_sim: bool | None = None) -> Case:
        """A command whose stdout is exactly tests/data/golden/<golden>."""
        return self._add(name, args, setup=setup, steps=steps, files=files, use_sim=use_sim,
                         checks=(), golden=golden, stderr="" if self.quiet else None)


# --------------------------------------------------------------------------- category checks
LEASE_KEYS = {"id", "pool", "owner", "token", "state", "mode", "mac", "vlan", "numa_node",
              "created_at", "pf", "vf"}


def lease_records(run: Run, case: Case, result: CliResult) -> None:
    """Every lease record a `lease` command prints as JSON has the lease keys, and only
    `lease acquire` shows the token."""
    if "--json" in case.args and case.exit_code == 0 and case.args[0] == "lease":
        document = json.loads(result.stdout)
        for record in document if isinstance(document, list) else [document]:
            assert set(record) >= LEASE_KEYS
            assert (record["token"] is not None) == (case.args[1] == "acquire")


def no_lease_changes(run: Run, case: Case, result: CliResult) -> None:
    """No `vm` command leases or releases anything: the live leases are those the setup
    counted."""
    if "live_leases" in run.values:
        assert run.host is not None
        assert live_leases(run.host) == int(run.values["live_leases"])


def report_formats(run: Run, case: Case, result: CliResult) -> None:
    """--output leaves stdout empty; the JSON document has its four keys and the CSV its
    eight VF rows (the report scenario's)."""
    if "--output" in case.args:
        assert result.stdout == ""
    if case.exit_code == 0 and ("--json" in case.args or "json" in case.args):
        document = json.loads(result.stdout)
        assert set(document) == {"generated_at", "pools", "vfs", "events"}
    if case.exit_code == 0 and "csv" in case.args:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert len(rows) == 8 and rows[0]["owner"] == "vm1"


def units_written(run: Run, case: Case, result: CliResult) -> None:
    """`contrib systemd --output-dir {tmp}/units` wrote both units there, and said so."""
    units = run.tmp / "units"
    assert sorted(path.name for path in units.iterdir()) == ["vfpool-autostart.service",
                                                            "vfpool-watch.service"]
    assert "ExecStart=/usr/bin/vfpool watch" in (units / "vfpool-watch.service").read_text()
    assert f"wrote {units}/vfpool-watch.service" in result.stderr


# --------------------------------------------------------------------------- running
def _write(run: Run, files: Files) -> None:
    for name, text in files:
        Path(run.fill(name)).write_text(text)


def _step(run: Run, cli: Callable[..., CliResult], step: Command) -> None:
    wanted = 0
    if step[0].startswith("exit="):
        wanted, step = int(step[0].removeprefix("exit=")), step[1:]
    result = cli("--sim", str(run.host), *(run.fill(arg) for arg in step))
    assert result.exit_code == wanted, f"setup step {step}: {result.stderr}"


def prepare(case: Case, cli: Callable[..., CliResult], tmp: Path) -> Run:
    """Build the case's host and state: its setup, then its own files and steps."""
    setup = case.setup
    host = None
    if setup.nics is not None:
        host = tmp / "host"
        SimHost.create(host, list(setup.nics) or None)
    run = Run(tmp, host)
    _write(run, setup.files)
    for command in setup.commands:
        _step(run, cli, command)
    if setup.prepare is not None:
        assert host is not None, f"setup {setup.name!r} prepares a host it does not have"
        run.values.update(setup.prepare(host, tmp))
    _write(run, case.files)
    for command in case.steps:
        _step(run, cli, command)
    return run


def check(case: Case, run: Run, result: CliResult, golden: Callable[[str, str], None]) -> None:
    """What every case checks, then the checks of its category."""
    assert result.exit_code == case.exit_code, result.stderr
    assert "Traceback" not in result.stderr
    if case.stderr is not None:
        assert result.stderr.rstrip("\n") == run.fill(case.stderr)
    if case.quiet and case.exit_code != 0:
        assert result.stdout == ""
    if case.golden is not None:
        golden(case.golden, result.stdout)
        if case.golden.endswith(".json"):
            json.loads(result.stdout)
    if case.stdout is not None:
        assert result.stdout == case.stdout
    for expected in case.stdout_has:
        assert run.fill(expected) in result.stdout
    for unexpected in case.stdout_lacks:
        assert run.fill(unexpected) not in result.stdout
    if "--json" in case.args and case.exit_code == 0:
        json.loads(result.stdout)
    if case.writes is not None:
        written = Path(run.fill(case.writes[0]))
        assert written.read_text() == (GOLDEN / case.writes[1]).read_text()
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
        assert not [name for name in os.listdir(written.parent) if name.endswith(".tmp")]
    for extra in case.checks:
        extra(run, case, result)


def run_case(case: Case, cli: Callable[..., CliResult], tmp: Path,
             golden: Callable[[str, str], None]) -> CliResult:
    run = prepare(case, cli, tmp)
    args = [run.fill(arg) for arg in case.args]
    if case.use_sim:
        assert run.host is not None, f"case {case.id} passes --sim but its setup has no host"
        args = ["--sim", str(run.host), *args]
    result = cli(*args)
    check(case, run, result, golden)
    return result


def words(case: Case) -> str:
    """The command a case runs, without options and placeholders: ``pool define a``."""
    return " ".join(arg for arg in case.args if not arg.startswith(("-", "{", "sqlite")))


def by_id(cases: list[Case]) -> Mapping[str, Case]:
    return {case.id: case for case in cases}
