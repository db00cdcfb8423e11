"""The Python API (issue 4): `vfpool.connect(db=..., sim=...)`, `Host.acquire`, `acquire_many`,
`release` and `leases`, on the simulator, and the CLI working on the same store."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

import vfpool
from tests.conftest import CliResult
from vfpool.api import (
    FleetReport,
    Host,
    Lease,
    PfDetail,
    PfInfo,
    PoolInfo,
    PoolStarted,
    Report,
    VfCounts,
)
from vfpool.errors import Exhausted
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.sim.host import SimHost
from vfpool.store.states import Method, Mode, PoolState

IXGBE0 = "0000:05:00.0"  # enp5s0f0 on NUMA 0 of the default simulated host
I40E0 = "0000:85:00.0"  # enp133s0f0 on NUMA 1


def vf_driver(sim: SimHost, pf_pci: str, index: int) -> str | None:
    vf = Sysfs(sim).virtfn(PciAddress.parse(pf_pci), index)
    assert vf is not None
    return vf.driver


def started(host: Host, mode: str = "netdev") -> None:
    host.define_pool("tenant-a", ["enp5s0f0", "enp133s0f0"], 2, mode=mode, vlan=10)
    host.start_pool("tenant-a")


def test_acquire_and_release_through_connect(sim_root: Path, sim: SimHost) -> None:
    with vfpool.connect(sim=sim_root) as host:
        started(host)
        before = sim.vf_configs("enp5s0f0")[0]
        lease = host.acquire("tenant-a", owner="vm1")
        assert isinstance(lease, Lease)
        assert (lease.pool, lease.owner, lease.state, lease.mode, lease.vlan) == (
            "tenant-a", "vm1", "active", "netdev", 10)
        assert (lease.pf_pci, lease.pf_netdev, lease.vf_index, lease.vf_netdev) == (
            IXGBE0, "enp5s0f0", 0, "enp5s0f0v0")
        assert lease.token
        assert (lease.numa_node, lease.numa_met) == (0, None)
        assert sim.vf_configs("enp5s0f0")[0].mac == lease.mac
        assert sim.vf_configs("enp5s0f0")[0].vlan == 10
        # leases() never carries a token.
        [listed] = host.leases()
        assert (listed.id, listed.mac, listed.token) == (lease.id, lease.mac, None)
        host.release(lease)
        assert host.leases() == []
        assert [entry.state for entry in host.leases(include_finished=True)] == ["released"]
        assert host.pool("tenant-a").vfs.free == 4
    assert sim.vf_configs("enp5s0f0")[0] == before


def test_acquire_with_mac_vlan_and_numa(sim_root: Path, sim: SimHost) -> None:
    with vfpool.connect(sim=sim_root) as host:
        started(host, mode="vfio")
        lease = host.acquire("tenant-a", "vm1", mac="52:54:00:12:34:56", vlan=20, numa_node=1)
        assert (lease.mac, lease.vlan, lease.pf_pci, lease.numa_met) == (
            "52:54:00:12:34:56", 20, I40E0, True)
        assert vf_driver(sim, I40E0, 0) == "vfio-pci"
        assert lease.vf_netdev is None
        host.release(lease.id, token=lease.token)
        assert vf_driver(sim, I40E0, 0) is None


def test_acquire_many_is_all_or_none(sim_root: Path) -> None:
    with vfpool.connect(sim=sim_root) as host:
        started(host)
        with pytest.raises(Exhausted):
            host.acquire_many("tenant-a", "vm1", 5)
        assert host.leases() == []
        many = host.acquire_many("tenant-a", "vm1", 3, numa_node=1)
        assert [(entry.pf_pci, entry.vf_index) for entry in many] == [
            (I40E0, 0), (I40E0, 1), (IXGBE0, 0)]
        assert {entry.numa_met for entry in many} == {False}
        assert len({entry.token for entry in many}) == 3
        for entry in many:
            host.release(entry)
        assert host.leases() == []


def test_errors_are_the_builtin_kinds(sim_root: Path) -> None:
    with vfpool.connect(sim=sim_root) as host:
        started(host)
        with pytest.raises(LookupError, match=r"^no pool named 'nope'$"):
            host.acquire("nope", "vm1")
        with pytest.raises(ValueError, match=r"^owner must not be empty$"):
            host.acquire("tenant-a", "")
        with pytest.raises(ValueError, match="is a multicast address"):
            host.acquire("tenant-a", "vm1", mac="01:00:5e:00:00:01")
        lease = host.acquire("tenant-a", "vm1")
        with pytest.raises(PermissionError, match=rf"^wrong token for lease {lease.id}$"):
            host.release(lease.id, token="guess")
        with pytest.raises(LookupError, match=r"^no lease 999$"):
            host.release(999, force=True)
        host.release(lease.id, force=True)
        assert host.leases() == []


def test_connect_with_an_explicit_db(tmp_path: Path, sim_root: Path,
                                     cli: Callable[..., CliResult]) -> None:
    url = f"sqlite:///{tmp_path}/api.db"
    with vfpool.connect(db=url, sim=sim_root) as host:
        started(host)
        lease = host.acquire("tenant-a", "vm1")
    assert (tmp_path / "api.db").is_file()
    assert not (sim_root / "vfpool.db").exists()
    listed = cli("--db", url, "--sim", str(sim_root), "lease", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [entry["id"] for entry in json.loads(listed.stdout)] == [lease.id]


def test_the_cli_and_the_api_share_the_same_leases(sim_root: Path, sim: SimHost,
                                                   cli: Callable[..., CliResult]) -> None:
    with vfpool.connect(sim=sim_root) as host:
        started(host)
        from_api = host.acquire("tenant-a", "vm-api")
    # The CLI sees the API's lease, and releases it with the API's token.
    listed = cli("--sim", str(sim_root), "lease", "list", "--json")
    assert [(entry["id"], entry["mac"]) for entry in json.loads(listed.stdout)] == [
        (from_api.id, from_api.mac)]
    wrong = cli("--sim", str(sim_root), "lease", "release", str(from_api.id), "--token", "x")
    assert (wrong.exit_code, wrong.stderr) == (6, f"error: wrong token for lease {from_api.id}\n")
    assert from_api.token is not None
    released = cli("--sim", str(sim_root), "lease", "release", str(from_api.id), "--token",
                   from_api.token)
    assert released.exit_code == 0, released.stderr
    assert sim.vf_configs("enp5s0f0")[0].mac == "00:00:00:00:00:00"
    # The API sees the CLI's lease, and releases it with the CLI's token.
    acquired = cli("--sim", str(sim_root), "lease", "acquire", "tenant-a", "--owner", "vm-cli",
                   "--json")
    assert acquired.exit_code == 0, acquired.stderr
    [record] = json.loads(acquired.stdout)
    with vfpool.connect(sim=sim_root) as host:
        [seen] = host.leases(owner="vm-cli")
        assert (seen.id, seen.mac, seen.vf_pci) == (record["id"], record["mac"],
                                                    record["vf"]["pci"])
        host.release(seen.id, token=record["token"])
        assert host.leases() == []


def test_an_api_lease_is_what_the_cli_prints_of_it(sim_root: Path,
                                                  cli: Callable[..., CliResult]) -> None:
    """Host.acquire and Host.leases map the service's result field by field; the lease is
    the same as one parsed from the CLI's JSON record of it (Lease.from_record)."""
    with vfpool.connect(sim=sim_root) as host:
        started(host)
        acquired = host.acquire("tenant-a", "vm-api", numa_node=0)
        [listed] = host.leases(owner="vm-api")
    [record] = json.loads(cli("--sim", str(sim_root), "lease", "list", "--json").stdout)
    assert listed == Lease.from_record(record)
    assert acquired == dataclasses.replace(listed, token=acquired.token, numa_met=True)
    assert acquired.token and listed.token is None
    assert acquired.created_at == record["created_at"] and acquired.pf_netdev == "enp5s0f0"


