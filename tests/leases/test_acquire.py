"""`lease acquire` at service level (issue 4): reserve → save → apply → bind → verify →
activate, on the simulator, with the host and the store checked after each acquire.

The default simulated host (tests/conftest.py) has a dual-port 82599 (ixgbe, NUMA 0) at
0000:05:00.0 and a dual-port X710 (i40e, NUMA 1) at 0000:85:00.0. Other cards come from
``make_sim``: an I350 (igb) and a ConnectX-3 (mlx4_core, module-param only).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, inspect, select
from sqlalchemy.engine import make_url

from vfpool.errors import Conflict, HostError, InvalidInput, NotFound, VerificationError
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.pool import VfDefaults
from vfpool.model.snapshot import VfSnapshot
from vfpool.model.vfconfig import VfConfig, generated_mac
from vfpool.service import events, leases, pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost
from vfpool.store import Event, Lease, Vf
from vfpool.store.states import LeaseState, VfState

IXGBE0 = "0000:05:00.0"  # enp5s0f0, NUMA 0
I40E0 = "0000:85:00.0"  # enp133s0f0, NUMA 1
IGB0 = "0000:03:00.0"  # enp3s0f0 on make_sim("intel-i350@0000:03:00.0")
MLX4 = "0000:04:00.0"  # enp4s0 (+ enp4s0d1) on make_sim("mellanox-cx3@0000:04:00.0")

# DESIGN.md, "JSON keys": a lease.
LEASE_KEYS = {"id", "pool", "owner", "token", "state", "mode", "mac", "vlan", "numa_node",
              "created_at", "pf", "vf"}
# The VF config a lease saves (issue 4, step 2).
SAVED_KEYS = {"mac", "vlan", "qos", "spoofchk", "trust", "link_state", "min_tx_rate",
              "max_tx_rate", "driver"}


def start_pool(ctx: Context, name: str, *pfs: str, vfs: int, method: str = "auto",
               mode: str = "netdev", allow_disruption: bool = False,
               **defaults: Any) -> None:
    pools.define(ctx, pools.parse_spec(name, list(pfs), vfs, method, mode,
                                       VfDefaults(**defaults)))
    pools.start(ctx, name, allow_disruption=allow_disruption)


def host_vf(sim: SimHost, pf_pci: str, index: int) -> VfSnapshot:
    vf = Sysfs(sim).virtfn(PciAddress.parse(pf_pci), index)
    assert vf is not None, f"VF {index} of {pf_pci} is not on the host"
    return vf


def vfio_node(sim: SimHost, vf_pci: str) -> Path:
    """/dev/vfio/<group> of a VF in the simulated host."""
    group = os.path.basename(os.readlink(sim.root / "sys/bus/pci/devices" / vf_pci /
                                         "iommu_group"))
    return sim.root / "dev/vfio" / group


def override(sim: SimHost, vf_pci: str) -> str:
    return (sim.root / "sys/bus/pci/devices" / vf_pci / "driver_override").read_text().strip()


def vf_states(ctx: Context) -> dict[str, tuple[str, str | None]]:
    with ctx.store.session() as session:
        return {row.pci: (row.state, row.reason) for row in session.scalars(select(Vf))}


def lease_rows(ctx: Context) -> list[Lease]:
    with ctx.store.session() as session:
        rows = list(session.scalars(select(Lease).order_by(Lease.id)))
        session.expunge_all()
        return rows


def lease_actions(ctx: Context) -> list[tuple[str, int | None]]:
    with ctx.store.session() as session:
        return [(event.action, event.lease_id) for event in
                session.scalars(select(Event).where(Event.action.like("lease.%"))
                                .order_by(Event.id))]


def store_rows(url: str) -> str:
    """Every row of every table of the store at ``url``, one repr per line."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            metadata = MetaData()
            metadata.reflect(connection)
            return "\n".join(repr(tuple(row)) for table in metadata.sorted_tables
                             for row in connection.execute(select(table)))
    finally:
        engine.dispose()


