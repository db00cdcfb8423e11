"""`pool start`'s inventory on a store two hosts share: the VF rows it writes in bulk (one
INSERT per PF, outside the ORM's flush) carry the host that wrote them, match the host's sysfs
VF for VF, and leave the other host's rows alone; rows a start finds are updated in place.

Both simulated hosts have the same PF and VF addresses, so a row written without its host, or
with the wrong one, collides with the other host's or shows up in its pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import vfpool
from vfpool.host.identity import write_identity
from vfpool.sim.host import SimHost
from vfpool.store import Host, Vf, open_store

PF = "enp5s0f0"
PF_PCI = "0000:05:00.0"
Row = tuple[str, int, str, str | None, str, str | None]


@pytest.fixture
def two_hosts(make_sim: Callable[..., SimHost], store_url: str
              ) -> Iterator[dict[str, vfpool.Host]]:
    """Hosts h1 and h2 (one X710 each, the same addresses) on one store; each has a pool
    `tenant` defined on enp5s0f0, netdev mode."""
    hosts = {}
    try:
        for name in ("h1", "h2"):
            sim = make_sim("intel-x710@0000:05:00.0")
            write_identity(sim.root, name)
            host = vfpool.connect(db=store_url, sim=sim.root)
            hosts[name] = host
            host.define_pool("tenant", [PF], 4, mode="netdev")
        yield hosts
    finally:
        for host in hosts.values():
            host.close()


def sysfs_vfs(root: Path, pf_pci: str) -> dict[int, tuple[str, str | None]]:
    """index -> (VF address, first netdev), read from the sim's tree with plain os calls."""
    device = root / "sys/bus/pci/devices" / pf_pci
    found = {}
    for entry in os.listdir(device):
        if entry.startswith("virtfn"):
            pci = os.path.basename(os.readlink(device / entry))
            net = root / "sys/bus/pci/devices" / pci / "net"
            netdevs = sorted(os.listdir(net)) if net.is_dir() else []
            found[int(entry[6:])] = (pci, netdevs[0] if netdevs else None)
    return found


def rows_by_host(store_url: str) -> dict[str, dict[int, tuple[int, Row]]]:
    """Every VF row of the store, by host name, then by index: (row id, the row)."""
    found: dict[str, dict[int, tuple[int, Row]]] = {}
    with open_store(store_url) as store, store.session() as session:
        for name, vf in session.execute(select(Host.name, Vf).join(Host, Host.id == Vf.host_id)):
            assert vf.updated_at is not None
            found.setdefault(name, {})[vf.vf_index] = (
                vf.id, (vf.pf_pci, vf.vf_index, vf.pci, vf.netdev, vf.state, vf.reason))
    return found


def expected(root: Path, indices: range) -> dict[int, Row]:
    on_host = sysfs_vfs(root, PF_PCI)
    return {index: (PF_PCI, index, on_host[index][0], on_host[index][1], "free", None)
            for index in indices}


def root_of(host: vfpool.Host) -> Path:
    return Path(host.context.sysfs.root)


def test_start_writes_each_hosts_vf_rows_with_its_host(two_hosts: dict[str, vfpool.Host],
                                                       store_url: str) -> None:
    first, second = two_hosts["h1"], two_hosts["h2"]
    first.start_pool("tenant")
    rows = rows_by_host(store_url)
    assert list(rows) == ["h1"]
    assert {index: row for index, (_, row) in rows["h1"].items()} == expected(
        root_of(first), range(4))
    assert all(row[3] for _, row in rows["h1"].values())  # netdev mode: every VF has one
    assert first.pool("tenant").vfs.free == 4

    second.start_pool("tenant")
    rows = rows_by_host(store_url)
    assert sorted(rows) == ["h1", "h2"]
    for name, host in two_hosts.items():
        assert {index: row for index, (_, row) in rows[name].items()} == expected(
            root_of(host), range(4))
        assert host.pool("tenant").vfs.total == 4


