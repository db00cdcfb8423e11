"""reconcile: the store against the host after reboots, crashes and changes behind vfpool's back.

Every scenario ends with a second run that finds nothing (reconcile is idempotent).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from vfpool.host import binding
from vfpool.model.pci import PciAddress
from vfpool.model.vfconfig import VfConfig
from vfpool.service import leases, pools
from vfpool.service.context import Context
from vfpool.service.reconcile import reconcile
from vfpool.sim.host import SimHost
from vfpool.store import Event, Lease, Vf

VFPOOL = Path(sys.executable).parent / "vfpool"
PF = "0000:85:00.0"


@pytest.fixture
def pool_p(ctx: Context) -> None:
    """Pool p (netdev, enp133s0f0, 3 VFs, VLAN 10) started on ctx's host."""
    pools.define(ctx, pools.parse_spec("p", ["enp133s0f0"], 3, "auto", "netdev",
                                       pools.VfDefaults(vlan=10)))
    pools.start(ctx, "p")


def _vf_states(ctx: Context) -> dict[int, tuple[str, str | None]]:
    with ctx.store.session() as session:
        return {row.vf_index: (row.state, row.reason)
                for row in session.scalars(select(Vf).where(Vf.pf_pci == PF))}


def _lease_state(ctx: Context, lease_id: int) -> str:
    with ctx.store.session() as session:
        return session.get_one(Lease, lease_id).state


def _assert_settled(ctx: Context) -> None:
    assert reconcile(ctx).document()["findings"] == []