def preconfigure(sim: SimHost, pf_netdev: str, index: int, config: VfConfig) -> None:
    """Give a VF a config as an admin would with `ip link set PF vf N ...`, then reload its
    driver, as igb and ixgbe ask, so that the VF netdev shows the MAC."""
    for field in ("mac", "vlan", "spoofchk", "trust"):
        sim.set_vf(pf_netdev, index, field, config)
    sysfs = Sysfs(sim)
    pf = next(pf for pf in sysfs.pfs() if pf.netdev == pf_netdev)
    vf = next(vf for vf in sysfs.pf(pf.pci).vfs if vf.index == index)
    if vf.driver is not None:
        sim.write_attr(sim.root / "sys/bus/pci/drivers" / vf.driver / "unbind", str(vf.pci))
        sim.write_attr(sim.root / "sys/bus/pci/drivers_probe", str(vf.pci))


# --------------------------------------------------------------------------- the result
def test_acquire_prints_the_lease_keys_and_marks_the_vf_leased(ctx: Context,
                                                                sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2, vlan=10)
    [record] = leases.acquire(ctx, "net", "vm1")
    document = record.document()
    assert set(document) >= LEASE_KEYS
    assert set(document["pf"]) == {"pci", "netdev"}
    assert set(document["vf"]) == {"index", "pci", "netdev"}
    vf = host_vf(sim, IXGBE0, 0)
    assert {key: document[key] for key in LEASE_KEYS - {"id", "token", "mac", "created_at"}} == {
        "pool": "net", "owner": "vm1", "state": "active", "mode": "netdev", "vlan": 10,
        "numa_node": 0, "pf": {"pci": IXGBE0, "netdev": "enp5s0f0"},
        "vf": {"index": 0, "pci": str(vf.pci), "netdev": "enp5s0f0v0"}}
    assert isinstance(record.id, int)
    assert isinstance(record.token, str) and len(record.token) >= 16
    assert record.created_at.tzinfo is not None
    assert datetime.fromisoformat(document["created_at"]) == record.created_at
    assert record.mac == host_vf(sim, IXGBE0, 0).netdevs[0].mac
    assert vf_states(ctx)[str(vf.pci)] == ("leased", None)
    assert pools.info(ctx, "net").vfs.as_dict() == {
        "total": 2, "free": 1, "leased": 1, "reserved": 0, "unusable": 0}
    assert [row.state for row in lease_rows(ctx)] == ["active"]
    # Step 1 reserved it, step 6 made it active: both are in the audit log.
    assert lease_actions(ctx) == [("lease.reserve", record.id),
                                  ("lease.acquire", record.id)]


def test_an_acquire_after_the_pool_was_redefined_elsewhere_uses_its_new_pf(
        ctx: Context, sim_root: Path) -> None:
    """A context remembers the PFs it locked for a pool's last acquire and locks them again
    without a read; the reservation checks them under the lock. A pool redefined by another
    process on another PF meanwhile is read again, and the lease is on the new PF."""
    start_pool(ctx, "net", "enp5s0f0", vfs=2)
    [first] = leases.acquire(ctx, "net", "vm1")
    leases.release(ctx, first.id, token=first.token)
    assert ctx.pool_pfs["net"] == {IXGBE0}
    with open_context(sim=sim_root) as other:
        pools.destroy(other, "net")
        pools.undefine(other, "net")
        start_pool(other, "net", "enp133s0f0", vfs=2)
    [second] = leases.acquire(ctx, "net", "vm1")
    assert second.pf.document() == {"pci": "0000:85:00.0", "netdev": "enp133s0f0"}
    assert ctx.pool_pfs["net"] == {"0000:85:00.0"}
    # And an undefined pool is forgotten, not locked from memory.
    leases.release(ctx, second.id, token=second.token)
    with open_context(sim=sim_root) as other:
        pools.destroy(other, "net")
        pools.undefine(other, "net")
    with pytest.raises(NotFound):
        leases.acquire(ctx, "net", "vm1")
    assert "net" not in ctx.pool_pfs


def test_count_prints_one_lease_per_vf_each_with_its_own_token(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=3)
    records = leases.acquire(ctx, "net", "vm1", count=3)
    assert [record.vf.index for record in records] == [0, 1, 2]
    assert len({record.token for record in records}) == 3
    assert len({record.mac for record in records}) == 3
    assert {record.state for record in records} == {"active"}


