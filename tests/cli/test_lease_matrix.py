"""The CLI matrix of `vfpool lease ...` and `vfpool reconcile` (issue 4).

Each case runs `vfpool --sim {sim} ARGS` against a fresh default simulated host (82599 at
0000:05:00.0 on NUMA 0, X710 at 0000:85:00.0 on NUMA 1) after the setup its ``setup`` key names,
which the test runs through the service API:

- ``none``: no pool.
- ``pools``: pool ``net`` (netdev, enp5s0f0, 2 VFs, VLAN 10) and pool ``v`` (vfio, enp133s0f0,
  2 VFs), both started; pool ``idle`` (enp5s0f1) defined but inactive.
- ``leased``: ``pools``, and vm1 holds VF 0 of ``net`` with MAC 52:54:00:00:00:01.
- ``full``: ``pools``, and both VFs of ``net`` are leased.
- ``released``: ``leased``, then that lease released.
- ``reacquired``: ``released``, then vm2 holds the same VF in a newer lease ({lease_b}).

``{sim}``, ``{tmp}``, ``{lease}``, ``{token}``, ``{lease_b}`` and ``{vf}`` in arguments and
expected texts are filled in. Invalid cases assert the exact error line and exit code; valid
cases assert an empty stderr unless they name the note they print.
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
from vfpool.service.context import Context, open_context

LEASE_KEYS = {"id", "pool", "owner", "token", "state", "mode", "mac", "vlan", "numa_node",
              "created_at", "pf", "vf"}
SETUPS = ("none", "pools", "leased", "full", "released", "reacquired")
VF0 = "0000:05:10.0"  # VF 0 of enp5s0f0


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    setup: str = "pools"
    exit_code: int = 0
    stderr: str | None = ""  # exact stderr without its trailing newline; None: not checked
    golden: str | None = None  # tests/data/golden/<golden> holds the exact stdout
    stdout_has: tuple[str, ...] = field(default=())
    stdout_lacks: tuple[str, ...] = field(default=())


def valid(name: str, setup: str, *args: str, stdout_has: tuple[str, ...] = (),
          stdout_lacks: tuple[str, ...] = (), stderr: str = "") -> Case:
    return Case(name, args, setup, stdout_has=stdout_has, stdout_lacks=stdout_lacks,
                stderr=stderr)


def invalid(name: str, setup: str, exit_code: int, stderr: str, *args: str) -> Case:
    return Case(name, args, setup, exit_code=exit_code, stderr=stderr)


def compare(name: str, setup: str, golden: str, *args: str) -> Case:
    return Case(name, args, setup, golden=golden)


OWNER_129 = "o" * 129
ACQUIRE = ("lease", "acquire")
RELEASE = ("lease", "release")

CASES = [
    # --- lease acquire: valid
    valid("acquire-table", "pools", *ACQUIRE, "net", "--owner", "vm1",
          stdout_has=("ID  POOL  OWNER  STATE   MODE    VF            NETDEV      MAC",
                      f"net   vm1    active  netdev  {VF0}  enp5s0f0v0", "lease 1 token: ")),
    valid("acquire-json", "pools", *ACQUIRE, "net", "--owner", "vm1", "--json",
          stdout_has=('"state": "active"', '"vlan": 10', '"numa_met": null',
                      '"netdev": "enp5s0f0v0"')),
    valid("acquire-count", "pools", *ACQUIRE, "net", "--owner", "vm1", "--count", "2", "--json",
          stdout_has=('"index": 0', '"index": 1')),
    valid("acquire-mac", "pools", *ACQUIRE, "net", "--owner", "vm1", "--mac",
          "52:54:00:AB:CD:EF", "--json", stdout_has=('"mac": "52:54:00:ab:cd:ef"',)),
    valid("acquire-vlan", "pools", *ACQUIRE, "net", "--owner", "vm1", "--vlan", "4094",
          "--json", stdout_has=('"vlan": 4094',)),
    valid("acquire-vfio", "pools", *ACQUIRE, "v", "--owner", "vm1", "--json",
          stdout_has=('"mode": "vfio"', '"netdev": null')),
    valid("acquire-numa-met", "pools", *ACQUIRE, "v", "--owner", "vm1", "--numa-node", "1",
          "--json", stdout_has=('"numa_met": true', '"numa_node": 1')),
    valid("acquire-numa-not-met", "pools", *ACQUIRE, "net", "--owner", "vm1", "--numa-node",
          "1", "--json", stdout_has=('"numa_met": false', '"numa_node": 0'),
          stderr="note: not all VFs are on NUMA node 1; the pool had no free VF there"),
    valid("acquire-owner-128", "pools", *ACQUIRE, "net", "--owner", "o" * 128, "--json",
          stdout_has=(f'"owner": "{"o" * 128}"',)),
    valid("acquire-after-release", "released", *ACQUIRE, "net", "--owner", "vm1", "--json",
          stdout_has=(f'"pci": "{VF0}"',)),
    # --- lease acquire: invalid
    invalid("acquire-unknown-pool", "none", 3, "error: no pool named 'nope'",
            *ACQUIRE, "nope", "--owner", "vm1"),
    invalid("acquire-inactive-pool", "pools", 4,
            "error: pool 'idle' is not active; start it with `vfpool pool start idle`",
            *ACQUIRE, "idle", "--owner", "vm1"),
    invalid("acquire-exhausted-count", "pools", 5,
            "error: pool 'net' has 2 free VF(s); 3 requested",
            *ACQUIRE, "net", "--owner", "vm1", "--count", "3"),
    invalid("acquire-exhausted", "full", 5, "error: pool 'net' has 0 free VF(s); 1 requested",
            *ACQUIRE, "net", "--owner", "vm3"),
    invalid("acquire-owner-empty", "pools", 2, "error: owner must not be empty",
            *ACQUIRE, "net", "--owner", ""),
    invalid("acquire-owner-too-long", "pools", 2,
            "error: owner is 129 characters long; at most 128 are allowed",
            *ACQUIRE, "net", "--owner", OWNER_129),
    invalid("acquire-owner-control-char", "pools", 2,
            "error: owner 'vm\\x07' contains characters that are not printable",
            *ACQUIRE, "net", "--owner", "vm\x07"),
    invalid("acquire-owner-newline", "pools", 2,
            "error: owner 'vm\\n1' contains characters that are not printable",
            *ACQUIRE, "net", "--owner", "vm\n1"),
    invalid("acquire-mac-multicast", "pools", 2,
            "error: MAC 01:00:5e:00:00:01 is a multicast address; give a unicast address",
            *ACQUIRE, "net", "--owner", "vm1", "--mac", "01:00:5e:00:00:01"),
    invalid("acquire-mac-broadcast", "pools", 2,
            "error: MAC ff:ff:ff:ff:ff:ff is the broadcast address; give a unicast address",
            *ACQUIRE, "net", "--owner", "vm1", "--mac", "ff:ff:ff:ff:ff:ff"),
    invalid("acquire-mac-zero", "pools", 2,
            "error: MAC 00:00:00:00:00:00 is all-zero; give a unicast address",
            *ACQUIRE, "net", "--owner", "vm1", "--mac", "00:00:00:00:00:00"),
    invalid("acquire-mac-malformed", "pools", 2,
            "error: invalid MAC address '52:54:00:12:34:5g': expected six hex bytes such as "
            "52:54:00:12:34:56", *ACQUIRE, "net", "--owner", "vm1", "--mac", "52:54:00:12:34:5g"),
    invalid("acquire-mac-in-use", "leased", 4,
            "error: MAC 52:54:00:00:00:01 is already used by lease {lease} of 'vm1'",
            *ACQUIRE, "v", "--owner", "vm2", "--mac", "52:54:00:00:00:01"),
    invalid("acquire-mac-with-count", "pools", 2,
            "error: --mac names one VF; it cannot go with --count 2",
            *ACQUIRE, "net", "--owner", "vm1", "--mac", "52:54:00:00:00:02", "--count", "2"),
    invalid("acquire-vlan-zero", "pools", 2, "error: VLAN 0 is outside 1-4094",
            *ACQUIRE, "net", "--owner", "vm1", "--vlan", "0"),
    invalid("acquire-vlan-4095", "pools", 2, "error: VLAN 4095 is outside 1-4094",
            *ACQUIRE, "net", "--owner", "vm1", "--vlan", "4095"),
    invalid("acquire-vlan-negative", "pools", 2, "error: VLAN -5 is outside 1-4094",
            *ACQUIRE, "net", "--owner", "vm1", "--vlan", "-5"),
    invalid("acquire-count-zero", "pools", 2, "error: --count must be 1-4096, not 0",
            *ACQUIRE, "net", "--owner", "vm1", "--count", "0"),
    invalid("acquire-count-negative", "pools", 2, "error: --count must be 1-4096, not -1",
            *ACQUIRE, "net", "--owner", "vm1", "--count", "-1"),
    invalid("acquire-count-not-a-number", "pools", 2,
            "error: Invalid value for '--count': Input should be a valid integer, unable to "
            "parse string as an integer", *ACQUIRE, "net", "--owner", "vm1", "--count", "two"),
    invalid("acquire-numa-negative", "pools", 2, "error: NUMA node -1 is outside 0-1023",
            *ACQUIRE, "net", "--owner", "vm1", "--numa-node", "-1"),
    invalid("acquire-no-owner", "pools", 2, "error: Missing option '--owner'.",
            *ACQUIRE, "net"),
    invalid("acquire-no-pool", "pools", 2, "error: Missing argument 'POOL'.", *ACQUIRE),
    # --- lease release: valid
    valid("release-token", "leased", *RELEASE, "{lease}", "--token", "{token}",
          stdout_has=("released lease {lease} ({vf})",)),
    valid("release-json", "leased", *RELEASE, "{lease}", "--token", "{token}", "--json",
          stdout_has=('"state": "released"', '"token": null'), stdout_lacks=("{token}",)),
    valid("release-owner", "full", *RELEASE, "--owner", "vm1",
          stdout_has=("released lease 1 (0000:05:10.0)",), stdout_lacks=("lease 2",)),
    valid("release-force", "leased", *RELEASE, "{lease}", "--force",
          stdout_has=("released lease {lease} ({vf})",)),
    valid("release-newer-lease", "reacquired", *RELEASE, "{lease_b}", "--token", "{token_b}",
          stdout_has=("released lease {lease_b} ({vf})",)),
    # --- lease release: invalid
    invalid("release-wrong-token", "leased", 6, "error: wrong token for lease {lease}",
            *RELEASE, "{lease}", "--token", "not-the-token"),
    invalid("release-no-token", "leased", 2,
            "error: releasing lease {lease} needs its --token (or --force for administrators)",
            *RELEASE, "{lease}"),
    invalid("release-unknown-lease", "leased", 3, "error: no lease 99",
            *RELEASE, "99", "--token", "{token}"),
    invalid("release-unknown-lease-force", "none", 3, "error: no lease 99",
            *RELEASE, "99", "--force"),
    invalid("release-nothing", "leased", 2, "error: give a LEASE_ID or --owner OWNER", *RELEASE),
    invalid("release-id-and-owner", "leased", 2, "error: give a LEASE_ID or --owner OWNER",
            *RELEASE, "{lease}", "--owner", "vm1"),
    invalid("release-owner-unknown", "leased", 3, "error: owner 'vm9' holds no leases",
            *RELEASE, "--owner", "vm9"),
    invalid("release-owner-empty", "leased", 2, "error: owner must not be empty",
            *RELEASE, "--owner", ""),
    invalid("release-twice", "released", 4,
            "error: lease {lease} is released, not active; nothing to release",
            *RELEASE, "{lease}", "--token", "{token}"),
    invalid("release-late", "reacquired", 4,
            "error: lease {lease} is released, not active; nothing to release",
            *RELEASE, "{lease}", "--token", "{token}"),
    invalid("release-late-force", "reacquired", 4,
            "error: lease {lease} is released, not active; nothing to release",
            *RELEASE, "{lease}", "--force"),
    invalid("release-id-not-a-number", "leased", 2,
            "error: Invalid value for 'LEASE_ID': Input should be a valid integer, unable to "
            "parse string as an integer", *RELEASE, "first", "--token", "{token}"),
    # --- lease list
    compare("list", "leased", "lease-list.txt", "lease", "list"),
    compare("list-all", "reacquired", "lease-list-all.txt", "lease", "list", "--all"),
    valid("list-json", "leased", "lease", "list", "--json",
          stdout_has=('"id": {lease}', '"token": null', '"mac": "52:54:00:00:00:01"'),
          stdout_lacks=("{token}",)),
    valid("list-pool", "leased", "lease", "list", "--pool", "net", stdout_has=("vm1",)),
    valid("list-other-pool", "leased", "lease", "list", "--pool", "v", "--json",
          stdout_has=("[]",)),
    valid("list-owner", "leased", "lease", "list", "--owner", "vm1", "--json",
          stdout_has=('"owner": "vm1"',)),
    valid("list-other-owner", "leased", "lease", "list", "--owner", "vm2",
          stdout_has=("ID  POOL  OWNER  STATE  MODE  VF  NETDEV  MAC  VLAN  NUMA",),
          stdout_lacks=("vm1",)),
    valid("list-released-hidden", "released", "lease", "list", "--json", stdout_has=("[]",)),
    valid("list-all-json", "released", "lease", "list", "--all", "--json",
          stdout_has=('"state": "released"',), stdout_lacks=("{token}",)),
    valid("list-empty", "none", "lease", "list", "--json", stdout_has=("[]",)),
    invalid("list-unknown-pool", "leased", 3, "error: no pool named 'nope'",
            "lease", "list", "--pool", "nope"),
    # --- lease show
    valid("show", "leased", "lease", "show", "{lease}",
          stdout_has=("owner        vm1", "mac          52:54:00:00:00:01",
                      "vf           0 0000:05:10.0 (enp5s0f0v0)", "saved        {"),
          stdout_lacks=("{token}",)),
    valid("show-json", "leased", "lease", "show", "{lease}", "--json",
          stdout_has=('"saved_config": {', '"applied_config": {', '"token": null'),
          stdout_lacks=("{token}",)),
    valid("show-released", "released", "lease", "show", "{lease}", "--json",
          stdout_has=('"state": "released"',)),
    invalid("show-unknown", "leased", 3, "error: no lease 99", "lease", "show", "99"),
    invalid("show-not-a-number", "leased", 2,
            "error: Invalid value for 'LEASE_ID': Input should be a valid integer, unable to "
            "parse string as an integer", "lease", "show", "one"),
    invalid("show-missing", "leased", 2, "error: Missing argument 'LEASE_ID'.", "lease", "show"),
    # --- reconcile
    valid("reconcile", "leased", "reconcile", stdout_has=("nothing to repair",)),
    valid("reconcile-after-release", "reacquired", "reconcile",
          stdout_has=("nothing to repair",)),
    valid("reconcile-dry-run", "leased", "reconcile", "--dry-run",
          stdout_has=("nothing to repair",)),
    valid("reconcile-json", "leased", "reconcile", "--json",
          stdout_has=('"findings": []', '"dry_run": false')),
    invalid("reconcile-unknown-option", "none", 2, "error: No such option: --bogus",
            "reconcile", "--bogus"),
]


# --------------------------------------------------------------------------- setups
def _pools(ctx: Context) -> None:
    for name, pf, mode, defaults in (("net", "enp5s0f0", "netdev", VfDefaults(vlan=10)),
                                     ("v", "enp133s0f0", "vfio", VfDefaults()),
                                     ("idle", "enp5s0f1", "netdev", VfDefaults())):
        pools.define(ctx, pools.parse_spec(name, [pf], 2, "auto", mode, defaults))
    pools.start(ctx, "net")
    pools.start(ctx, "v")


def run_setup(setup: str, sim_root: Path) -> dict[str, str]:
    """Bring the host and the store to ``setup``; returns the placeholders it defines."""
    assert setup in SETUPS, setup
    values: dict[str, str] = {}
    if setup == "none":
        return values
    with open_context(sim=sim_root) as ctx:
        _pools(ctx)
        if setup == "full":
            leases.acquire(ctx, "net", "vm1")
            leases.acquire(ctx, "net", "vm2")
        if setup in ("leased", "released", "reacquired"):
            [lease] = leases.acquire(ctx, "net", "vm1", mac="52:54:00:00:00:01")
            values.update(lease=str(lease["id"]), token=lease["token"], vf=lease["vf"]["pci"])
            if setup != "leased":
                leases.release(ctx, lease["id"], token=lease["token"])
        if setup == "reacquired":
            [newer] = leases.acquire(ctx, "net", "vm2")
            assert newer["vf"]["pci"] == values["vf"]
            values.update(lease_b=str(newer["id"]), token_b=newer["token"])
    return values


def _fill(text: str, sim: Path, tmp: Path, values: dict[str, str]) -> str:
    text = text.replace("{sim}", str(sim)).replace("{tmp}", str(tmp))
    for key, value in values.items():
        text = text.replace(f"{{{key}}}", value)
    return text


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli(case: Case, cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    values = run_setup(case.setup, sim_root)
    args = ["--sim", str(sim_root), *(_fill(arg, sim_root, tmp_path, values)
                                      for arg in case.args)]
    result = cli(*args)
    check_result(result, case, lambda text: _fill(text, sim_root, tmp_path, values), golden)
    if case.exit_code != 0:
        assert result.stdout == ""
    for unexpected in case.stdout_lacks:
        assert _fill(unexpected, sim_root, tmp_path, values) not in result.stdout
    if "--json" in case.args and case.exit_code == 0 and case.args[0] == "lease":
        document = json.loads(result.stdout)
        for record in document if isinstance(document, list) else [document]:
            assert set(record) >= LEASE_KEYS
            assert (record["token"] is not None) == (case.args[1] == "acquire")


def test_every_case_names_a_known_setup() -> None:
    assert {case.setup for case in CASES} <= set(SETUPS)
    assert len({case.name for case in CASES}) == len(CASES)
