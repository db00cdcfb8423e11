"""Reboot: boot 1 leaves two autostart pools and two live leases in the default store on the
state share (/var/lib/vfpool, persistent like /etc/modprobe.d); boot 2 finds the kernel as a
reboot leaves it, reconcile restores the stale leases, and `pool start --autostarted` brings
the pools back with the same VF addresses."""

from __future__ import annotations

import json

import pytest

import vfpool
from tests.realkernel.guest import realhost
from tests.realkernel.scenarios import PF0, PF1, World, prepare_reboot, reboot_facts
from vfpool.host.kernel import RealKernel

BEFORE = "reboot-before"


def before() -> dict[str, object]:
    path = realhost.RESULTS / "records" / f"{BEFORE}.json"
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


@pytest.mark.reboot_prep
@pytest.mark.usefixtures("baseline")
def test_boot_1_leaves_pools_and_leases_behind() -> None:
    store = realhost.Path("/var/lib/vfpool/vfpool.db")
    store.unlink(missing_ok=True)  # the default store of a root user
    with vfpool.connect() as host:
        state = prepare_reboot(World(RealKernel()), host)
        assert [lease.state for lease in host.leases()] == ["active", "active"]
    assert [realhost.numvfs(pf) for pf in realhost.PF_ADDRESSES] == [3, 2]
    realhost.record(BEFORE, state)
    (realhost.RESULTS / "reboot-ready").write_text("1\n")


@pytest.mark.boot2
def test_boot_2_kernel_is_as_a_reboot_leaves_it() -> None:
    facts = reboot_facts(World(RealKernel()), before())
    realhost.record("scenario-reboot", {"result": facts})
    # igb max_vfs=2 from the persistent modprobe.d sized both ports again at boot.
    assert facts["numvfs"] == [2, 2]
    assert facts["new boot id"] is True


@pytest.mark.boot2
def test_boot_2_reconcile_restores_the_stale_leases() -> None:
    state = before()
    with vfpool.connect() as host:
        report = host.reconcile()
        leases = {lease.id: lease for lease in host.leases(include_finished=True)}
    assert report.findings, "reconcile reported nothing"
    for lease in state["leases"]:  # type: ignore[attr-defined]
        assert leases[lease["id"]].state == "stale"
        pf = lease["pf"]
        original = state["originals"][pf][str(lease["index"])]  # type: ignore[index]
        assert realhost.vfinfo(pf)[lease["index"]]["mac"] == original["mac"]


@pytest.mark.boot2
def test_boot_2_autostart_brings_the_pools_back_at_the_same_addresses() -> None:
    state = before()
    with vfpool.connect() as host:
        from vfpool.service import pools

        started = pools.start_autostarted(host.context)
        assert {pool.name for pool in started} >= {"rb-mod", "rb-sys"}
        active = {pool.name: pool.state for pool in host.pools()}
    assert active == {"rb-mod": "active", "rb-sys": "active"}
    addresses = state["addresses"]  # type: ignore[index]
    assert realhost.virtfns(str(PF0)) == addresses[str(PF0)]
    assert realhost.virtfns(str(PF1)) == addresses[str(PF1)]