def test_the_store_keeps_a_hash_of_the_token_never_the_token(ctx: Context,
                                                             sim_root: Path) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    [record] = leases.acquire(ctx, "net", "vm1")
    token = record.token
    [row] = lease_rows(ctx)
    assert row.token_hash and row.token_hash != token
    assert token not in row.token_hash
    columns = [getattr(row, attr.key) for attr in inspect(Lease).column_attrs]
    assert not any(token in str(value) for value in columns)
    ctx.close()
    # Every row of every table, read through the URL in use (either backend).
    rows = store_rows(ctx.db_url)
    assert row.token_hash in rows, "the dump does not show the lease"
    assert token not in rows
    url = make_url(ctx.db_url)
    if url.get_backend_name() == "sqlite":
        # And the bytes on disk, free pages and the write-ahead log included.
        assert url.database == str(sim_root / "vfpool.db")
        stored = b"".join(path.read_bytes() for path in sim_root.glob("vfpool.db*"))
        assert stored, "the store is not under the sim"
        assert token.encode() not in stored
    # Only acquire shows it.
    assert leases.show_lease(ctx, record.id).token is None
    assert [entry.token for entry in leases.list_leases(ctx)] == [None]


def test_saved_config_is_the_vf_config_and_driver_from_before_the_acquire(
        ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1, vlan=10, trust=False, spoofchk=True)
    preconfigure(sim, "enp5s0f0", 0, VfConfig(mac="52:54:00:aa:bb:01", vlan=7, qos=2,
                                               spoofchk=False, trust=True))
    before = sim.vf_configs("enp5s0f0")[0]
    [record] = leases.acquire(ctx, "net", "vm1")
    saved = leases.show_lease(ctx, record.id).saved_config
    assert set(saved) >= SAVED_KEYS
    assert {key: saved[key] for key in SAVED_KEYS} == {**before.as_dict(), "driver": "ixgbevf"}
    assert before.as_dict() == {"mac": "52:54:00:aa:bb:01", "vlan": 7, "qos": 2,
                                "spoofchk": False, "trust": True, "link_state": "auto",
                                "min_tx_rate": 0, "max_tx_rate": 0}


def test_pool_defaults_and_lease_overrides_are_applied_through_the_pf(
        ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2, vlan=10, qos=3, trust=True, spoofchk=False,
               max_tx_rate=1000, mtu=9000)
    [default] = leases.acquire(ctx, "net", "vm1")
    [override_] = leases.acquire(ctx, "net", "vm2", vlan=20, mac="52:54:00:00:00:20")
    configs = sim.vf_configs("enp5s0f0")
    assert configs[0] == VfConfig(mac=default.mac, vlan=10, qos=3, spoofchk=False,
                                  trust=True, link_state="auto", min_tx_rate=0,
                                  max_tx_rate=1000)
    assert configs[1] == VfConfig(mac="52:54:00:00:00:20", vlan=20, qos=3, spoofchk=False,
                                  trust=True, link_state="auto", min_tx_rate=0,
                                  max_tx_rate=1000)
    assert (default.vlan, override_.vlan) == (10, 20)
    for index, record in enumerate((default, override_)):
        [netdev] = host_vf(sim, IXGBE0, index).netdevs
        assert (netdev.name, netdev.mac, netdev.mtu) == (record.vf.netdev, record.mac,
                                                         9000)


# --------------------------------------------------------------------------- hand-off modes
@pytest.mark.parametrize(("mode", "pf_netdev", "pf_pci", "vf_driver"), [
    ("vfio", "enp5s0f0", IXGBE0, None),
    ("vfio", "enp133s0f0", I40E0, None),
    ("macvtap", "enp133s0f0", I40E0, "iavf"),
    ("macvtap", "enp5s0f0", IXGBE0, "ixgbevf"),
    ("netdev", "enp5s0f0", IXGBE0, "ixgbevf"),
    ("netdev", "enp133s0f0", I40E0, "iavf"),
])
def test_the_mode_decides_the_driver_and_release_puts_the_old_one_back(
        ctx: Context, sim: SimHost, mode: str, pf_netdev: str, pf_pci: str,
        vf_driver: str | None) -> None:
    start_pool(ctx, "p", pf_netdev, vfs=2, mode=mode)
    before = host_vf(sim, pf_pci, 0)
    # A vfio pool's VFs start unbound; the netdev modes probe them with the VF net driver.
    assert before.driver == vf_driver
    [record] = leases.acquire(ctx, "p", "vm1")
    vf = host_vf(sim, pf_pci, 0)
    node = vfio_node(sim, str(vf.pci))
    if mode == "vfio":
        assert (vf.driver, vf.netdevs) == ("vfio-pci", ())
        assert node.exists()
        assert record.vf.netdev is None
    else:
        assert vf.driver == vf_driver
        [netdev] = vf.netdevs
        assert (netdev.name, netdev.mac) == (f"{pf_netdev}v0", record.mac)
        assert record.vf.netdev == netdev.name
        assert not node.exists()
    leases.release(ctx, record.id, token=record.token)
    after = host_vf(sim, pf_pci, 0)
    assert after.driver == vf_driver
    assert not node.exists()
    assert [netdev.name for netdev in after.netdevs] == [n.name for n in before.netdevs]


