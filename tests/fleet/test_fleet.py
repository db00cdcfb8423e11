"""Fleet mode: several hosts on one store, on SQLite and on a real PostgreSQL server.

Three simulated hosts with identical PCI layouts (the same PF and VF addresses, the same pool
name) share one database. Each host's commands must see and change only that host's rows.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import CliResult
from tests.races import env
from tests.races.storm import Call, run
from vfpool.host.udev import DeviceChange
from vfpool.model.pci import PciAddress
from vfpool.service import watch as watch_service
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost
from vfpool.store import Event, Host, Lease, Pool, open_store

Cli = Callable[..., CliResult]
PF = "enp5s0f0"
LEASED_VF = "0000:05:10.0"  # VF 0 of 0000:05:00.0, on every host
RELEASE_SQL = Path(__file__).parents[1] / "data/stores/release-0.1.0.sql"


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stderr
    return result


@dataclass(frozen=True)
class FleetHost:
    """One simulated host of the fleet: ``host(*args)`` runs ``vfpool --sim ROOT --db URL``."""

    root: Path
    url: str
    cli: Cli

    def __call__(self, *args: str) -> CliResult:
        return self.cli("--sim", str(self.root), "--db", self.url, *args)


def on(cli: Cli, root: Path, url: str) -> FleetHost:
    return FleetHost(root, url, cli)


@pytest.fixture
def hosts(make_sim: Callable[..., SimHost], store_url: str, cli: Cli
          ) -> list[FleetHost]:
    """Three hosts, each with an autostart pool `tenant` of 4 VFs on the same PF address."""
    made = []
    for name in ("h1", "h2", "h3"):
        sim = make_sim()
        ok(cli("sim", "create", str(sim.root), "--force", "--hostname", name))
        host = on(cli, sim.root, store_url)
        ok(host("pool", "define", "tenant", "--pf", PF, "--vfs", "4", "--mode", "netdev",
                "--vlan", "10"))
        ok(host("pool", "autostart", "tenant"))
        ok(host("pool", "start", "tenant"))
        made.append(host)
    return made


def leases_of(host: FleetHost) -> list[dict[str, Any]]:
    return list(json.loads(ok(host("lease", "list", "--json")).stdout))


def vfs_of(host: FleetHost, pool: str = "tenant") -> dict[str, int]:
    return dict(json.loads(ok(host("pool", "info", pool, "--json")).stdout)["vfs"])


def test_no_command_of_one_host_touches_another_hosts_rows(
        hosts: list[FleetHost], make_sim: Callable[..., SimHost],
        store_url: str) -> None:
    first, second, third = hosts
    acquired = json.loads(ok(first("lease", "acquire", "tenant", "--owner", "vm1", "--count",
                                   "2", "--json")).stdout)
    assert acquired[0]["vf"]["pci"] == LEASED_VF
    before = vfs_of(first)
    # The others run everything that repairs, restarts, watches or tears down, on the same
    # PF and VF addresses and the same pool name.
    assert ok(second("reconcile")).stdout.strip() == "nothing to repair"
    ok(third("pool", "start", "--autostarted"))
    ok(second("pool", "resize", "tenant", "--vfs", "2"))
    with open_context(db=store_url, sim=second.root) as ctx:
        removed = DeviceChange("remove", "pci", LEASED_VF,
                               f"/sys/devices/pci0000:00/{LEASED_VF}",
                               PciAddress.parse(LEASED_VF))
        [handled] = watch_service.apply(ctx, removed, {})
        assert "unusable" in handled.message
    ok(third("pool", "destroy", "tenant", "--force"))
    ok(third("pool", "undefine", "tenant"))
    # Nothing of the first host moved.
    assert vfs_of(first) == before == {"total": 4, "free": 2, "leased": 2, "reserved": 0,
                                       "unusable": 0}
    assert [(lease["id"], lease["state"]) for lease in leases_of(first)] == [
        (lease["id"], "active") for lease in acquired]
    assert ok(first("reconcile")).stdout.strip() == "nothing to repair"
    # ... while each of the others saw only its own rows.
    assert leases_of(second) == leases_of(third) == []
    assert vfs_of(second) == {"total": 2, "free": 1, "leased": 0, "reserved": 0,
                              "unusable": 1}
    assert json.loads(ok(third("pool", "list", "--all", "--json")).stdout) == []
    # Another host cannot even see the first host's lease.
    refused = second("lease", "release", str(acquired[0]["id"]), "--token",
                     acquired[0]["token"])
    assert (refused.exit_code, refused.stderr) == (3, f"error: no lease {acquired[0]['id']}\n")
    with open_store(store_url) as store, store.session() as session:
        rows = session.execute(select(Host.name, Lease.state).join(
            Host, Host.id == Lease.host_id)).all()
    assert sorted(rows) == [("h1", "active"), ("h1", "active")]


def test_a_pool_change_plans_with_its_own_hosts_pools_and_leases_only(
        make_sim: Callable[..., SimHost], store_url: str, cli: Cli) -> None:
    """Two hosts with a PF at the same address: a start or resize on one sizes that PF for
    its own pools, and sees none of the other host's memberships or leases."""
    made = []
    for name in ("h1", "h2"):
        sim = make_sim()
        ok(cli("sim", "create", str(sim.root), "--force", "--hostname", name))
        made.append(on(cli, sim.root, store_url))
    first, second = made
    ok(first("pool", "define", "wide", "--pf", PF, "--vfs", "8", "--mode", "netdev"))
    ok(first("pool", "start", "wide"))
    [lease] = json.loads(ok(first("lease", "acquire", "wide", "--owner", "vm1",
                                  "--json")).stdout)
    ok(second("pool", "define", "narrow", "--pf", PF, "--vfs", "2", "--mode", "netdev"))
    ok(second("pool", "start", "narrow"))
    numvfs = "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs"
    assert (second.root / numvfs).read_text().strip() == "2"  # not the first host's 8
    # The first host's lease on the same VF address does not hold the second host's resize.
    ok(second("pool", "resize", "narrow", "--vfs", "3"))
    assert (second.root / numvfs).read_text().strip() == "3"
    assert (first.root / numvfs).read_text().strip() == "8"
    assert [(row["id"], row["state"]) for row in leases_of(first)] == [(lease["id"], "active")]
    assert vfs_of(second, "narrow")["total"] == 3


