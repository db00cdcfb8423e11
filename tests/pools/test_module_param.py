"""Module-param pools: /etc/modprobe.d/vfpool-<module>.conf plus a driver reload, on a
ConnectX-3 (mlx4_core: num_vfs and probe_vf, no sysfs path at all) and on I350/82576 (igb:
scalar max_vfs for every port). Also the disruption check and restoring the old options."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from tests.pools import (
    actions,
    conf_text,
    define,
    events,
    host_pf,
    host_vfs,
    modprobe_conf,
    numvfs,
    pool_state,
    vf_rows,
)
from vfpool.errors import Conflict, HostError
from vfpool.host import sriov
from vfpool.host.sysfs import Sysfs
from vfpool.service import pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

T = 0.5
MLX4 = "0000:05:00.0"  # mellanox-cx3 first: one PF, netdevs enp5s0 and enp5s0d1
I350_0, I350_1 = "0000:05:00.0", "0000:05:00.1"


@pytest.fixture
def mlx4(make_sim: Callable[..., SimHost],
         make_ctx: Callable[..., Context]) -> tuple[SimHost, Context]:
    """A ConnectX-3 (mlx4_core) and an 82599, and a Context on them."""
    sim = make_sim("mellanox-cx3", "intel-82599")
    return sim, make_ctx(sim)


@pytest.fixture
def igb(make_sim: Callable[..., SimHost],
        make_ctx: Callable[..., Context]) -> tuple[SimHost, Context]:
    """A dual-port I350 (igb), and a Context on it."""
    sim = make_sim("intel-i350")
    return sim, make_ctx(sim)


# --------------------------------------------------------------------------- mlx4_core
@pytest.mark.parametrize(("mode", "options", "driver"), [
    ("vfio", "num_vfs=4 probe_vf=0", None),
    ("macvtap", "num_vfs=4 probe_vf=4", "mlx4_core"),
    ("netdev", "num_vfs=4 probe_vf=4", "mlx4_core"),
])
def test_mlx4_start_writes_modprobe_d_and_reloads(
        mlx4: tuple[SimHost, Context], mode: str, options: str, driver: str | None) -> None:
    sim, ctx = mlx4
    define(ctx, "m", "enp5s0", vfs=4, mode=mode)  # --method auto
    record = pools.start(ctx, "m", timeout=T)
    assert record.pfs[0].method == "module-param"
    assert record.changed == (MLX4,)
    assert modprobe_conf(sim, "mlx4_core").read_text() == conf_text("mlx4_core", options)
    pf = host_pf(sim, MLX4)
    assert pf.numvfs == 4
    assert [vf.driver for vf in pf.vfs] == [driver] * 4
    if driver is not None:
        assert [vf.netdev for vf in pf.vfs] == [f"enp5s0v{i}" for i in range(4)]
    assert [(index, bdf) for _, index, bdf, _, _ in vf_rows(ctx)] == host_vfs(sim, MLX4)
    assert pool_state(ctx, "m") == "active"
    # The other driver's PFs are untouched.
    assert not modprobe_conf(sim, "ixgbe").exists()


def test_mlx4_sysfs_write_maps_enoent(mlx4: tuple[SimHost, Context]) -> None:
    """mlx4_core has no sriov_configure, so the kernel answers ENOENT."""
    sim, _ = mlx4
    sysfs = Sysfs(sim)
    with pytest.raises(HostError) as caught:
        sriov.write_numvfs(sysfs, host_pf(sim, MLX4), 2)
    assert str(caught.value) == ("driver mlx4_core cannot resize through sysfs; use --method "
                                 "module-param")
    assert caught.value.errno == errno.ENOENT


def test_mlx4_range_pool_and_resize(mlx4: tuple[SimHost, Context]) -> None:
    sim, ctx = mlx4
    define(ctx, "m", "enp5s0#0-31", vfs=2, mode="netdev")
    pools.start(ctx, "m", timeout=T)
    record = pools.resize(ctx, "m", 6, timeout=T)
    assert (record.vfs_per_pf, record.vfs.total) == (6, 6)
    assert modprobe_conf(sim, "mlx4_core").read_text() == conf_text("mlx4_core",
                                                                    "num_vfs=6 probe_vf=6")
    assert numvfs(sim, MLX4) == 6
    assert [(index, bdf) for _, index, bdf, _, _ in vf_rows(ctx)] == host_vfs(sim, MLX4)
    assert actions(ctx)[-3:] == ["pool.resize", "pf.resize", "pool.resize.apply"]


def test_mlx4_destroy_removes_the_options_and_the_vfs(mlx4: tuple[SimHost, Context]) -> None:
    sim, ctx = mlx4
    define(ctx, "m", "enp5s0", vfs=3)
    pools.start(ctx, "m", timeout=T)
    pools.destroy(ctx, "m")
    assert not modprobe_conf(sim, "mlx4_core").exists()
    assert numvfs(sim, MLX4) == 0
    assert vf_rows(ctx) == []
    assert pool_state(ctx, "m") == "inactive"


def test_mlx4_reload_refused_while_another_cards_ports_are_up(
        make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3", "mellanox-cx3")
    with open_context(sim=sim.root) as ctx:
        define(ctx, "m", "enp5s0", vfs=2)
        with pytest.raises(Conflict) as caught:
            pools.start(ctx, "m", timeout=T)
        assert str(caught.value) == (
            "reloading mlx4_core takes down every port it serves: interfaces enp6s0, enp6s0d1 "
            "are up and not in an active vfpool pool; pass --allow-disruption to reload anyway")
        assert not modprobe_conf(sim, "mlx4_core").exists()
        assert pool_state(ctx, "m") == "inactive"
        pools.start(ctx, "m", timeout=T, allow_disruption=True)
        assert numvfs(sim, "0000:05:00.0") == 2


# --------------------------------------------------------------------------- igb
def test_igb_auto_uses_sysfs_and_leaves_modprobe_d_alone(igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=7, mode="netdev")
    pools.start(ctx, "a", timeout=T)
    assert numvfs(sim, I350_0) == 7
    assert numvfs(sim, I350_1) == 0
    assert list((sim.root / "etc/modprobe.d").iterdir()) == []


def test_igb_reload_refused_while_a_port_outside_pools_is_up(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param")
    autoprobe_before = host_pf(sim, I350_0).drivers_autoprobe
    with pytest.raises(Conflict) as caught:
        pools.start(ctx, "a", timeout=T)
    assert str(caught.value) == (
        "reloading igb takes down every port it serves: interfaces enp5s0f1 are up and not in "
        "an active vfpool pool; pass --allow-disruption to reload anyway")
    assert caught.value.exit_code == 4
    # Nothing changed: no options file, the driver still bound, no VFs.
    assert not modprobe_conf(sim, "igb").exists()
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (0, 0)
    assert host_pf(sim, I350_1).driver == "igb"
    assert host_pf(sim, I350_0).drivers_autoprobe == autoprobe_before
    assert pool_state(ctx, "a") == "inactive"
    assert vf_rows(ctx) == []
    assert actions(ctx) == ["pool.define", "pool.start.failed"]


def test_igb_reload_allowed_when_the_other_port_is_down(igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param", mode="netdev")
    sim.set_operstate("enp5s0f1", "down")
    pools.start(ctx, "a", timeout=T)
    assert modprobe_conf(sim, "igb").read_text() == conf_text("igb", "max_vfs=3")


def test_igb_reload_refused_while_an_up_port_is_only_in_an_inactive_pool(
        igb: tuple[SimHost, Context]) -> None:
    """An inactive pool's up port is not under vfpool's control: whoever uses it now loses it
    in the reload, so defining an idle pool on it must not open the guard."""
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param", mode="netdev")
    define(ctx, "b", "enp5s0f1", vfs=3, method="module-param", mode="netdev")
    with pytest.raises(Conflict, match="interfaces enp5s0f1 are up and not in an active "
                                       "vfpool pool"):
        pools.start(ctx, "a", timeout=T)
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (0, 0)
    assert not modprobe_conf(sim, "igb").exists()


def test_igb_reload_allowed_when_every_port_is_in_a_pool(igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param", mode="netdev")
    define(ctx, "b", "enp5s0f1", vfs=3, method="module-param", mode="netdev")
    # b is not active yet, so the first reload takes its up port down: it must be asked for.
    assert pools.start(ctx, "a", timeout=T, allow_disruption=True).changed == (I350_0,)
    # The scalar max_vfs sized both ports: b finds its PF in place and reloads nothing.
    assert pools.start(ctx, "b", timeout=T).changed == ()
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (3, 3)
    assert pools.info(ctx, "b").vfs.total == 3


def test_igb_scalar_parameter_sizes_every_port(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-i350", "intel-82576")
    with open_context(sim=sim.root) as ctx:
        define(ctx, "a", "enp5s0f0", vfs=2, method="module-param", mode="netdev")
        pools.start(ctx, "a", timeout=T, allow_disruption=True)
        assert modprobe_conf(sim, "igb").read_text() == conf_text("igb", "max_vfs=2")
        assert [(pf.netdev, pf.numvfs) for pf in Sysfs(sim).pfs()] == [
            ("enp5s0f0", 2), ("enp5s0f1", 2), ("enp6s0f0", 2), ("enp6s0f1", 2)]
        assert [(index, bdf) for _, index, bdf, _, _ in vf_rows(ctx)] == \
            host_vfs(sim, "0000:05:00.0")


def test_igb_vfio_module_param_pool_leaves_vfs_unbound(igb: tuple[SimHost, Context]) -> None:
    """vfio wants sriov_drivers_autoprobe 0 and unbound VFs, whichever method sized the PF."""
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", "enp5s0f1", vfs=2, method="module-param")
    pools.start(ctx, "a", timeout=T)
    for pci in (I350_0, I350_1):
        pf = host_pf(sim, pci)
        assert pf.drivers_autoprobe is False
        assert [(vf.driver, vf.netdev) for vf in pf.vfs] == [(None, None)] * 2


@pytest.mark.parametrize("when", ["define", "resize"])
def test_igb_pools_needing_different_counts_conflict(igb: tuple[SimHost, Context],
                                                     when: str) -> None:
    _, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param")
    if when == "define":
        with pytest.raises(Conflict) as caught:
            define(ctx, "b", "enp5s0f1", vfs=4, method="module-param")
        assert str(caught.value) == ("driver igb's max_vfs parameter sizes every igb port "
                                     "alike, but pool 'a' needs 3 VFs per PF and pool 'b' "
                                     "needs 4")
    else:
        define(ctx, "b", "enp5s0f1", vfs=3, method="module-param")
        with pytest.raises(Conflict) as caught:
            pools.resize(ctx, "b", 4, timeout=T)
        assert str(caught.value) == ("driver igb's max_vfs parameter sizes every igb port "
                                     "alike, but pool 'a' needs 3 VFs per PF and pool 'b' "
                                     "needs 4")
        assert pools.info(ctx, "b").vfs_per_pf == 3
    assert caught.value.exit_code == 4


def test_igb_sysfs_pool_does_not_conflict_with_a_module_param_pool(
        igb: tuple[SimHost, Context]) -> None:
    """Only module-param pools must agree on igb's one max_vfs: a sysfs pool on the other
    port may want another count, and both pools then hold their own counts on the host."""
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param")
    define(ctx, "b", "enp5s0f1", vfs=5, method="sysfs")
    assert [pool.name for pool in pools.list_pools(ctx, include_inactive=True)] == ["a", "b"]
    assert [(pools.info(ctx, name).pfs[0].method, pools.info(ctx, name).vfs_per_pf)
            for name in ("a", "b")] == [("module-param", 3), ("sysfs", 5)]
    # The reload for a takes enp5s0f1 down too (b is not active yet): allowed explicitly.
    pools.start(ctx, "a", timeout=T, allow_disruption=True)
    pools.start(ctx, "b", timeout=T)
    assert modprobe_conf(sim, "igb").read_text() == conf_text("igb", "max_vfs=3")
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (3, 5)
    assert [(pf, index) for pf, index, *_ in vf_rows(ctx)] == [
        *((I350_0, index) for index in range(3)), *((I350_1, index) for index in range(5))]


# --------------------------------------------------------------------------- reload failures
def test_modprobe_failure_restores_the_absent_file_and_retry_succeeds(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", "enp5s0f1", vfs=3, method="module-param", mode="netdev")
    sim.inject_fault("modprobe:igb", errno_code=errno.EIO, count=1)
    with pytest.raises(HostError) as caught:
        pools.start(ctx, "a", timeout=T)
    conf = modprobe_conf(sim, "igb")
    assert str(caught.value) == (
        "`modprobe -r igb` failed with exit code 1: modprobe: ERROR: could not remove 'igb': "
        f"Input/output error; restored the previous {conf} and reloaded the driver with it")
    assert caught.value.exit_code == 1
    assert not conf.exists()
    assert pool_state(ctx, "a") == "inactive"
    assert vf_rows(ctx) == []
    assert actions(ctx) == ["pool.define", "pool.start.failed"]
    assert host_pf(sim, I350_0).driver == "igb"
    pools.start(ctx, "a", timeout=T)
    assert conf.read_text() == conf_text("igb", "max_vfs=3")
    assert pool_state(ctx, "a") == "active"
    assert len(vf_rows(ctx)) == 6


def test_modprobe_failure_restores_the_previous_options_on_resize(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", "enp5s0f1", vfs=3, method="module-param", mode="netdev")
    pools.start(ctx, "a", timeout=T)
    rows = vf_rows(ctx)
    sim.inject_fault("modprobe:igb", errno_code=errno.EIO, count=1)
    with pytest.raises(HostError, match="restored the previous"):
        pools.resize(ctx, "a", 5, timeout=T)
    assert modprobe_conf(sim, "igb").read_text() == conf_text("igb", "max_vfs=3")
    record = pools.info(ctx, "a")
    assert (record.state, record.vfs_per_pf, record.needs_start) == ("active", 3,
                                                                              False)
    assert vf_rows(ctx) == rows
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (3, 3)
    assert actions(ctx)[-3:] == ["pool.resize", "pool.resize.apply.failed",
                                 "pool.resize.revert"]
    pools.resize(ctx, "a", 5, timeout=T)
    assert modprobe_conf(sim, "igb").read_text() == conf_text("igb", "max_vfs=5")
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (5, 5)


def test_modprobe_failing_twice_says_both(igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", "enp5s0f1", vfs=3, method="module-param")
    sim.inject_fault("modprobe:igb", errno_code=errno.EIO, count=2)
    with pytest.raises(HostError) as caught:
        pools.start(ctx, "a", timeout=T)
    assert str(caught.value) == (
        "`modprobe -r igb` failed with exit code 1: modprobe: ERROR: could not remove 'igb': "
        "Input/output error; reloading with the previous options failed too: `modprobe igb` "
        "failed with exit code 1: modprobe: ERROR: could not insert 'igb': Input/output error")
    assert not modprobe_conf(sim, "igb").exists()
    assert pool_state(ctx, "a") == "inactive"
    assert vf_rows(ctx) == []
    failed = [e for e in events(ctx) if e.action == "pool.start.failed"]
    assert len(failed) == 1
    pools.start(ctx, "a", timeout=T)
    assert pool_state(ctx, "a") == "active"


def test_mlx4_modprobe_failure_and_retry(mlx4: tuple[SimHost, Context]) -> None:
    sim, ctx = mlx4
    define(ctx, "m", "enp5s0", vfs=4)
    sim.inject_fault("modprobe:mlx4_core", errno_code=errno.EIO)
    with pytest.raises(HostError, match=r"^`modprobe -r mlx4_core` failed with exit code 1"):
        pools.start(ctx, "m", timeout=T)
    assert not modprobe_conf(sim, "mlx4_core").exists()
    assert (pool_state(ctx, "m"), vf_rows(ctx), numvfs(sim, MLX4)) == ("inactive", [], 0)
    assert actions(ctx)[-1] == "pool.start.failed"
    pools.start(ctx, "m", timeout=T)
    assert numvfs(sim, MLX4) == 4


# --------------------------------------------------------------------------- reboot
@pytest.mark.parametrize("profile", ["mellanox-cx3", "intel-82576"])
def test_module_param_vfs_come_back_by_themselves_at_reboot(
        make_sim: Callable[..., SimHost], profile: str) -> None:
    sim = make_sim(profile)
    with open_context(sim=sim.root) as ctx:
        pf = "0000:05:00.0"
        netdev = host_pf(sim, pf).netdev
        assert netdev is not None
        define(ctx, "a", netdev, vfs=3, method="module-param", mode="netdev")
        pools.start(ctx, "a", timeout=T, allow_disruption=True)
        rows = vf_rows(ctx)
        sim.reboot()
        assert numvfs(sim, pf) == 3
        assert [(index, bdf) for _, index, bdf, _, _ in rows] == host_vfs(sim, pf)
        record = pools.info(ctx, "a")
        assert (record.state, record.needs_start) == ("active", False)
        assert pools.start_autostarted(ctx, timeout=T) == []
        assert pools.start(ctx, "a", timeout=T).already_active is True
        assert vf_rows(ctx) == rows


def test_igb_destroy_reloads_too_and_checks_for_disruption(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", "enp5s0f0", vfs=3, method="module-param", mode="netdev")
    pools.start(ctx, "a", timeout=T, allow_disruption=True)
    # The reload left both ports down, as the real igb does; the host's network configuration
    # brings the one outside vfpool back up.
    sim.set_operstate("enp5s0f1", "up")
    with pytest.raises(Conflict, match=r"^reloading igb takes down every port it serves: "
                                       r"interfaces enp5s0f1 are up and not in an active "
                                       r"vfpool pool"):
        pools.destroy(ctx, "a")
    assert (pool_state(ctx, "a"), numvfs(sim, I350_0)) == ("active", 3)
    assert modprobe_conf(sim, "igb").read_text() == conf_text("igb", "max_vfs=3")
    pools.destroy(ctx, "a", allow_disruption=True)
    assert not modprobe_conf(sim, "igb").exists()
    assert (numvfs(sim, I350_0), numvfs(sim, I350_1)) == (0, 0)
    assert (pool_state(ctx, "a"), vf_rows(ctx)) == ("inactive", [])


def test_reload_does_not_silently_resize_another_active_pool(
        igb: tuple[SimHost, Context]) -> None:
    """Pool s sizes port 1 through sysfs; reloading igb for pool m would reset port 1 to m's
    max_vfs, taking s's VFs away behind its back. Like the sysfs path ("would remove the VFs
    of active pool ..."), the reload must refuse (exit 4, naming the pool) rather than leave
    the store saying 5 free VFs on a PF that has 3."""
    sim, ctx = igb
    define(ctx, "s", "enp5s0f1", vfs=5, method="sysfs", mode="netdev")
    define(ctx, "m", "enp5s0f0", vfs=3, method="module-param", mode="netdev")
    pools.start(ctx, "s", timeout=T)
    rows = vf_rows(ctx)
    with pytest.raises(Conflict) as caught:
        pools.start(ctx, "m", timeout=T)
    assert "'s'" in str(caught.value)
    assert numvfs(sim, I350_1) == 5
    assert vf_rows(ctx) == rows
    assert pools.info(ctx, "s").needs_start is False