# --------------------------------------------------------------------------- other cards
@pytest.mark.parametrize("mode", ["vfio", "netdev"])
def test_an_igb_pool_leases_and_releases(make_sim: Callable[..., SimHost], mode: str) -> None:
    sim = make_sim("intel-i350@0000:03:00.0")
    with open_context(sim=sim.root) as ctx:
        start_pool(ctx, "igb", "enp3s0f0", vfs=3, mode=mode, vlan=42, trust=True)
        before = sim.vf_configs("enp3s0f0")[0]
        [record] = leases.acquire(ctx, "igb", "vm1")
        vf = host_vf(sim, IGB0, 0)
        assert sim.vf_configs("enp3s0f0")[0] == VfConfig(
            mac=record.mac, vlan=42, qos=0, spoofchk=True, trust=True, link_state="auto",
            min_tx_rate=0, max_tx_rate=0)
        if mode == "vfio":
            assert (vf.driver, vf.netdevs) == ("vfio-pci", ())
            assert vfio_node(sim, str(vf.pci)).exists()
        else:
            assert vf.driver == "igbvf"
            assert [(n.name, n.mac) for n in vf.netdevs] == [("enp3s0f0v0", record.mac)]
        leases.release(ctx, record.id, token=record.token)
        assert sim.vf_configs("enp3s0f0")[0] == before
        assert host_vf(sim, IGB0, 0).driver == (None if mode == "vfio" else "igbvf")


@pytest.mark.parametrize("mode", ["vfio", "netdev"])
def test_an_mlx4_module_param_pool_leases_and_releases(make_sim: Callable[..., SimHost],
                                                       mode: str) -> None:
    sim = make_sim("mellanox-cx3@0000:04:00.0")
    with open_context(sim=sim.root) as ctx:
        start_pool(ctx, "cx3", "enp4s0", vfs=2, method="module-param", mode=mode, vlan=7,
                   allow_disruption=True)
        before = sim.vf_configs("enp4s0")[0]
        # ConnectX VFs come with a MAC of their own, which release must give back.
        assert before.mac != "00:00:00:00:00:00"
        assert host_vf(sim, MLX4, 0).driver == (None if mode == "vfio" else "mlx4_core")
        [record] = leases.acquire(ctx, "cx3", "vm1")
        vf = host_vf(sim, MLX4, 0)
        assert (sim.vf_configs("enp4s0")[0].mac, sim.vf_configs("enp4s0")[0].vlan) == (
            record.mac, 7)
        if mode == "vfio":
            assert (vf.driver, vf.netdevs) == ("vfio-pci", ())
            assert vfio_node(sim, str(vf.pci)).exists()
        else:
            assert vf.driver == "mlx4_core"
            assert [(n.name, n.mac) for n in vf.netdevs] == [("enp4s0v0", record.mac)]
        leases.release(ctx, record.id, token=record.token)
        assert sim.vf_configs("enp4s0")[0] == before
        after = host_vf(sim, MLX4, 0)
        assert after.driver == (None if mode == "vfio" else "mlx4_core")
        if mode == "netdev":
            assert [n.mac for n in after.netdevs] == [before.mac]


# --------------------------------------------------------------------------- MAC
def _is_local_unicast(mac: str) -> bool:
    first = int(mac.split(":")[0], 16)
    return bool(first & 0x02) and not first & 0x01


