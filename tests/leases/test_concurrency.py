"""16 processes lease from a 32-VF pool until it is exhausted, then release everything at once.

Every acquire must either succeed or exit 5, no VF may be leased twice, and at the end every VF
is free with the config it had before. The workers are real `vfpool` processes, so they contend
on the store (SQLite or PostgreSQL), the sim's lock and the per-VF locks exactly as separate
callers would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.races import Call, env
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.pool import VfDefaults
from vfpool.model.vfconfig import VfConfig
from vfpool.service import leases, pools
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost

VFPOOL = Path(sys.executable).parent / "vfpool"
POOL = "burst"
# The default simulated host's X710: two PFs, 16 VFs each.
PFS = {"0000:85:00.0": "enp133s0f0", "0000:85:00.1": "enp133s0f1"}
VFS_PER_PF = 16
TOTAL = VFS_PER_PF * len(PFS)
WORKERS = 16
# A worker can win at most every VF, then must see the pool exhausted.
MAX_ATTEMPTS = TOTAL + 1
CALL_TIMEOUT = 120.0
EXIT_EXHAUSTED = 5


def _vfpool(root: Path, *args: str) -> Call:
    result = subprocess.run([str(VFPOOL), "--sim", str(root), *args], capture_output=True,
                            text=True, env=env(), timeout=CALL_TIMEOUT, check=False)
    return Call(tuple(args), result.returncode, result.stdout, result.stderr)


def _json(root: Path, *args: str) -> Any:
    call = _vfpool(root, *args)
    assert call.returncode == 0, call.describe()
    return json.loads(call.stdout)


def _host_vfs(sim: SimHost) -> dict[str, tuple[VfConfig, str | None, str]]:
    """Every pool VF on the host: (config through the PF, driver, driver_override)."""
    sysfs = Sysfs(sim)
    found = {}
    for pci, netdev in PFS.items():
        configs = sim.vf_configs(netdev)
        for vf in sysfs.pf(PciAddress.parse(pci)).vfs:
            override = sysfs.attr(vf.pci, "driver_override").read_text().strip()
            found[str(vf.pci)] = (configs[vf.index], vf.driver, override)
    return found


def _pool_vfs(root: Path) -> dict[str, int]:
    with open_context(sim=root) as ctx:
        return pools.info(ctx, POOL).vfs.as_dict()


@pytest.fixture
def pool_root(sim_root: Path) -> Iterator[Path]:
    with open_context(sim=sim_root) as ctx:
        pools.define(ctx, pools.parse_spec(POOL, list(PFS.values()), VFS_PER_PF, "auto", "vfio",
                                           VfDefaults()))
        pools.start(ctx, POOL)
    yield sim_root


def _acquire_until_exhausted(root: Path, worker: int) -> list[Call]:
    calls = []
    for _ in range(MAX_ATTEMPTS):
        call = _vfpool(root, "lease", "acquire", POOL, "--owner", f"w{worker}", "--json")
        calls.append(call)
        if call.returncode != 0:
            break
    return calls


def _release_all(root: Path, held: list[dict[str, Any]]) -> list[Call]:
    """One worker releasing each of its leases with the token that acquire printed."""
    return [_vfpool(root, "lease", "release", str(lease["id"]), "--token", lease["token"],
                    "--json") for lease in held]


def test_sixteen_processes_exhaust_a_32_vf_pool_then_release_everything(
        pool_root: Path) -> None:
    sim = SimHost(pool_root)
    before = _host_vfs(sim)
    assert len(before) == TOTAL

    with ThreadPoolExecutor(max_workers=WORKERS) as executor:
        per_worker = list(executor.map(lambda n: _acquire_until_exhausted(pool_root, n),
                                       range(WORKERS)))

    calls = [call for worker_calls in per_worker for call in worker_calls]
    unexpected = [call.describe() for call in calls
                  if call.returncode not in (0, EXIT_EXHAUSTED)]
    assert not unexpected, "acquires that neither succeeded nor exited 5:\n" + \
        "\n".join(unexpected)
    for worker, worker_calls in enumerate(per_worker):
        assert worker_calls[-1].returncode == EXIT_EXHAUSTED, \
            f"worker w{worker} never saw the pool exhausted in {MAX_ATTEMPTS} attempts"
    for call in calls:
        if call.returncode == EXIT_EXHAUSTED:
            assert call.stdout == ""
            assert call.stderr.startswith("error: pool 'burst' has 0 free VF(s); 1 requested"), \
                call.describe()

    leased: dict[int, list[dict[str, Any]]] = {worker: [] for worker in range(WORKERS)}
    for worker, worker_calls in enumerate(per_worker):
        for call in worker_calls:
            if call.returncode == 0:
                records = json.loads(call.stdout)
                assert len(records) == 1, call.describe()
                assert records[0]["owner"] == f"w{worker}"
                assert records[0]["state"] == "active"
                assert records[0]["token"]
                leased[worker].append(records[0])
    acquired = [lease for worker_leases in leased.values() for lease in worker_leases]
    assert len(acquired) == TOTAL
    vf_pcis = [lease["vf"]["pci"] for lease in acquired]
    assert len(set(vf_pcis)) == TOTAL, f"a VF was leased twice: {sorted(vf_pcis)}"
    assert set(vf_pcis) == set(before)
    assert len({lease["id"] for lease in acquired}) == TOTAL
    assert len({lease["mac"] for lease in acquired}) == TOTAL

    # The store agrees with what the workers were told.
    stored = _json(pool_root, "lease", "list", "--json")
    assert sorted((r["id"], r["owner"], r["vf"]["pci"], r["state"]) for r in stored) == \
        sorted((r["id"], r["owner"], r["vf"]["pci"], "active") for r in acquired)
    assert _pool_vfs(pool_root) == {"total": TOTAL, "free": 0, "leased": TOTAL,
                                    "reserved": 0, "unusable": 0}
    during = _host_vfs(sim)
    for lease in acquired:
        config, driver, _ = during[lease["vf"]["pci"]]
        assert (config.mac, driver) == (lease["mac"], "vfio-pci")

    with ThreadPoolExecutor(max_workers=WORKERS) as executor:
        releases = list(executor.map(lambda n: _release_all(pool_root, leased[n]),
                                     range(WORKERS)))
    failed = [call.describe() for worker_calls in releases for call in worker_calls
              if call.returncode != 0]
    assert not failed, "releases that failed:\n" + "\n".join(failed)
    released = [json.loads(call.stdout) for worker_calls in releases for call in worker_calls]
    assert sorted(record[0]["id"] for record in released) == \
        sorted(lease["id"] for lease in acquired)
    assert all(record[0]["state"] == "released" for record in released)

    assert _json(pool_root, "lease", "list", "--json") == []
    with open_context(sim=pool_root) as ctx:
        history = leases.list_leases(ctx, include_finished=True)
    assert sorted((r.id, r.state) for r in history) == \
        sorted((r["id"], "released") for r in acquired)
    assert _pool_vfs(pool_root) == {"total": TOTAL, "free": TOTAL, "leased": 0,
                                    "reserved": 0, "unusable": 0}
    # Every VF has its saved config, driver and override back.
    assert _host_vfs(sim) == before
