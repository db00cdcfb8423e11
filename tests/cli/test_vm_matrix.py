"""The CLI matrix of `vfpool vm ...` on a simulated host: `vm args`, `vm launch --dry-run`, and
the errors of `vm launch`, `vm attach` and `vm detach` that come before any QEMU is needed.
(tests/qemu/ runs them against a real QEMU.)

Setups, run through the service API on a fresh default sim (82599 at 0000:05:00.0, X710 at
0000:85:00.0):

- ``none``: no pool.
- ``leases``: pools ``v`` (vfio, enp133s0f0), ``m`` (macvtap, enp133s0f1) and ``n`` (netdev,
  enp5s0f0), 2 VFs each, started; ``idle`` (netdev, enp5s0f1) defined but inactive. vm1 holds
  lease 1 (VF 0 of ``v``, 52:54:00:00:00:01), 2 (``m``, …:02) and 3 (``n``, …:03).
- ``released``: ``leases``, then lease 1 released.
- ``dead-socket``: ``leases``, and {tmp}/qmp.sock is a plain file, as a QMP socket path is
  after its QEMU is gone: there is something at the path, but nobody listens.

``{sim}`` and ``{tmp}`` are filled in. Invalid cases assert the exact error line and exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.test_matrix import check_result
from tests.conftest import CliResult
from vfpool.model.pool import VfDefaults
from vfpool.service import leases, pools
from vfpool.service.context import open_context

SETUPS = ("none", "leases", "released", "dead-socket")


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    setup: str = "leases"
    exit_code: int = 0
    stderr: str | None = ""  # exact stderr without its trailing newline
    golden: str | None = None
    stdout_has: tuple[str, ...] = field(default=())
    stdout: str | None = None  # exact stdout


def valid(name: str, setup: str, *args: str, stdout_has: tuple[str, ...] = (),
          stdout: str | None = None) -> Case:
    return Case(name, args, setup, stdout_has=stdout_has, stdout=stdout)


def invalid(name: str, setup: str, exit_code: int, stderr: str, *args: str) -> Case:
    return Case(name, args, setup, exit_code=exit_code, stderr=stderr)


def compare(name: str, setup: str, golden: str, *args: str) -> Case:
    return Case(name, args, setup, golden=golden)


LAUNCH = ("vm", "launch", "--owner", "vm1")
NETDEV_MODE = ("error: lease 3 is in netdev mode; it has nothing to hand to QEMU (use "
               "`vfpool vm args` for its interface)")
REFUSED = ("error: cannot connect to QMP at {tmp}/qmp.sock: Failed to establish connection: "
           "[Errno 111] Connection refused")

CASES = [
    # --- vm args
    compare("args-json", "leases", "argv-vm-args.json", "vm", "args", "1", "2", "3", "--json"),
    compare("args-text", "leases", "argv-vm-args.txt", "vm", "args", "1", "2", "3"),
    valid("args-vfio", "leases", "vm", "args", "1",
          stdout="-device vfio-pci,host=0000:85:02.0,id=vfpool-1\n"),
    valid("args-macvtap", "leases", "vm", "args", "2",
          stdout="-netdev 'tap,id=vfpool-2-net,fd=$TAPFD_2' -device "
                 "virtio-net-pci,netdev=vfpool-2-net,mac=52:54:00:00:00:02,id=vfpool-2\n"),
    valid("args-netdev", "leases", "vm", "args", "3", stdout="enp5s0f0v0 52:54:00:00:00:03\n"),
    valid("args-netdev-json", "leases", "vm", "args", "3", "--json",
          stdout_has=('"argv": []', '"device_id": null', '"netdev": "enp5s0f0v0"')),
    invalid("args-unknown-lease", "leases", 3, "error: no lease 99", "vm", "args", "99"),
    invalid("args-one-unknown", "leases", 3, "error: no lease 99", "vm", "args", "1", "99"),
    invalid("args-released", "released", 4, "error: lease 1 is released, not active",
            "vm", "args", "1"),
    invalid("args-none", "leases", 2, "error: Missing argument 'LEASE_ID...'.", "vm", "args"),
    invalid("args-not-a-number", "leases", 2,
            "error: Invalid value for 'LEASE_ID...': Input should be a valid integer, unable to "
            "parse string as an integer", "vm", "args", "one"),
    # --- vm launch
    valid("launch-dry-run-vfio", "leases", *LAUNCH, "--pool", "v", "--dry-run", "--", "-m", "1G",
          stdout_has=("qemu-system-x86_64 -name vm1 -qmp unix:",
                      ",server=on,wait=off -device vfio-pci,host=0000:85:02.1,id=vfpool-1 "
                      "-m 1G\n")),
    valid("launch-dry-run-macvtap", "leases", *LAUNCH, "--pool", "m", "--dry-run",
          stdout_has=(" -netdev 'tap,id=vfpool-1-net,fd=$TAPFD_1' -device "
                      "virtio-net-pci,netdev=vfpool-1-net,mac=",)),
    valid("launch-dry-run-qemu", "leases", *LAUNCH, "--pool", "v", "--dry-run", "--qemu",
          "/opt/qemu/bin/qemu-system-x86_64", stdout_has=("/opt/qemu/bin/qemu-system-x86_64 "
                                                          "-name vm1 ",)),
    valid("launch-dry-run-json", "leases", *LAUNCH, "--pool", "v", "--dry-run", "--json",
          stdout_has=('"exitcode": null', '"dry run: nothing was leased or started"',
                      '"vfio-pci,host=0000:85:02.1,id=vfpool-1"')),
    valid("launch-dry-run-netdev", "leases", *LAUNCH, "--pool", "n", "--dry-run",
          stdout_has=(",server=on,wait=off\n",)),
    invalid("launch-inactive-pool", "leases", 4,
            "error: pool 'idle' is not active; start it with `vfpool pool start idle`",
            *LAUNCH, "--pool", "idle", "--", "-m", "64"),
    invalid("launch-dry-run-inactive-pool", "leases", 4,
            "error: pool 'idle' is not active; start it with `vfpool pool start idle`",
            *LAUNCH, "--pool", "idle", "--dry-run"),
    invalid("launch-unknown-pool", "none", 3, "error: no pool named 'nope'",
            *LAUNCH, "--pool", "nope"),
    invalid("launch-exhausted", "leases", 5, "error: pool 'v' has 1 free VF(s); 2 requested",
            *LAUNCH, "--pool", "v", "--count", "2"),
    invalid("launch-count-zero", "leases", 2, "error: --count must be 1-4096, not 0",
            *LAUNCH, "--pool", "v", "--count", "0"),
    invalid("launch-owner-empty", "leases", 2, "error: owner must not be empty",
            "vm", "launch", "--owner", "", "--pool", "v", "--dry-run"),
    invalid("launch-no-owner", "leases", 2, "error: Missing option '--owner'.",
            "vm", "launch", "--pool", "v"),
    # --- vm attach
    invalid("attach-unknown-lease", "leases", 3, "error: no lease 99",
            "vm", "attach", "{tmp}/qmp.sock", "99"),
    invalid("attach-netdev-lease", "leases", 2, NETDEV_MODE,
            "vm", "attach", "{tmp}/qmp.sock", "3"),
    invalid("attach-no-qmp-socket", "leases", 3, "error: no QMP socket at {tmp}/qmp.sock",
            "vm", "attach", "{tmp}/qmp.sock", "1", "--bus", "rp1"),
    invalid("attach-released", "released", 4, "error: lease 1 is released, not active",
            "vm", "attach", "{tmp}/qmp.sock", "1"),
    invalid("attach-dead-socket", "dead-socket", 1, REFUSED, "vm", "attach", "{tmp}/qmp.sock", "2"),
    invalid("attach-missing-lease-arg", "leases", 2, "error: Missing argument 'LEASE_ID'.",
            "vm", "attach", "{tmp}/qmp.sock"),
    # --- vm detach
    invalid("detach-unknown-lease", "leases", 3, "error: no lease 99",
            "vm", "detach", "{tmp}/qmp.sock", "99"),
    invalid("detach-no-qmp-socket", "leases", 3, "error: no QMP socket at {tmp}/qmp.sock",
            "vm", "detach", "{tmp}/qmp.sock", "2"),
    invalid("detach-released", "released", 4, "error: lease 1 is released, not active",
            "vm", "detach", "{tmp}/qmp.sock", "1"),
    invalid("detach-dead-socket", "dead-socket", 1, REFUSED, "vm", "detach", "{tmp}/qmp.sock", "2"),
    invalid("detach-bad-timeout", "leases", 2,
            "error: Invalid value for '--timeout': Input should be a valid number, unable to "
            "parse string as a number", "vm", "detach", "{tmp}/qmp.sock", "1", "--timeout", "x"),
]


# --------------------------------------------------------------------------- setups
def run_setup(setup: str, sim_root: Path, tmp: Path) -> None:
    assert setup in SETUPS, setup
    if setup == "none":
        return
    if setup == "dead-socket":
        (tmp / "qmp.sock").write_text("")
    with open_context(sim=sim_root) as ctx:
        for name, pf, mode in (("v", "enp133s0f0", "vfio"), ("m", "enp133s0f1", "macvtap"),
                               ("n", "enp5s0f0", "netdev"), ("idle", "enp5s0f1", "netdev")):
            pools.define(ctx, pools.parse_spec(name, [pf], 2, "auto", mode, VfDefaults()))
        held = []
        for number, name in enumerate(("v", "m", "n"), start=1):
            pools.start(ctx, name)
            [lease] = leases.acquire(ctx, name, "vm1", mac=f"52:54:00:00:00:0{number}")
            assert lease["id"] == number
            held.append(lease)
        if setup == "released":
            leases.release(ctx, held[0]["id"], token=held[0]["token"])


def _fill(text: str, sim: Path, tmp: Path) -> str:
    return text.replace("{sim}", str(sim)).replace("{tmp}", str(tmp))


def _live_leases(sim_root: Path) -> int:
    from vfpool.service.leases import live_leases

    with open_context(sim=sim_root) as ctx, ctx.store.session() as session:
        return len(live_leases(session))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli(case: Case, cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    run_setup(case.setup, sim_root, tmp_path)
    before = _live_leases(sim_root) if case.setup != "none" else 0
    args = ["--sim", str(sim_root), *(_fill(arg, sim_root, tmp_path) for arg in case.args)]
    result = cli(*args)
    check_result(result, case, lambda text: _fill(text, sim_root, tmp_path), golden)
    if case.exit_code != 0:
        assert result.stdout == ""
    if case.stdout is not None:
        assert result.stdout == case.stdout
    if "--json" in case.args and case.exit_code == 0:
        json.loads(result.stdout)
    if case.setup != "none":  # no vm command here leases or releases anything
        assert _live_leases(sim_root) == before


def test_every_case_names_a_known_setup() -> None:
    assert {case.setup for case in CASES} <= set(SETUPS)
    assert len({case.name for case in CASES}) == len(CASES)