def test_the_report_as_data_and_as_text(sim_root: Path, cli: Callable[..., CliResult]) -> None:
    """``inventory()`` is the typed, frozen report; ``report()`` renders the same report as
    the CLI does; ``fleet_inventory()`` and ``report(fleet=True)`` are `report --fleet`."""
    now = datetime(2025, 1, 2, 14, 3, 7, tzinfo=UTC)
    with vfpool.connect(sim=sim_root) as host:
        started(host)
        lease = host.acquire("tenant-a", "vm1")
        found = host.inventory(now=now)
        assert isinstance(found, Report)
        with pytest.raises(dataclasses.FrozenInstanceError):
            found.pools = []  # type: ignore[misc]
        [pool] = found.pools
        assert (pool.name, pool.vfs, pool.leases) == (
            "tenant-a", host.pool("tenant-a").vfs.as_dict(), 1)
        assert [(vf.pf, vf.index, vf.owner) for vf in found.vfs] == [
            (IXGBE0, 0, "vm1"), (IXGBE0, 1, None), (I40E0, 0, None), (I40E0, 1, None)]
        assert found.vfs[0].lease_id == lease.id
        fleet = host.fleet_inventory(now=now)
        assert isinstance(fleet, FleetReport)
        assert [(part.name, part.report) for part in fleet.hosts] == [(sim_root.name, found)]
        shown = json.loads(cli("--sim", str(sim_root), "report", "--json").stdout)
        document = json.loads(host.report())
        assert [vf["owner"] for vf in document["vfs"]] == [vf["owner"] for vf in shown["vfs"]]
        assert document["pools"] == shown["pools"]
        fleet_document = json.loads(host.report(fleet=True))
        assert [part["name"] for part in fleet_document["hosts"]] == [sim_root.name]
        assert fleet_document["hosts"][0]["pools"] == shown["pools"]
        assert 'vfpool_leases{host="' in host.report(output_format="prometheus", fleet=True)