def test_a_reservation_closed_before_its_set_up_is_refused_by_name_and_changes_nothing(
        ctx: Context, sim: SimHost) -> None:
    # Reconcile or `watch` may close a reserved lease between the reservation and the step
    # that saves the VF's config: that step must refuse it, naming the state it found.
    start_pool(ctx, "net", "enp5s0f0", vfs=1, vlan=10)
    before = sim.vf_configs("enp5s0f0")[0]
    with ctx.locks.acquirer() as acquirer:
        [item], _ = leases._reserve(ctx, "net", "vm1", 1, None, None, None, False, None,
                                    acquirer, frozenset({IXGBE0}))

        def lose(session: Any) -> None:
            lease = session.get(Lease, item.lease_id)
            leases.finish_lease(session, lease, VfState.UNUSABLE, "missing on host", "lease.lost",
                                "test", final_state=LeaseState.LOST)

        ctx.store.write(lose, operation="test")
        with pytest.raises(Conflict) as refused:
            leases._activate(ctx, item, "net", None)
    assert str(refused.value) == (f"lease {item.lease_id} was cancelled while it was being "
                                  "set up (now lost)")
    [row] = lease_rows(ctx)
    assert (row.state, row.saved_config) == ("lost", None)
    assert sim.vf_configs("enp5s0f0")[0] == before  # the VF was never touched


def test_a_lease_finished_inside_an_orm_write_is_what_the_session_reads_after(
        ctx: Context) -> None:
    """Reconcile and watch close leases inside their ORM transactions with the lease path's
    own statements: the session then reads the lease and its VF as those wrote them, and the
    events keep the order they were made in."""
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    [record] = leases.acquire(ctx, "net", "vm1")

    def lose(session: Any) -> tuple[Any, ...]:
        lease = session.get(Lease, record.id)
        vf = lease.vf
        events.record(session, "test.before", lease_id=lease.id)
        leases.finish_lease(session, lease, VfState.UNUSABLE, "missing on host", "lease.lost",
                            "test", final_state=LeaseState.LOST)
        events.record(session, "test.after", lease_id=lease.id)
        return (lease.state, lease.acquirer, lease.released_at is not None, vf.state,
                vf.reason)

    seen = ctx.store.write(lose, operation="test")
    assert seen == (LeaseState.LOST, None, True, VfState.UNUSABLE, "missing on host")
    logged = ctx.store.read(lambda session: [
        (event.action, (event.detail or {}).get("reason")) for event in session.scalars(
            select(Event).where(Event.lease_id == record.id).order_by(Event.id))])
    assert logged[-3:] == [("test.before", None), ("lease.lost", "test"),
                           ("test.after", None)]
    [row] = lease_rows(ctx)
    assert row.state == "lost"
    assert ctx.store.read(lambda session: session.scalars(
        select(Vf.state).where(Vf.pci == record.vf.pci)).one()) == "unusable"


