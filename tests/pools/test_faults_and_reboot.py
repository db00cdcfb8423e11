"""The store and the host never silently disagree: a fault injected at each step of `pool
start` fails the command with a clear message, leaves the pool consistent (inactive, no VF
rows, a "pool.start.failed" event) and a retry succeeds. Then reboots: sysfs pools need a
start, `pool start --autostarted` brings them back with the same VFs."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.pools import (
    I40E1,
    IXGBE0,
    IXGBE1,
    actions,
    define,
    events,
    host_pf,
    host_vfs,
    numvfs,
    numvfs_path,
    pool_state,
    vf_identity,
    vf_rows,
)
from vfpool.errors import HostError, VerificationError
from vfpool.host import sriov
from vfpool.host.sysfs import Sysfs
from vfpool.service import pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

T = 0.5
PF0_LABEL = "PF 0000:05:00.0 (enp5s0f0)"


def _assert_failed_cleanly(ctx: Context, name: str, message: str) -> None:
    """Still inactive, no VF claimed for the pool, and the failure is in the audit log."""
    assert pool_state(ctx, name) == "inactive"
    record = pools.info(ctx, name)
    assert (record.state, record.vfs.total) == ("inactive", 0)
    assert vf_rows(ctx) == []
    failed = [e for e in events(ctx, name) if e.action == "pool.start.failed"]
    assert [e.detail for e in failed] == [{"error": message}]
    assert "pool.start" not in actions(ctx, name)
    assert "pf.resize" not in actions(ctx, name)


# --------------------------------------------------------------------------- faults at start
def test_eio_on_the_numvfs_write(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=4)
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=errno.EIO)
    with pytest.raises(HostError) as caught:
        pools.start(ctx, "a", timeout=T)
    message = (f"writing sriov_numvfs=4 on {PF0_LABEL} failed with EIO (Input/output error): "
               "the device or its firmware failed; check `dmesg`, then retry")
    assert str(caught.value) == message
    assert (caught.value.exit_code, caught.value.errno) == (1, errno.EIO)
    _assert_failed_cleanly(ctx, "a", message)
    assert numvfs(sim, IXGBE0) == 0
    record = pools.start(ctx, "a", timeout=T)
    assert (record.state, record.vfs.total) == ("active", 4)
    assert [(i, b) for _, i, b, _, _ in vf_rows(ctx)] == host_vfs(sim, IXGBE0)


def test_eio_on_the_second_pf_of_a_pool(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, IXGBE1, vfs=2)
    sim.inject_fault(numvfs_path(IXGBE1), errno_code=errno.EIO)
    with pytest.raises(HostError, match=r"^writing sriov_numvfs=2 on PF 0000:05:00\.1 "):
        pools.start(ctx, "a", timeout=T)
    assert pool_state(ctx, "a") == "inactive"
    assert vf_rows(ctx) == []
    assert actions(ctx) == ["pool.define", "pool.start.failed"]
    pools.start(ctx, "a", timeout=T)
    assert (numvfs(sim, IXGBE0), numvfs(sim, IXGBE1)) == (2, 2)
    assert len(vf_rows(ctx)) == 4


def test_vfs_that_never_appear(ctx: Context, sim: SimHost) -> None:
    """The write reports success and nothing happens (bnxt_en with its PF down)."""
    define(ctx, "a", IXGBE0, vfs=4)
    sim.inject_fault(numvfs_path(IXGBE0), kind="ignore")
    with pytest.raises(VerificationError) as caught:
        pools.start(ctx, "a", timeout=T)
    message = (f"{PF0_LABEL} (after 0.5 s) did not reach the desired state (sriov_numvfs: "
               "desired 4, current 0; VFs present: desired 4, current 0)")
    assert str(caught.value) == message
    assert caught.value.diff == {"sriov_numvfs": (4, 0), "VFs present": (4, 0)}
    assert caught.value.exit_code == 1
    _assert_failed_cleanly(ctx, "a", message)
    pools.start(ctx, "a", timeout=T)
    assert pool_state(ctx, "a") == "active"
    assert numvfs(sim, IXGBE0) == 4


def test_netdevs_that_never_appear_for_a_macvtap_pool(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=3, mode="macvtap")
    sim.inject_fault(numvfs_path(IXGBE0), kind="no-netdev")
    with pytest.raises(VerificationError) as caught:
        pools.start(ctx, "a", timeout=T)
    message = (f"{PF0_LABEL} (after 0.5 s) did not reach the desired state (VFs without a "
               "netdev: desired 0, current 3)")
    assert str(caught.value) == message
    _assert_failed_cleanly(ctx, "a", message)
    # The retry sees the count in place and VFs without netdevs: it rebinds those VFs one by
    # one instead of taking the PF through 0 VFs.
    record = pools.start(ctx, "a", timeout=T)
    assert record.changed == ()
    assert numvfs(sim, IXGBE0) == 3
    assert [vf.netdev for vf in host_pf(sim, IXGBE0).vfs] == [f"enp5s0f0v{i}" for i in range(3)]
    assert [netdev for *_, netdev, _ in vf_rows(ctx)] == [f"enp5s0f0v{i}" for i in range(3)]


def test_autoprobe_write_failure(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    sim.inject_fault(f"sys/bus/pci/devices/{IXGBE0}/sriov_drivers_autoprobe",
                     errno_code=errno.EIO)
    with pytest.raises(HostError) as caught:
        pools.start(ctx, "a", timeout=T)
    message = (f"setting sriov_drivers_autoprobe on {PF0_LABEL} failed with EIO "
               "(Input/output error)")
    assert str(caught.value) == message
    _assert_failed_cleanly(ctx, "a", message)
    pools.start(ctx, "a", timeout=T)
    assert host_pf(sim, IXGBE0).drivers_autoprobe is False


def test_modprobe_failure_at_start(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3")
    with open_context(sim=sim.root) as ctx:
        define(ctx, "m", "enp5s0", vfs=2)
        sim.inject_fault("modprobe:mlx4_core", errno_code=errno.EIO)
        conf = sim.root / "etc/modprobe.d/vfpool-mlx4_core.conf"
        message = ("`modprobe -r mlx4_core` failed with exit code 1: modprobe: ERROR: could not "
                   "remove 'mlx4_core': Input/output error; restored the previous "
                   f"{conf} and reloaded the driver with it")
        with pytest.raises(HostError) as caught:
            pools.start(ctx, "m", timeout=T)
        assert str(caught.value) == message
        _assert_failed_cleanly(ctx, "m", message)
        pools.start(ctx, "m", timeout=T)
        assert numvfs(sim, "0000:05:00.0") == 2


# --------------------------------------------------------------------------- errno mapping
@pytest.mark.parametrize(("code", "message"), [
    (errno.EBUSY, "writing sriov_numvfs=4 on PF 0000:05:00.0 (enp5s0f0) failed with EBUSY "
                  "(Device or resource busy): VFs are still enabled, assigned to guests, or the "
                  "driver is not ready; set the count to 0 first, release the VFs, then retry"),
    (errno.ERANGE, "writing sriov_numvfs=4 on PF 0000:05:00.0 (enp5s0f0) failed with ERANGE "
                   "(Numerical result out of range): the PF supports at most 63 VFs"),
    (errno.ENOENT, "driver ixgbe cannot resize through sysfs; use --method module-param"),
    (errno.EPERM, "writing sriov_numvfs=4 on PF 0000:05:00.0 (enp5s0f0) failed with EPERM "
                  "(Operation not permitted): driver ixgbe refuses that many VFs (igb allows "
                  "7; ixgbe, i40e limit them by resources); ask for fewer"),
    (errno.EIO, "writing sriov_numvfs=4 on PF 0000:05:00.0 (enp5s0f0) failed with EIO "
                "(Input/output error): the device or its firmware failed; check `dmesg`, then "
                "retry"),
])
def test_numvfs_errnos_map_to_messages_that_say_what_to_do(
        ctx: Context, sim: SimHost, code: int, message: str) -> None:
    define(ctx, "a", IXGBE0, vfs=4)
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=code)
    with pytest.raises(HostError) as caught:
        pools.start(ctx, "a", timeout=T)
    assert str(caught.value) == message
    assert (caught.value.exit_code, caught.value.errno) == (1, code)
    _assert_failed_cleanly(ctx, "a", message)


def test_real_kernel_errnos_map_too(make_sim: Callable[..., SimHost]) -> None:
    """EBUSY, ERANGE and igb's EPERM as the simulated kernel returns them by itself."""
    sim = make_sim("intel-82599", "intel-i350:totalvfs=8")
    sysfs = Sysfs(sim)
    ixgbe = host_pf(sim, IXGBE0)
    with pytest.raises(HostError) as caught:
        sriov.write_numvfs(sysfs, ixgbe, 64)
    assert str(caught.value) == (
        "writing sriov_numvfs=64 on PF 0000:05:00.0 (enp5s0f0) failed with ERANGE (Numerical "
        "result out of range): the PF supports at most 63 VFs")
    sriov.write_numvfs(sysfs, ixgbe, 2)
    with pytest.raises(HostError) as caught:
        sriov.write_numvfs(sysfs, ixgbe, 3)
    assert caught.value.errno == errno.EBUSY
    assert str(caught.value).startswith("writing sriov_numvfs=3 on PF 0000:05:00.0 (enp5s0f0) "
                                        "failed with EBUSY (Device or resource busy): ")
    igb = host_pf(sim, "0000:06:00.0")
    with pytest.raises(HostError) as caught:
        sriov.write_numvfs(sysfs, igb, 8)
    assert str(caught.value) == (
        "writing sriov_numvfs=8 on PF 0000:06:00.0 (enp6s0f0) failed with EPERM (Operation not "
        "permitted): driver igb refuses that many VFs (igb allows 7; ixgbe, i40e limit them by "
        "resources); ask for fewer")