def _sim_of(host: FleetHost) -> Path:
    # The closure's --sim argument (made by on()).
    return Path(host.__closure__[1].cell_contents)  # type: ignore[index]


def test_host_list_counts_each_hosts_pools_and_vfs(hosts: list[FleetHost]
                                                   ) -> None:
    first, second, _ = hosts
    ok(first("lease", "acquire", "tenant", "--owner", "vm1"))
    ok(second("pool", "resize", "tenant", "--vfs", "3"))
    listed = json.loads(ok(second("host", "list", "--json")).stdout)
    assert [(host["name"], host["pools"], host["vfs"]) for host in listed] == [
        ("h1", 1, {"total": 4, "free": 3, "leased": 1, "reserved": 0, "unusable": 0}),
        ("h2", 1, {"total": 3, "free": 3, "leased": 0, "reserved": 0, "unusable": 0}),
        ("h3", 1, {"total": 4, "free": 4, "leased": 0, "reserved": 0, "unusable": 0}),
    ]
    assert all(set(host) == {"name", "machine_id", "last_seen", "pools", "vfs"}
               and len(host["machine_id"]) == 32 for host in listed)
    assert len({host["machine_id"] for host in listed}) == 3


def test_fleet_place_puts_numa_fit_first_then_most_free(
        make_sim: Callable[..., SimHost], store_url: str, cli: Cli) -> None:
    # enp5s0f0 is on NUMA 0, enp133s0f0 on NUMA 1 (the default sim).
    layouts = {"a": (("enp5s0f0",), 2), "b": (("enp133s0f0",), 4),
               "c": (("enp5s0f0", "enp133s0f0"), 3)}
    hosts = {}
    for name, (pfs, vfs) in layouts.items():
        sim = make_sim()
        ok(cli("sim", "create", str(sim.root), "--force", "--hostname", name))
        host = hosts[name] = on(cli, sim.root, store_url)
        ok(host("pool", "define", "tenant", *[arg for pf in pfs for arg in ("--pf", pf)],
                "--vfs", str(vfs), "--mode", "vfio"))
        ok(host("pool", "start", "tenant"))
    placed = json.loads(ok(hosts["a"]("fleet", "place", "tenant", "--count", "2",
                                      "--numa-node", "1", "--json")).stdout)
    assert placed == [
        {"host": "b", "pool": "tenant", "free": 4, "free_on_numa": 4, "numa_met": True},
        {"host": "c", "pool": "tenant", "free": 6, "free_on_numa": 3, "numa_met": True},
        {"host": "a", "pool": "tenant", "free": 2, "free_on_numa": 0, "numa_met": False}]
    ok(hosts["b"]("lease", "acquire", "tenant", "--owner", "vm", "--count", "3"))
    placed = json.loads(ok(hosts["a"]("fleet", "place", "tenant", "--count", "2",
                                      "--numa-node", "1", "--json")).stdout)
    assert [(row["host"], row["free"]) for row in placed] == [("c", 6), ("a", 2)]
    # Without a node, the most free first.
    placed = json.loads(ok(hosts["a"]("fleet", "place", "tenant", "--count", "1",
                                      "--json")).stdout)
    assert [(row["host"], row["free"], row["numa_met"]) for row in placed] == [
        ("c", 6, True), ("a", 2, True), ("b", 1, True)]
    none = hosts["a"]("fleet", "place", "tenant", "--count", "7")
    assert (none.exit_code, none.stdout, none.stderr) == (
        5, "", "error: no host's pool 'tenant' has 7 free VFs now\n")
    bad = hosts["a"]("fleet", "place", "tenant", "--count", "0")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1