def test_given_mac_is_normalised_and_applied(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    [record] = leases.acquire(ctx, "net", "vm1", mac="52-54-00-AB-CD-EF")
    assert record.mac == "52:54:00:ab:cd:ef"
    assert sim.vf_configs("enp5s0f0")[0].mac == "52:54:00:ab:cd:ef"
    assert host_vf(sim, IXGBE0, 0).netdevs[0].mac == "52:54:00:ab:cd:ef"


def test_generated_mac_is_locally_administered_and_stable_for_pool_owner_and_index(
        ctx: Context) -> None:
    start_pool(ctx, "a", "enp5s0f0", vfs=2)
    start_pool(ctx, "b", "enp133s0f0", vfs=2)

    def lease_and_release(pool: str, owner: str) -> tuple[int, str]:
        [record] = leases.acquire(ctx, pool, owner)
        leases.release(ctx, record.id, token=record.token)
        return record.vf.index, record.mac

    first = lease_and_release("a", "vm1")
    again = lease_and_release("a", "vm1")
    other_owner = lease_and_release("a", "vm2")
    other_pool = lease_and_release("b", "vm1")
    assert first[0] == again[0] == other_owner[0] == other_pool[0] == 0
    assert again[1] == first[1]
    assert other_owner[1] != first[1]
    assert other_pool[1] != first[1]
    [held] = leases.acquire(ctx, "a", "vm1")  # index 0 again
    [second] = leases.acquire(ctx, "a", "vm1")  # index 1: another MAC
    assert (held.mac, second.vf.index) == (first[1], 1)
    assert second.mac != first[1]
    for mac in (first[1], other_owner[1], other_pool[1], second.mac):
        assert _is_local_unicast(mac), mac


def test_a_generated_mac_that_a_live_lease_holds_is_passed_over_for_the_next_attempt(
        ctx: Context, sim: SimHost) -> None:
    # The first attempt is checked with the other VFs' in one statement, the later ones one
    # by one: hold both of VF 0's first two MACs with leases of another pool.
    start_pool(ctx, "a", "enp5s0f0", vfs=2)
    start_pool(ctx, "b", "enp133s0f0", vfs=2)
    first, second, third = (generated_mac("a", "vm1", 0, attempt) for attempt in range(3))
    for mac in (first, second):
        leases.acquire(ctx, "b", "squatter", mac=mac)
    got = leases.acquire(ctx, "a", "vm1", count=2)
    assert [(record.vf.index, record.mac) for record in got] == [
        (0, third), (1, generated_mac("a", "vm1", 1))]
    assert sim.vf_configs("enp5s0f0")[0].mac == third


def test_a_mac_held_by_another_lease_is_refused_until_that_lease_ends(ctx: Context,
                                                                    sim: SimHost) -> None:
    start_pool(ctx, "a", "enp5s0f0", vfs=2)
    start_pool(ctx, "b", "enp133s0f0", vfs=2)
    [first] = leases.acquire(ctx, "a", "vm1", mac="52:54:00:00:00:01")
    before = sim.vf_configs("enp133s0f0")
    for pool in ("a", "b"):  # in any pool, in any spelling
        with pytest.raises(Conflict) as caught:
            leases.acquire(ctx, pool, "vm2", mac="52:54:00:00:00:01".upper())
        assert str(caught.value) == (f"MAC 52:54:00:00:00:01 is already used by lease "
                                     f"{first.id} of 'vm1'")
        assert caught.value.exit_code == 4
    assert sim.vf_configs("enp133s0f0") == before
    assert [row.state for row in lease_rows(ctx)] == ["active"]
    leases.release(ctx, first.id, token=first.token)
    [reused] = leases.acquire(ctx, "b", "vm2", mac="52:54:00:00:00:01")
    assert reused.mac == "52:54:00:00:00:01"


# --------------------------------------------------------------------------- invalid input
@pytest.mark.parametrize(("options", "message"), [
    ({"owner": ""}, "owner must not be empty"),
    ({"owner": "v" * 129}, "owner is 129 characters long; at most 128 are allowed"),
    ({"owner": "vm\x1b[31m"}, "owner 'vm\\x1b[31m' contains characters that are not printable"),
    ({"mac": "01:00:5e:00:00:01"},
     "MAC 01:00:5e:00:00:01 is a multicast address; give a unicast address"),
    ({"mac": "33:33:00:00:00:01"},
     "MAC 33:33:00:00:00:01 is a multicast address; give a unicast address"),
    ({"mac": "FF:FF:FF:FF:FF:FF"},
     "MAC ff:ff:ff:ff:ff:ff is the broadcast address; give a unicast address"),
    ({"mac": "00:00:00:00:00:00"}, "MAC 00:00:00:00:00:00 is all-zero; give a unicast address"),
    ({"mac": "52:54:00:12:34"}, "invalid MAC address '52:54:00:12:34': expected six hex bytes "
                                "such as 52:54:00:12:34:56"),
    ({"vlan": 0}, "VLAN 0 is outside 1-4094"),
    ({"vlan": 4095}, "VLAN 4095 is outside 1-4094"),
    ({"count": 0}, "--count must be 1-4096, not 0"),
    ({"count": -2}, "--count must be 1-4096, not -2"),
    ({"numa_node": -1}, "NUMA node -1 is outside 0-1023"),
])
def test_invalid_input_is_refused_before_anything_is_reserved(
        ctx: Context, sim: SimHost, options: dict[str, Any], message: str) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2)
    before = sim.vf_configs("enp5s0f0")
    arguments: dict[str, Any] = {"owner": "vm1", **options}
    owner = arguments.pop("owner")
    with pytest.raises(InvalidInput) as caught:
        leases.acquire(ctx, "net", owner, **arguments)
    assert str(caught.value) == message
    assert caught.value.exit_code == 2
    assert lease_rows(ctx) == []
    assert sim.vf_configs("enp5s0f0") == before