def test_failed_resize_of_an_active_pool_keeps_the_definition(ctx: Context,
                                                              sim: SimHost) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    pools.start(ctx, "a", timeout=T)
    rows = vf_rows(ctx)
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=errno.EIO)
    with pytest.raises(HostError, match=r"^writing sriov_numvfs=0 on PF 0000:05:00\.0 "):
        pools.resize(ctx, "a", 4, timeout=T)
    record = pools.info(ctx, "a")
    assert (record.state, record.vfs_per_pf, record.needs_start) == ("active", 2, False)
    assert vf_rows(ctx) == rows
    assert numvfs(sim, IXGBE0) == 2
    assert actions(ctx)[-3:] == ["pool.resize", "pool.resize.apply.failed",
                                 "pool.resize.revert"]
    pools.resize(ctx, "a", 4, timeout=T)
    assert numvfs(sim, IXGBE0) == 4


# --------------------------------------------------------------------------- reboot
def _three_pools(ctx: Context) -> None:
    define(ctx, "a", "enp5s0f0", "enp133s0f1#8-15", vfs=3)
    define(ctx, "b", "enp5s0f1", vfs=2, mode="netdev")
    define(ctx, "c", "enp133s0f0", vfs=2)
    for name in ("a", "b", "c"):
        pools.start(ctx, name, timeout=T)
    pools.set_autostart(ctx, "a", True)
    pools.set_autostart(ctx, "b", True)