def test_report_fleet_labels_every_sample_with_its_host(hosts: list[FleetHost]
                                                        ) -> None:
    first, second, _ = hosts
    ok(first("lease", "acquire", "tenant", "--owner", "vm1"))
    text = ok(second("report", "--fleet", "--format", "prometheus")).stdout
    leases = sorted(line for line in text.splitlines() if line.startswith("vfpool_leases{"))
    assert leases == ['vfpool_leases{host="h1",pool="tenant"} 1.0',
                      'vfpool_leases{host="h2",pool="tenant"} 0.0',
                      'vfpool_leases{host="h3",pool="tenant"} 0.0']
    assert text.count("# TYPE vfpool_vfs gauge") == 1
    document = json.loads(ok(second("report", "--fleet", "--json")).stdout)
    assert [(host["name"], [vf["state"] for vf in host["vfs"]]) for host in
            document["hosts"]] == [("h1", ["leased", "free", "free", "free"]),
                                   ("h2", ["free"] * 4), ("h3", ["free"] * 4)]
    rows = ok(second("report", "--fleet", "--format", "csv")).stdout.splitlines()
    assert rows[0].startswith("host,pool,pf,")
    assert sorted({(row.split(",")[0], row.split(",")[8]) for row in rows[1:]}) == [
        ("h1", "free"), ("h1", "leased"), ("h2", "free"), ("h3", "free")]
    # Without --fleet, a host's report is its own.
    own = json.loads(ok(second("report", "--json")).stdout)
    assert [vf["state"] for vf in own["vfs"]] == ["free"] * 4


def test_a_storm_over_three_hosts_leases_no_vf_twice(hosts: list[FleetHost],
                                                      store_url: str) -> None:
    roots = [host.root for host in hosts]
    calls: list[Call] = []
    lock = threading.Lock()
    done = threading.Event()

    def worker(number: int) -> None:
        root = roots[number % 3]
        for _ in range(2):
            acquired = run(root, "acquire", "--db", store_url, "lease", "acquire", "tenant",
                           "--owner", f"w{number}", "--json")
            with lock:
                calls.append(acquired)
            if acquired.returncode != 0:
                continue
            for lease in json.loads(acquired.stdout):
                released = run(root, "release", "--db", store_url, "lease", "release",
                               str(lease["id"]), "--token", str(lease["token"]))
                with lock:
                    calls.append(released)

    def side(root: Path) -> None:
        for turn in range(60):  # bounded
            if done.is_set():
                return
            command = (("reconcile",), ("pool", "start", "--autostarted"),
                       ("report", "--fleet", "--format", "json"))[turn % 3]
            with lock:
                calls.append(run(root, "side", "--db", store_url, *command))

    with ThreadPoolExecutor(max_workers=16 + 3) as executor:
        sides = [executor.submit(side, root) for root in roots]
        jobs = [executor.submit(worker, number) for number in range(16)]
        for job in jobs:
            job.result()
        done.set()
        for job in sides:
            job.result()
    unexpected = [call.describe() for call in calls if call.unexpected]
    assert unexpected == []
    acquired = [json.loads(call.stdout) for call in calls
                if call.kind == "acquire" and call.returncode == 0]
    assert acquired, "no acquire succeeded"
    # Every lease was on its own host's VF, and all are back.
    for host in hosts:
        assert leases_of(host) == []
        assert vfs_of(host) == {"total": 4, "free": 4, "leased": 0, "reserved": 0,
                                "unusable": 0}
    with open_store(store_url) as store, store.session() as session:
        per_vf = session.execute(select(Lease.host_id, Lease.vf_pci, Lease.created_at,
                                        Lease.released_at)).all()
    # No two leases of one host's VF overlapped in time.
    by_vf: dict[tuple[int, str], list[tuple[Any, Any]]] = {}
    for host_id, vf, start, end in per_vf:
        by_vf.setdefault((host_id, vf), []).append((start, end))
    for spans in by_vf.values():
        spans.sort()
        assert all(earlier[1] is not None and earlier[1] <= later[0]
                   for earlier, later in itertools.pairwise(spans))
    assert len({host_id for host_id, *_ in per_vf}) >= 2