def test_owner_of_exactly_128_printable_characters_is_accepted(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    owner = "ü" * 64 + "0123456789abcdef" * 4
    assert len(owner) == 128
    [record] = leases.acquire(ctx, "net", owner)
    assert record.owner == owner


# --------------------------------------------------------------------------- failures undo
def without_ifindex(vf: VfSnapshot) -> tuple[tuple[str, str | None, str, int | None], ...]:
    return tuple((n.name, n.mac, n.operstate, n.mtu) for n in vf.netdevs)


def _assert_untouched(ctx: Context, sim: SimHost, pf_netdev: str, pf_pci: str,
                      before_configs: dict[int, VfConfig], before_vf: VfSnapshot) -> None:
    """The failed acquire left the host and the VF as they were, and the VF is free."""
    assert sim.vf_configs(pf_netdev) == before_configs
    after = host_vf(sim, pf_pci, before_vf.index)
    # The undo may probe the VF driver again (igb/ixgbe hand it the MAC only then), which
    # makes a new netdev: everything but its ifindex is as before.
    assert (after.driver, without_ifindex(after)) == (before_vf.driver,
                                                      without_ifindex(before_vf))
    assert override(sim, str(after.pci)) == "(null)"
    assert not vfio_node(sim, str(after.pci)).exists()
    assert vf_states(ctx)[str(after.pci)] == ("free", None)
    assert [row.state for row in lease_rows(ctx)] == ["released"]
    assert sim.state()["faults"] == []


@pytest.mark.parametrize("mode", ["netdev", "vfio"])
def test_a_netlink_error_undoes_the_acquire_and_keeps_the_saved_config(
        ctx: Context, sim: SimHost, mode: str) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1, mode=mode, vlan=10, trust=True)
    preconfigure(sim, "enp5s0f0", 0, VfConfig(mac="52:54:00:aa:bb:02", vlan=3, qos=0,
                                               spoofchk=True, trust=False))
    before, before_vf = sim.vf_configs("enp5s0f0"), host_vf(sim, IXGBE0, 0)
    sim.inject_fault("netlink:enp5s0f0", kind="errno", errno_code=errno.EIO)
    with pytest.raises(HostError) as caught:
        leases.acquire(ctx, "net", "vm1")
    assert str(caught.value) == ("setting mac on VF 0 of PF 0000:05:00.0 (enp5s0f0) failed "
                                 "with EIO (Input/output error)")
    assert (caught.value.errno, caught.value.exit_code) == (errno.EIO, 1)
    _assert_untouched(ctx, sim, "enp5s0f0", IXGBE0, before, before_vf)
    # Step 2 ran before step 3: the lease row holds what was there.
    [row] = lease_rows(ctx)
    assert row.saved_config is not None
    assert VfConfig.from_dict(row.saved_config) == before[0]
    assert lease_actions(ctx) == [("lease.reserve", row.id), ("lease.acquire.failed", row.id)]
    # The VF is free again and the next acquire gets it.
    [record] = leases.acquire(ctx, "net", "vm1")
    assert record.vf.index == 0


@pytest.mark.parametrize(("nic", "pf_netdev", "pf_pci", "driver"), [
    (None, "enp5s0f0", IXGBE0, "ixgbe"),
    (None, "enp133s0f0", I40E0, "i40e"),
    ("intel-i350@0000:03:00.0", "enp3s0f0", IGB0, "igb"),
])
def test_eopnotsupp_undoes_the_acquire_and_names_the_driver(
        sim_root: Path, make_sim: Callable[..., SimHost], nic: str | None, pf_netdev: str,
        pf_pci: str, driver: str) -> None:
    sim = make_sim(nic) if nic else SimHost(sim_root)
    with open_context(sim=sim.root) as ctx:
        start_pool(ctx, "p", pf_netdev, vfs=2, vlan=10)
        before, before_vf = sim.vf_configs(pf_netdev), host_vf(sim, pf_pci, 0)
        sim.inject_fault(f"netlink:{pf_netdev}", kind="errno", errno_code=errno.EOPNOTSUPP)
        with pytest.raises(HostError) as caught:
            leases.acquire(ctx, "p", "vm1")
        assert str(caught.value) == (f"driver {driver} cannot set mac on VF 0 of PF {pf_pci} "
                                     f"({pf_netdev}) (EOPNOTSUPP)")
        assert caught.value.errno == errno.EOPNOTSUPP
        _assert_untouched(ctx, sim, pf_netdev, pf_pci, before, before_vf)


def test_a_pool_default_the_driver_lacks_is_refused_at_define(ctx: Context) -> None:
    # So a lease can never meet it: X710 (i40e) has no min_tx_rate.
    with pytest.raises(InvalidInput) as caught:
        pools.define(ctx, pools.parse_spec("r", ["enp133s0f0"], 2, "auto", "netdev",
                                           VfDefaults(min_tx_rate=100)))
    assert str(caught.value) == ("driver i40e cannot set min_tx_rate on its VFs (PF "
                                 "0000:85:00.0 (enp133s0f0))")