def test_pools_and_pfs_are_typed_frozen_and_document_as_the_cli_prints(
        sim_root: Path, cli: Callable[..., CliResult]) -> None:
    """``pool()``, ``pools()``, ``pf()`` and ``pfs()`` return frozen dataclasses with StrEnum
    states; each one's ``document()`` is exactly what the CLI prints with ``--json``."""
    sim = ("--sim", str(sim_root))
    with vfpool.connect(sim=sim_root) as host:
        defined = host.define_pool("tenant-a", ["enp5s0f0", "enp133s0f0#0-3"], 2, mode="netdev",
                                   vlan=10)
        assert (type(defined), defined.state, defined.vfs) == (
            PoolInfo, PoolState.INACTIVE, VfCounts())
        start = host.start_pool("tenant-a")
        assert isinstance(start, PoolStarted)
        assert (start.already_active, start.changed, start.lost) == (False, (IXGBE0, I40E0), ())
        assert host.start_pool("tenant-a").already_active is True
        pool = host.pool("tenant-a")
        assert (pool.state, pool.mode, pool.vfs, pool.defaults.vlan) == (
            PoolState.ACTIVE, Mode.NETDEV, VfCounts(total=4, free=4), 10)
        assert [(pf.pci, pf.range, pf.method, pf.numvfs) for pf in pool.pfs] == [
            (IXGBE0, None, Method.SYSFS, 2), (I40E0, "0-3", Method.SYSFS, 2)]
        with pytest.raises(dataclasses.FrozenInstanceError):
            pool.state = PoolState.INACTIVE  # type: ignore[misc]
        shown = json.loads(cli(*sim, "pool", "show", "tenant-a", "--json").stdout)
        assert json.loads(json.dumps(pool.document())) == shown
        assert list(pool.document()) == list(shown)  # the same keys in the same order
        listed = json.loads(cli(*sim, "pool", "list", "--json").stdout)
        assert [info.document() for info in host.pools()] == listed == [shown]
        pf = host.pf("enp5s0f0")
        assert isinstance(pf, PfDetail)
        assert (pf.pool, pf.numvfs, [vf.netdev for vf in pf.vfs]) == (
            "tenant-a", 2, ["enp5s0f0v0", "enp5s0f0v1"])
        assert pf.document() == json.loads(cli(*sim, "pf", "show", "enp5s0f0", "--json").stdout)
        rows = host.pfs()
        assert all(type(row) is PfInfo for row in rows)
        assert [row.document() for row in rows] == json.loads(
            cli(*sim, "pf", "list", "--json").stdout)