# ---------------------------------------------------------------- upgrade and install

def _release_store(path: Path) -> str:
    connection = sqlite3.connect(path)
    connection.executescript(RELEASE_SQL.read_text())
    connection.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("how", ["on-open", "db-upgrade"])
def test_a_release_0_1_0_store_upgrades_in_place_onto_the_local_host(
        tmp_path: Path, make_sim: Callable[..., SimHost], cli: Cli, how: str) -> None:
    url = _release_store(tmp_path / "old.db")
    local, other = make_sim(), make_sim()
    if how == "db-upgrade":
        ok(cli("--db", url, "db", "upgrade"))
    host = on(cli, local.root, url)
    pools = json.loads(ok(host("pool", "list", "--all", "--json")).stdout)
    assert sorted(pool["name"] for pool in pools) == ["gpu", "idle", "tenant"]
    live = json.loads(ok(host("lease", "list", "--json")).stdout)
    assert [lease["id"] for lease in live] == [1, 2, 3]
    # The first write claims the upgraded rows for this host ...
    ok(host("pool", "autostart", "idle"))
    with open_store(url) as store, store.session() as session:
        [(host_id, name, machine_id)] = session.execute(
            select(Host.id, Host.name, Host.machine_id)).all()
        owners = {table.__table__.name: set(session.scalars(select(table.host_id)))
                  for table in (Pool, Lease, Event)}
        lease_ids = list(session.scalars(select(Lease.id).order_by(Lease.id)))
    assert machine_id == (local.root / "etc/machine-id").read_text().strip()
    assert name == local.root.name
    assert owners == {"pools": {host_id}, "leases": {host_id}, "events": {host_id}}
    assert lease_ids == [1, 2, 3, 4]
    # ... and another host sharing the store sees none of them.
    stranger = on(cli, other.root, url)
    assert json.loads(ok(stranger("pool", "list", "--all", "--json")).stdout) == []
    assert json.loads(ok(stranger("lease", "list", "--json")).stdout) == []
    assert len(json.loads(ok(host("report", "--json")).stdout)["events"]) > 0


def test_a_postgresql_url_without_psycopg_names_the_extra(tmp_path: Path) -> None:
    code = ("import runpy, sys; sys.modules['psycopg'] = None; "
            "sys.argv = ['vfpool', '--db', 'postgresql://vfpool@/vfpool?host=/nonexistent', "
            "'pool', 'list']; runpy.run_module('vfpool', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env(), timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "pip install 'vfpool[postgresql]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_line_and_changes_nothing_on_the_host(
        sim_root: Path, cli: Cli, tmp_path: Path) -> None:
    numvfs = sim_root / "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs"
    before = numvfs.read_text()
    url = f"postgresql://vfpool@/vfpool?host={tmp_path / 'no-server'}"
    for args in (("pool", "define", "p", "--pf", PF, "--vfs", "2"), ("pool", "start", "p"),
                 ("lease", "acquire", "p", "--owner", "vm1"), ("reconcile",)):
        result = cli("--sim", str(sim_root), "--db", url, *args)
        assert result.exit_code == 1, (args, result.stderr)
        assert result.stderr.startswith("error: cannot open database postgresql"), result.stderr
        assert result.stderr.count("\n") == 1
    assert numvfs.read_text() == before