def test_a_change_the_driver_ignores_fails_verification_and_is_undone(
        ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1, vlan=10, trust=True, spoofchk=False)
    before, before_vf = sim.vf_configs("enp5s0f0"), host_vf(sim, IXGBE0, 0)
    # The PF reports success for the MAC and keeps the old one; VLAN, trust, spoofchk apply.
    sim.inject_fault("netlink:enp5s0f0", kind="ignore")
    with pytest.raises(VerificationError) as caught:
        leases.acquire(ctx, "net", "vm1")
    [row] = lease_rows(ctx)
    assert caught.value.diff == {"mac": (row.mac, "00:00:00:00:00:00")}
    _assert_untouched(ctx, sim, "enp5s0f0", IXGBE0, before, before_vf)


def test_a_bind_failure_undoes_the_applied_config(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "v", "enp133s0f0", vfs=1, mode="vfio", vlan=10, trust=True)
    before, before_vf = sim.vf_configs("enp133s0f0"), host_vf(sim, I40E0, 0)
    sim.inject_fault("sys/bus/pci/drivers_probe", kind="errno", errno_code=errno.EIO)
    with pytest.raises(HostError) as caught:
        leases.acquire(ctx, "v", "vm1")
    assert str(caught.value) == (f"probing VF {before_vf.pci} for vfio-pci failed with EIO "
                                 "(Input/output error)")
    _assert_untouched(ctx, sim, "enp133s0f0", I40E0, before, before_vf)


def test_an_mtu_failure_after_bind_undoes_the_config(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1, vlan=10, trust=True, mtu=9000)
    before, before_vf = sim.vf_configs("enp5s0f0"), host_vf(sim, IXGBE0, 0)
    sim.inject_fault("netlink:enp5s0f0v0", kind="errno", errno_code=errno.EIO)
    with pytest.raises(HostError) as caught:
        leases.acquire(ctx, "net", "vm1")
    assert str(caught.value) == "setting MTU 9000 on enp5s0f0v0 failed with EIO " \
                                "(Input/output error)"
    _assert_untouched(ctx, sim, "enp5s0f0", IXGBE0, before, before_vf)
    assert host_vf(sim, IXGBE0, 0).netdevs[0].mtu == 1500


def test_count_is_all_or_none_when_a_later_vf_fails(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=1, vlan=10, trust=True)
    before = {pf: sim.vf_configs(pf) for pf in ("enp5s0f0", "enp133s0f0")}
    drivers = {pci: host_vf(sim, pci, 0).driver for pci in (IXGBE0, I40E0)}
    # The first VF (82599) is set up; the second (X710) fails.
    sim.inject_fault("netlink:enp133s0f0", kind="errno", errno_code=errno.EIO)
    with pytest.raises(HostError):
        leases.acquire(ctx, "two", "vm1", count=2)
    assert {pf: sim.vf_configs(pf) for pf in before} == before
    assert {pci: host_vf(sim, pci, 0).driver for pci in drivers} == drivers
    assert {state for state, _ in vf_states(ctx).values()} == {"free"}
    assert [row.state for row in lease_rows(ctx)] == ["released", "released"]
    assert leases.list_leases(ctx) == []
    assert pools.info(ctx, "two").vfs.free == 2


@pytest.mark.parametrize(("pf_netdev", "pf_pci", "reprobed"),
                         [("enp5s0f0", IXGBE0, True), ("enp133s0f0", I40E0, False)])
def test_a_netdev_lease_vf_carries_the_lease_mac_reprobed_only_where_the_driver_needs_it(
        ctx: Context, sim: SimHost, pf_netdev: str, pf_pci: str, reprobed: bool) -> None:
    # ixgbe and igb give a bound VF the MAC set through the PF only when the VF driver
    # probes again (a new netdev, so a new ifindex); i40e resets the VF by itself.
    start_pool(ctx, "p", pf_netdev, vfs=1, mode="netdev")
    before = host_vf(sim, pf_pci, 0).netdevs[0]
    [record] = leases.acquire(ctx, "p", "vm1", mac="52:54:00:00:00:42")
    [after] = host_vf(sim, pf_pci, 0).netdevs
    assert after.mac == record.mac == "52:54:00:00:00:42"
    assert (after.ifindex != before.ifindex) is reprobed
    assert record.vf.netdev == after.name