def test_reboot_sysfs_pools_need_a_start(ctx: Context, sim: SimHost) -> None:
    _three_pools(ctx)
    assert [r.needs_start for r in pools.list_pools(ctx)] == [False, False, False]
    sim.reboot()
    assert all(pf.numvfs == 0 for pf in Sysfs(sim).pfs())
    records = pools.list_pools(ctx)
    assert [(r.name, r.state, r.needs_start) for r in records] == [
        ("a", "active", True), ("b", "active", True), ("c", "active", True)]
    assert pools.info(ctx, "a").needs_start is True


def test_start_autostarted_after_reboot_brings_back_the_same_vfs(ctx: Context,
                                                                 sim: SimHost) -> None:
    _three_pools(ctx)
    before = vf_identity(ctx)
    rows_before = vf_rows(ctx)
    sim.reboot()
    results = pools.start_autostarted(ctx, timeout=T)
    assert [result.document() for result in results] == [
        {"name": "a", "result": "started", "error": None},
        {"name": "b", "result": "started", "error": None}]
    assert vf_identity(ctx) == before
    assert vf_rows(ctx) == rows_before  # netdev names and states too
    assert [(r.name, r.needs_start) for r in pools.list_pools(ctx)] == [
        ("a", False), ("b", False), ("c", True)]
    assert (numvfs(sim, IXGBE0), numvfs(sim, IXGBE1), numvfs(sim, I40E1)) == (3, 2, 11)
    assert host_pf(sim, IXGBE0).drivers_autoprobe is False
    assert [(i, b) for _, i, b, _, _ in vf_rows(ctx, IXGBE0)] == host_vfs(sim, IXGBE0)
    # c is not autostart; a plain start brings it back the same way.
    pools.start(ctx, "c", timeout=T)
    assert vf_identity(ctx) == before
    # Now everything is in place: another autostart run changes nothing.
    assert [r.result for r in pools.start_autostarted(ctx, timeout=T)] == [
        "already active", "already active"]


