"""`lease release` at service level (issue 4): the saved config and driver come back, the VF is
free, an events row is written, and a late release never touches a VF that a newer lease holds.

Default simulated host: 82599 (ixgbe, NUMA 0) at 0000:05:00.0 = enp5s0f0, X710 (i40e, NUMA 1)
at 0000:85:00.0 = enp133s0f0.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from sqlalchemy import select

from tests.leases.test_acquire import (
    I40E0,
    IXGBE0,
    host_vf,
    lease_rows,
    override,
    preconfigure,
    start_pool,
    vf_states,
    vfio_node,
)
from vfpool.errors import (
    Conflict,
    Exhausted,
    HostError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from vfpool.model.vfconfig import VfConfig
from vfpool.service import leases, pools, reconcile
from vfpool.service.context import Context
from vfpool.sim.host import SimHost
from vfpool.store import Event

ADMIN_CONFIG = VfConfig(mac="52:54:00:aa:bb:07", vlan=7, qos=1, spoofchk=False, trust=True)


def release_events(ctx: Context, lease_id: int) -> list[Event]:
    with ctx.store.session() as session:
        rows = list(session.scalars(select(Event).where(Event.lease_id == lease_id,
                                                        Event.action == "lease.release")))
        session.expunge_all()
        return rows


def host_view(sim: SimHost, pf_netdev: str, pf_pci: str, index: int) -> tuple[Any, ...]:
    """What the host shows of one VF: its config through the PF, driver, netdevs, override.
    A netdev's ifindex is left out: a release may probe the VF driver again (igb and ixgbe
    give the VF a MAC only then), which makes a new netdev."""
    vf = host_vf(sim, pf_pci, index)
    netdevs = tuple((n.name, n.mac, n.operstate, n.mtu) for n in vf.netdevs)
    return (sim.vf_configs(pf_netdev)[index], vf.driver, netdevs, override(sim, str(vf.pci)),
            vfio_node(sim, str(vf.pci)).exists())


# --------------------------------------------------------------------------- restore
@pytest.mark.parametrize(("mode", "pf_netdev", "pf_pci"), [
    ("netdev", "enp5s0f0", IXGBE0),
    ("macvtap", "enp133s0f0", I40E0),
    ("vfio", "enp5s0f0", IXGBE0),
    ("vfio", "enp133s0f0", I40E0),
])
def test_release_restores_the_saved_config_and_driver_and_frees_the_vf(
        ctx: Context, sim: SimHost, mode: str, pf_netdev: str, pf_pci: str) -> None:
    start_pool(ctx, "p", pf_netdev, vfs=2, mode=mode, vlan=10, qos=3, trust=False,
               spoofchk=True, max_tx_rate=500, mtu=9000)
    preconfigure(sim, pf_netdev, 0, ADMIN_CONFIG)
    before = host_view(sim, pf_netdev, pf_pci, 0)
    [record] = leases.acquire(ctx, "p", "vm1")
    assert host_view(sim, pf_netdev, pf_pci, 0) != before
    released = leases.release(ctx, record.id, token=record.token)
    after = host_view(sim, pf_netdev, pf_pci, 0)
    assert after == before
    assert after[0].as_dict() == {"mac": "52:54:00:aa:bb:07", "vlan": 7, "qos": 1,
                                  "spoofchk": False, "trust": True, "link_state": "auto",
                                  "min_tx_rate": 0, "max_tx_rate": 0}
    assert (released.id, released.state, released.token) == (record.id, "released", None)
    assert released.released_at is not None
    assert vf_states(ctx)[record.vf.pci] == ("free", None)
    assert pools.info(ctx, "p").vfs.free == 2
    [event] = release_events(ctx, record.id)
    assert (event.pool, event.pf, event.vf) == ("p", pf_pci, record.vf.pci)
    assert event.detail is not None and event.detail["owner"] == "vm1"
    assert leases.list_leases(ctx) == []


def test_release_of_a_vfio_lease_unbinds_vfio_pci(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "v", "enp133s0f0", vfs=1, mode="vfio")
    [record] = leases.acquire(ctx, "v", "vm1")
    node = vfio_node(sim, record.vf.pci)
    assert node.exists()
    leases.release(ctx, record.id, token=record.token)
    vf = host_vf(sim, I40E0, 0)
    assert (vf.driver, vf.netdevs, override(sim, str(vf.pci))) == (None, (), "(null)")
    assert not node.exists()


def test_a_released_vf_is_leased_again(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    [first] = leases.acquire(ctx, "net", "vm1")
    with pytest.raises(Exhausted):
        leases.acquire(ctx, "net", "vm2")
    leases.release(ctx, first.id, token=first.token)
    [second] = leases.acquire(ctx, "net", "vm2")
    assert second.vf == first.vf
    assert second.id != first.id


# --------------------------------------------------------------------------- the late release
def test_a_late_release_never_resets_the_vf_a_newer_lease_holds(ctx: Context,
                                                                sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1, vlan=10)
    [lease_a] = leases.acquire(ctx, "net", "vm-a")
    leases.release(ctx, lease_a.id, token=lease_a.token)
    [lease_b] = leases.acquire(ctx, "net", "vm-b", vlan=20, mac="52:54:00:00:00:0b")
    assert lease_b.vf.pci == lease_a.vf.pci
    held = host_view(sim, "enp5s0f0", IXGBE0, 0)
    for options in ({"token": lease_a.token}, {"force": True}):
        with pytest.raises(Conflict) as caught:
            leases.release(ctx, lease_a.id, **options)
        assert str(caught.value) == (f"lease {lease_a.id} is released, not active; nothing "
                                     "to release")
        assert caught.value.exit_code == 4
    assert host_view(sim, "enp5s0f0", IXGBE0, 0) == held
    assert held[0].mac == "52:54:00:00:00:0b" and held[0].vlan == 20
    assert [entry.id for entry in leases.list_leases(ctx)] == [lease_b.id]
    assert vf_states(ctx)[lease_b.vf.pci] == ("leased", None)
    assert len(release_events(ctx, lease_a.id)) == 1
    # B's own release still works and restores what was there before A.
    leases.release(ctx, lease_b.id, token=lease_b.token)
    assert sim.vf_configs("enp5s0f0")[0].mac == "00:00:00:00:00:00"


# --------------------------------------------------------------------------- refusals
def test_a_wrong_token_is_refused_with_exit_6_and_changes_nothing(ctx: Context,
                                                                  sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2)
    [mine, theirs] = leases.acquire(ctx, "net", "vm1", count=2)
    held = host_view(sim, "enp5s0f0", IXGBE0, 0)
    for token in ("not-the-token", theirs.token, ""):
        with pytest.raises(PermissionDenied) as caught:
            leases.release(ctx, mine.id, token=token)
        assert str(caught.value) == f"wrong token for lease {mine.id}"
        assert caught.value.exit_code == 6
    assert host_view(sim, "enp5s0f0", IXGBE0, 0) == held
    assert [entry.state for entry in leases.list_leases(ctx)] == ["active", "active"]


def test_release_without_token_or_force_is_invalid(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    [record] = leases.acquire(ctx, "net", "vm1")
    with pytest.raises(InvalidInput) as caught:
        leases.release(ctx, record.id)
    assert str(caught.value) == (f"releasing lease {record.id} needs its --token (or --force "
                                 "for administrators)")
    assert leases.list_leases(ctx)[0].state == "active"


def test_force_releases_without_the_token(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1, vlan=10)
    [record] = leases.acquire(ctx, "net", "vm1")
    leases.release(ctx, record.id, force=True)
    assert sim.vf_configs("enp5s0f0")[0].vlan == 0
    [event] = release_events(ctx, record.id)
    assert event.detail is not None and event.detail["reason"] == "forced"


def test_unknown_and_finished_leases(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=1)
    with pytest.raises(NotFound) as caught:
        leases.release(ctx, 99, token="x")
    assert (str(caught.value), caught.value.exit_code) == ("no lease 99", 3)
    [record] = leases.acquire(ctx, "net", "vm1")
    leases.release(ctx, record.id, token=record.token)
    with pytest.raises(Conflict):
        leases.release(ctx, record.id, token=record.token)
    assert len(release_events(ctx, record.id)) == 1


# --------------------------------------------------------------------------- --owner
def test_release_owner_releases_all_of_that_owners_leases_and_no_others(
        ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "a", "enp5s0f0", vfs=3, vlan=10)
    start_pool(ctx, "b", "enp133s0f0", vfs=2, vlan=11)
    mine = leases.acquire(ctx, "a", "vm1", count=2) + leases.acquire(ctx, "b", "vm1")
    [other] = leases.acquire(ctx, "a", "vm2")
    released = leases.release_owner(ctx, "vm1")
    assert sorted(entry.id for entry in released) == sorted(entry.id for entry in mine)
    assert {entry.state for entry in released} == {"released"}
    assert [entry.id for entry in leases.list_leases(ctx)] == [other.id]
    configs = sim.vf_configs("enp5s0f0")
    assert [configs[index].vlan for index in range(3)] == [0, 0, 10]
    assert sim.vf_configs("enp133s0f0")[0].vlan == 0
    with pytest.raises(NotFound) as caught:
        leases.release_owner(ctx, "vm1")
    assert str(caught.value) == "owner 'vm1' holds no leases"


def test_release_owner_validates_the_owner(ctx: Context) -> None:
    with pytest.raises(InvalidInput) as caught:
        leases.release_owner(ctx, "")
    assert str(caught.value) == "owner must not be empty"


# --------------------------------------------------------------------------- restore failures
def test_a_vf_whose_restore_fails_becomes_unusable_and_is_not_handed_out_again(
        ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2, vlan=10)
    [record] = leases.acquire(ctx, "net", "vm1")
    sim.inject_fault("netlink:enp5s0f0", kind="errno", errno_code=errno.EIO)
    with pytest.raises(HostError) as caught:
        leases.release(ctx, record.id, token=record.token)
    vf_pci = record.vf.pci
    reason = ("restore failed: setting mac on VF 0 of PF 0000:05:00.0 (enp5s0f0) failed with "
              "EIO (Input/output error)")
    assert str(caught.value) == (f"lease {record.id} is released, but VF {vf_pci} is now "
                                 f"unusable: {reason}")
    assert caught.value.exit_code == 1
    assert vf_states(ctx)[vf_pci] == ("unusable", reason)
    assert [row.state for row in lease_rows(ctx)] == ["released"]
    assert pools.info(ctx, "net").vfs.as_dict() == {
        "total": 2, "free": 1, "leased": 0, "reserved": 0, "unusable": 1}
    [event] = release_events(ctx, record.id)
    assert event.detail is not None
    assert (event.detail["vf_state"], event.detail["vf_reason"]) == ("unusable", reason)
    # Never handed out again: the next lease takes VF 1, then the pool is exhausted.
    [second] = leases.acquire(ctx, "net", "vm2")
    assert second.vf.index == 1
    with pytest.raises(Exhausted) as exhausted:
        leases.acquire(ctx, "net", "vm3")
    assert str(exhausted.value) == "pool 'net' has 0 free VF(s); 1 requested"


def test_release_owner_releases_the_others_when_one_restore_fails(ctx: Context,
                                                                  sim: SimHost) -> None:
    start_pool(ctx, "two", "enp5s0f0", "enp133s0f0", vfs=1, vlan=10)
    first, second = leases.acquire(ctx, "two", "vm1", count=2)
    sim.inject_fault("netlink:enp5s0f0", kind="errno", errno_code=errno.EIO)
    with pytest.raises(HostError):
        leases.release_owner(ctx, "vm1")
    # `--owner` releases *all* of the owner's leases: the failed restore of the first VF
    # must not leave the second one held (and configured) by the owner.
    assert vf_states(ctx)[first.vf.pci][0] == "unusable"
    assert leases.list_leases(ctx, owner="vm1") == []
    assert vf_states(ctx)[second.vf.pci] == ("free", None)
    assert sim.vf_configs("enp133s0f0")[0].vlan == 0


def test_reconcile_finds_nothing_after_normal_leases(ctx: Context) -> None:
    start_pool(ctx, "net", "enp5s0f0", vfs=2)
    records = leases.acquire(ctx, "net", "vm1", count=2)
    leases.release(ctx, records[0].id, token=records[0].token)
    assert reconcile.reconcile(ctx).document() == {"dry_run": False, "findings": []}
    assert [entry.id for entry in leases.list_leases(ctx)] == [records[1].id]