def test_a_start_after_a_reboot_updates_the_rows_a_resize_adds_the_new_ones(
        two_hosts: dict[str, vfpool.Host], store_url: str) -> None:
    first, second = two_hosts["h1"], two_hosts["h2"]
    first.start_pool("tenant")
    second.start_pool("tenant")
    before = rows_by_host(store_url)
    SimHost(root_of(first)).reboot()  # h1's VFs are gone; its active pool needs a start
    started = first.start_pool("tenant")
    assert not started.already_active
    after = rows_by_host(store_url)
    assert after == before  # the same rows, updated in place, and h2's untouched
    first.resize_pool("tenant", 6)
    resized = rows_by_host(store_url)
    assert {index: row for index, (_, row) in resized["h1"].items()} == expected(
        root_of(first), range(6))
    assert {index: resized["h1"][index][0] for index in range(4)} == {
        index: before["h1"][index][0] for index in range(4)}
    assert resized["h2"] == before["h2"]
    assert first.pool("tenant").vfs.free == 6
    assert second.pool("tenant").vfs.free == 4


def _set_rows(store_url: str, host: str, values: dict[int, dict[str, object]]) -> None:
    """Write VF rows of ``host`` by index, as a store from before a reboot (or a crash)
    might hold them."""
    with open_store(store_url) as store, store.session() as session:
        for vf in session.scalars(select(Vf).join(Host, Host.id == Vf.host_id)
                                  .where(Host.name == host)):
            for column, value in values.get(vf.vf_index, {}).items():
                setattr(vf, column, value)
        session.commit()


def test_a_start_brings_rows_with_stale_netdevs_up_to_the_host(
        two_hosts: dict[str, vfpool.Host], store_url: str) -> None:
    first, second = two_hosts["h1"], two_hosts["h2"]
    first.start_pool("tenant")
    second.start_pool("tenant")
    # The VFs had other names before the reboot (a new kernel's naming, say).
    _set_rows(store_url, "h1", {index: {"netdev": f"old{index}"} for index in range(4)})
    SimHost(root_of(first)).reboot()
    before = rows_by_host(store_url)
    assert {row[3] for _, row in before["h1"].values()} == {f"old{i}" for i in range(4)}
    first.start_pool("tenant")
    after = rows_by_host(store_url)
    assert {index: row for index, (_, row) in after["h1"].items()} == expected(
        root_of(first), range(4))
    assert {index: row_id for index, (row_id, _) in after["h1"].items()} == {
        index: row_id for index, (row_id, _) in before["h1"].items()}
    assert after["h2"] == before["h2"]


def test_a_start_drops_rows_beyond_the_pool_and_marks_a_leased_one_unusable(
        two_hosts: dict[str, vfpool.Host], store_url: str) -> None:
    """Rows past the pool's VFs (it shrank while inactive, its VF rows kept) are deleted at
    its next start, but a row still marked leased (a crash's leftover) stays, unusable."""
    first, second = two_hosts["h1"], two_hosts["h2"]
    first.start_pool("tenant")
    second.start_pool("tenant")
    first.destroy_pool("tenant", keep_vfs=True)
    first.resize_pool("tenant", 2)
    _set_rows(store_url, "h1", {3: {"state": "leased"}})
    before = rows_by_host(store_url)
    first.start_pool("tenant")
    after = rows_by_host(store_url)
    assert sorted(after["h1"]) == [0, 1, 3]
    pf, index, pci, netdev, _, _ = before["h1"][3][1]
    assert after["h1"][3] == (before["h1"][3][0],
                              (pf, index, pci, netdev, "unusable", "VF vanished while leased"))
    assert {index: row for index, (_, row) in after["h1"].items() if index < 2} == expected(
        root_of(first), range(2))
    assert after["h2"] == before["h2"]
    assert first.pool("tenant").vfs.total == 2