def test_start_autostarted_reports_a_failure_and_starts_the_others(ctx: Context,
                                                                    sim: SimHost) -> None:
    _three_pools(ctx)
    before = vf_identity(ctx)
    sim.reboot()
    sim.inject_fault(numvfs_path(IXGBE0), errno_code=errno.EIO)
    results = pools.start_autostarted(ctx, timeout=T)
    message = (f"writing sriov_numvfs=3 on {PF0_LABEL} failed with EIO (Input/output error): "
               "the device or its firmware failed; check `dmesg`, then retry")
    assert [result.document() for result in results] == [
        {"name": "a", "result": "failed", "error": message, "exit_code": 1},
        {"name": "b", "result": "started", "error": None}]
    assert pools.info(ctx, "a").needs_start is True
    assert pools.info(ctx, "b").needs_start is False
    assert [e.detail for e in events(ctx, "a") if e.action == "pool.start.failed"] == [
        {"error": message}]
    assert [r.result for r in pools.start_autostarted(ctx, timeout=T)] == [
        "started", "already active"]
    assert vf_identity(ctx) == before


def test_reboot_shows_needs_start_in_json_and_tables(
        cli: Callable[..., CliResult], sim_root: Path) -> None:
    sim = ["--sim", str(sim_root)]
    for args in (("pool", "define", "a", "--pf", "enp5s0f0", "--vfs", "2"),
                 ("pool", "start", "a"), ("sim", "reboot", str(sim_root))):
        assert cli(*sim, *args).exit_code == 0
    info = json.loads(cli(*sim, "pool", "info", "a", "--json").stdout)
    assert (info["state"], info["needs_start"]) == ("active", True)
    listed = json.loads(cli(*sim, "pool", "list", "--json").stdout)
    assert [(r["name"], r["needs_start"]) for r in listed] == [("a", True)]
    assert "state       active (needs start)\n" in cli(*sim, "pool", "info", "a").stdout
    table = cli(*sim, "pool", "list").stdout.splitlines()
    assert re.split(r"\s{2,}", table[1])[:2] == ["a", "active (needs start)"]


def test_destroy_and_resize_after_a_reboot(ctx: Context, sim: SimHost) -> None:
    define(ctx, "a", "enp5s0f0", vfs=3)
    define(ctx, "b", "enp5s0f1", vfs=3)
    pools.start(ctx, "a", timeout=T)
    pools.start(ctx, "b", timeout=T)
    sim.reboot()
    record = pools.destroy(ctx, "a")
    assert (record.state, record.needs_start) == ("inactive", False)
    assert vf_rows(ctx, IXGBE0) == []
    record = pools.resize(ctx, "b", 4, timeout=T)
    assert (record.state, record.needs_start) == ("active", False)
    assert numvfs(sim, IXGBE1) == 4
    assert [(i, b) for _, i, b, _, _ in vf_rows(ctx, IXGBE1)] == host_vfs(sim, IXGBE1)