@pytest.mark.usefixtures("pool_p")
def test_nothing_to_do_on_a_consistent_host(ctx: Context) -> None:
    leases.acquire(ctx, "p", "vm1")
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_after_a_reboot_start_then_reconcile_frees_stale_leases(sim: SimHost,
                                                               ctx: Context) -> None:
    lease = leases.acquire(ctx, "p", "vm1")[0]
    sim.reboot()
    pools.start(ctx, "p")  # what vfpool-autostart.service runs first
    report = reconcile(ctx).document()
    assert [(f["lease"], f["problem"]) for f in report["findings"]] == [
        (lease.id, "it was made before the last reboot")]
    assert _lease_state(ctx, lease.id) == "stale"
    assert _vf_states(ctx) == {0: ("free", None), 1: ("free", None), 2: ("free", None)}
    config = sim.vf_configs("enp133s0f0")[0]
    assert (config.vlan, config.mac) == (0, "00:00:00:00:00:00")  # the saved config is back
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_reconcile_before_start_after_a_reboot_loses_the_leases_then_start_recovers(
        sim: SimHost, ctx: Context) -> None:
    lease = leases.acquire(ctx, "p", "vm1")[0]
    sim.reboot()
    report = reconcile(ctx).document()
    problems = sorted(f["problem"] for f in report["findings"])
    assert problems.count("VF is in the store but not on the host") == 3
    assert "PF has 0 VFs; the pool needs 3" in problems
    assert _lease_state(ctx, lease.id) == "lost"
    assert set(_vf_states(ctx).values()) == {("unusable", "missing on host")}
    pools.start(ctx, "p")
    assert set(_vf_states(ctx).values()) == {("free", None)}
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_a_vf_removed_behind_vfpools_back(sim: SimHost, ctx: Context) -> None:
    lease = leases.acquire(ctx, "p", "vm1")[0]
    pf = sim.root / "sys/bus/pci/devices" / PF / "sriov_numvfs"
    sim.write_attr(pf, "0")
    sim.write_attr(pf, "2")  # VF 2 is gone; 0 and 1 are back, fresh
    dry = reconcile(ctx, dry_run=True).document()
    assert {f.get("vf") for f in dry["findings"]} >= {"0000:85:02.2"}
    assert _vf_states(ctx)[2] == ("free", None)  # the dry run changed nothing
    reconcile(ctx)
    assert _vf_states(ctx)[2] == ("unusable", "missing on host")
    assert _lease_state(ctx, lease.id) == "active"  # VF 0 came back; its lease stays
    # The count is reported, not repaired, until `pool start` resizes the PF.
    assert [f["problem"] for f in reconcile(ctx).document()["findings"]] == [
        "PF has 2 VFs; the pool needs 3"]
    leases.release(ctx, lease.id, force=True)
    pools.start(ctx, "p")
    assert set(_vf_states(ctx).values()) == {("free", None)}
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_a_vf_on_the_host_but_not_in_the_store_is_added(ctx: Context) -> None:
    with ctx.store.session() as session:
        session.execute(delete(Vf).where(Vf.pf_pci == PF, Vf.vf_index == 1))
    report = reconcile(ctx).document()
    assert [(f["vf"], f["problem"]) for f in report["findings"]] == [
        ("0000:85:02.1", "VF is on the host but not in the store")]
    assert _vf_states(ctx)[1] == ("free", None)
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_a_lease_whose_owner_process_is_gone_is_stale(sim: SimHost, ctx: Context) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    lease = leases.acquire(ctx, "p", "vm1", owner_pid=child.pid)[0]
    report = reconcile(ctx).document()
    assert [(f["lease"], f["problem"]) for f in report["findings"]] == [
        (lease.id, f"its owner process {child.pid} is gone")]
    assert _lease_state(ctx, lease.id) == "stale"
    assert sim.vf_configs("enp133s0f0")[0].vlan == 0
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_a_lease_whose_owner_lives_is_left_alone(ctx: Context) -> None:
    leases.acquire(ctx, "p", "vm1", owner_pid=os.getpid())
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_sigkill_during_release_is_finished_by_reconcile(sim_root: Path, sim: SimHost,
                                                         ctx: Context) -> None:
    lease = leases.acquire(ctx, "p", "vm1")[0]
    sim.inject_fault("netlink:enp133s0f0", kind="hang")
    releaser = subprocess.Popen([str(VFPOOL), "--sim", str(sim_root), "lease", "release",
                                 str(lease.id), "--token", lease.token],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # until the releaser has named its lock in the lease (it then hangs)
            with ctx.store.session() as session:
                if session.get_one(Lease, lease.id).acquirer is not None:
                    break
            assert time.monotonic() < deadline, "the release never started"
            time.sleep(0.05)
        time.sleep(0.3)
        releaser.kill()
        releaser.wait(30)
    finally:
        if releaser.poll() is None:
            releaser.kill()
            releaser.wait(30)
        sim.clear_faults()
    assert _lease_state(ctx, lease.id) == "active"
    report = reconcile(ctx).document()
    assert [(f["lease"], f["problem"]) for f in report["findings"]] == [
        (lease.id, "its release was interrupted")]
    assert _lease_state(ctx, lease.id) == "released"
    assert sim.vf_configs("enp133s0f0")[0].vlan == 0
    assert _vf_states(ctx)[0] == ("free", None)
    _assert_settled(ctx)


@pytest.mark.usefixtures("pool_p")
def test_cli_reconcile_json_and_text(sim_root: Path, sim: SimHost, ctx: Context) -> None:
    leases.acquire(ctx, "p", "vm1")
    sim.reboot()
    pools.start(ctx, "p")
    dry = subprocess.run([str(VFPOOL), "--sim", str(sim_root), "reconcile", "--dry-run"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert dry.stdout.startswith("lease 1 (0000:85:02.0): it was made before the last reboot; "
                                 "would restore the VF's saved config and driver, free it")
    done = subprocess.run([str(VFPOOL), "--sim", str(sim_root), "reconcile", "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout)["findings"][0]["result"] == "free"
    again = subprocess.run([str(VFPOOL), "--sim", str(sim_root), "reconcile"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert again.stdout == "nothing to repair\n"
    assert PciAddress.parse("0000:85:02.0")


# --------------------------------------------------------------------------- drift

def _events(ctx: Context, action: str) -> list[Any]:
    with ctx.store.session() as session:
        return [event.detail for event in session.scalars(
            select(Event).where(Event.action == action).order_by(Event.id))]


@pytest.mark.usefixtures("pool_p")
def test_a_vlan_changed_behind_vfpools_back_is_put_back(sim: SimHost, ctx: Context) -> None:
    lease = leases.acquire(ctx, "p", "vm1")[0]
    index = lease.vf.index
    sim.set_vf("enp133s0f0", index, "vlan", VfConfig(vlan=99, qos=0))
    dry = reconcile(ctx, dry_run=True).document()
    assert dry["findings"] == [{
        "lease": lease.id, "vf": lease.vf.pci, "owner": "vm1",
        "problem": "its VF no longer has the lease's config (vlan: desired 10, current 99)",
        "action": "re-apply the lease's config",
        "diff": {"vlan": {"desired": 10, "current": 99}}}]
    assert sim.vf_configs("enp133s0f0")[index].vlan == 99  # a dry run changes nothing
    report = reconcile(ctx).document()
    assert [(f["lease"], f["result"]) for f in report["findings"]] == [(lease.id, "re-applied")]
    assert sim.vf_configs("enp133s0f0")[index].vlan == 10
    assert _lease_state(ctx, lease.id) == "active"
    assert _events(ctx, "reconcile.lease.reapplied")[-1]["diff"] == {"vlan": ["10", "99"]}
    _assert_settled(ctx)


def test_mac_trust_and_driver_drift_of_a_vfio_lease(sim: SimHost, ctx: Context) -> None:
    context = ctx  # no pool p here: pool v is the only one reconcile sees
    pools.define(context, pools.parse_spec("v", ["enp5s0f0"], 2, "auto", "vfio",
                                           pools.VfDefaults(trust=True)))
    pools.start(context, "v")
    lease = leases.acquire(context, "v", "vm1")[0]
    vf = PciAddress.parse(lease.vf.pci)
    sim.set_vf("enp5s0f0", 0, "mac", VfConfig(mac="02:00:00:00:00:99"))
    sim.set_vf("enp5s0f0", 0, "trust", VfConfig(trust=False))
    binding.bind(context.sysfs, vf, None)  # an administrator unbinds it from vfio-pci
    report = reconcile(context, dry_run=True).document()
    assert set(report["findings"][0]["diff"]) == {"mac", "trust", "driver"}
    assert reconcile(context).document()["findings"][0]["result"] == "re-applied"
    config = sim.vf_configs("enp5s0f0")[0]
    assert (config.mac, config.trust) == (lease.mac, True)
    assert context.sysfs.pci_function(vf).driver == "vfio-pci"
    assert reconcile(context).document()["findings"] == []


@pytest.mark.usefixtures("pool_p")
def test_a_lease_whose_config_cannot_be_put_back_is_lost(sim: SimHost, ctx: Context) -> None:
    lease = leases.acquire(ctx, "p", "vm1")[0]
    sim.set_vf("enp133s0f0", 0, "vlan", VfConfig(vlan=99, qos=0))
    sim.inject_fault("netlink:enp133s0f0", errno_code=errno.EIO, count=1)
    report = reconcile(ctx).document()
    (finding,) = report["findings"]
    assert finding["result"].startswith("lost: setting vlan on VF 0 of PF 0000:85:00.0 "
                                        "(enp133s0f0) failed with EIO")
    assert _lease_state(ctx, lease.id) == "lost"
    # The VF got its saved config back, and is free again.
    assert sim.vf_configs("enp133s0f0")[0].vlan == 0
    assert _vf_states(ctx)[0] == ("free", None)
    assert _events(ctx, "lease.lost")[-1]["reason"].startswith(
        "its config could not be re-applied")
    _assert_settled(ctx)
