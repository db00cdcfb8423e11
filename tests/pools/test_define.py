"""`pool define` (flags and TOML), `pool dumpconfig` and `pool undefine`, at service level and
through the CLI where the file round trip needs it. Exact error texts for the CLI are in
tests/cli/test_pool_matrix.py; here the same rules are checked on the service and on other
simulated hosts (mlx4, igb)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import CliResult
from tests.pools import (
    I40E0,
    I40E1,
    IXGBE0,
    IXGBE1,
    actions,
    define,
    events,
    host_vfs,
    numvfs,
    pool_state,
    spec,
    vf_rows,
)
from vfpool.errors import Conflict, InvalidInput, NotFound
from vfpool.model.pool import from_toml
from vfpool.service import pools
from vfpool.service.context import Context, open_context
from vfpool.service.results import VfCounts
from vfpool.sim.host import SimHost
from vfpool.store import Pf, PoolPf

FULL = ("full", IXGBE0, IXGBE1)
# No min_tx_rate: ixgbe_ndo_set_vf_bw() refuses any nonzero one (see model/drivers.py).
FULL_DEFAULTS = {"vlan": 100, "qos": 3, "trust": True, "spoofchk": False,
                 "max_tx_rate": 1000, "mtu": 9000}


# --------------------------------------------------------------------------- define
def test_define_stores_an_inactive_pool_and_leaves_the_host_alone(ctx: Context,
                                                                  sim: SimHost) -> None:
    record = define(ctx, "tenant-a", "enp5s0f0", "0000:85:00.1#8-15", vfs=4, mode="macvtap",
                    vlan=100)
    assert (record.name, record.state, record.autostart) == ("tenant-a", "inactive", False)
    assert [(pf.pci, pf.netdev, pf.range) for pf in record.pfs] == [
        (IXGBE0, "enp5s0f0", None), (I40E1, "enp133s0f1", "8-15")]
    assert record.vfs == VfCounts()
    assert pool_state(ctx, "tenant-a") == "inactive"
    assert (numvfs(sim, IXGBE0), numvfs(sim, I40E1)) == (0, 0)
    assert vf_rows(ctx) == []
    with ctx.store.session() as session:
        members = [(m.pf_pci, m.position, m.range_start, m.range_end)
                   for m in session.scalars(select(PoolPf).order_by(PoolPf.position))]
        pf_rows = {row.pci: (row.netdev, row.driver, row.totalvfs)
                   for row in session.scalars(select(Pf))}
    # Members are keyed by PCI address, whatever the user typed.
    assert members == [(IXGBE0, 0, None, None), (I40E1, 1, 8, 15)]
    assert pf_rows == {IXGBE0: ("enp5s0f0", "ixgbe", 63), I40E1: ("enp133s0f1", "i40e", 64)}


def test_define_writes_an_event_with_the_definition(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    [event] = events(ctx)
    assert (event.action, event.pool) == ("pool.define", "a")
    assert event.detail is not None
    parsed = from_toml(event.detail["definition"], "event")
    assert (parsed.name, parsed.vfs) == ("a", 2)


def test_failed_define_stores_nothing(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    with pytest.raises(Conflict):
        define(ctx, "b", IXGBE1, IXGBE0, vfs=2)  # the second PF is taken
    with pytest.raises(InvalidInput):
        define(ctx, "c", IXGBE1, vfs=64)
    assert pools.list_pools(ctx, include_inactive=True)[0].name == "a"
    assert len(pools.list_pools(ctx, include_inactive=True)) == 1
    assert actions(ctx) == ["pool.define"]
    with ctx.store.session() as session:
        assert [m.pf_pci for m in session.scalars(select(PoolPf))] == [IXGBE0]


def test_disjoint_ranges_share_a_pf(ctx: Context) -> None:
    define(ctx, "low", "enp133s0f1#0-7", vfs=8)
    define(ctx, "high", "enp133s0f1#8-15", vfs=4)
    names = [(r.name, r.pfs[0].range) for r in pools.list_pools(ctx,
                                                                          include_inactive=True)]
    assert names == [("high", "8-15"), ("low", "0-7")]


@pytest.mark.parametrize(("first", "second", "message"), [
    ("enp133s0f1#0-7", "enp133s0f1#4-9",
     "VF range 4-9 of PF 0000:85:00.1 (enp133s0f1) overlaps range 0-7 of pool 'x'"),
    ("enp133s0f1#0-7", "enp133s0f1",
     "PF 0000:85:00.1 (enp133s0f1) is already in pool 'x'"),
    ("enp133s0f1", "enp133s0f1#60-63",
     "PF 0000:85:00.1 (enp133s0f1) is already in pool 'x'"),
    ("0000:85:00.1", "enp133s0f1",
     "PF 0000:85:00.1 (enp133s0f1) is already in pool 'x'"),
    ("enp133s0f1#8-15", "enp133s0f1#15-20",
     "VF range 15-20 of PF 0000:85:00.1 (enp133s0f1) overlaps range 8-15 of pool 'x'"),
])
def test_membership_conflicts(ctx: Context, first: str, second: str, message: str) -> None:
    define(ctx, "x", first, vfs=1)
    with pytest.raises(Conflict) as caught:
        define(ctx, "y", second, vfs=1)
    assert str(caught.value) == message
    assert caught.value.exit_code == 4


def test_name_that_exists_is_a_conflict(ctx: Context) -> None:
    define(ctx, "x", IXGBE0, vfs=1)
    with pytest.raises(Conflict, match=r"^pool 'x' already exists$"):
        define(ctx, "x", IXGBE1, vfs=1)


@pytest.mark.parametrize("name", ["a", "A9", "0", "a" * 64, "tenant_a.b-c"])
def test_valid_names(ctx: Context, name: str) -> None:
    assert define(ctx, name, IXGBE0, vfs=1).name == name


@pytest.mark.parametrize("name", ["", "a" * 65, "-a", "_a", ".a", "a b", "a/b", "é", "a:b"])
def test_invalid_names(ctx: Context, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        define(ctx, name, IXGBE0, vfs=1)
    assert str(caught.value) == (f"invalid pool name {name!r}: use 1 to 64 letters, digits, "
                                 "'_', '.' or '-', starting with a letter or digit")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("options", "message"), [
    ({"vlan": 0}, "VLAN 0 is outside 1-4094"),
    ({"vlan": 4095}, "VLAN 4095 is outside 1-4094"),
    ({"vlan": 1, "qos": 8}, "QoS 8 is outside 0-7"),
    ({"vlan": 1, "qos": -1}, "QoS -1 is outside 0-7"),
    ({"qos": 0}, "QoS needs a VLAN: give --vlan too"),
    ({"min_tx_rate": 101, "max_tx_rate": 100},
     "min TX rate 101 Mbps is above max TX rate 100 Mbps"),
    ({"mtu": 67}, "MTU 67 is outside 68-9216"),
    ({"mtu": 9217}, "MTU 9217 is outside 68-9216"),
])
def test_invalid_defaults(ctx: Context, options: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        define(ctx, "x", IXGBE0, vfs=1, **options)
    assert str(caught.value) == message


@pytest.mark.parametrize("options", [
    {"vlan": 1}, {"vlan": 4094, "qos": 0}, {"vlan": 4094, "qos": 7}, {"mtu": 68},
    {"mtu": 9216}, {"max_tx_rate": 100},
    {"max_tx_rate": 0},  # max 0 means "no limit" (ixgbe takes no min_tx_rate at all)
])
def test_defaults_at_the_edges_are_valid(ctx: Context, options: dict[str, int]) -> None:
    record = define(ctx, "x", IXGBE0, vfs=1, **options)
    assert {key: getattr(record.defaults, key) for key in options} == options


def test_vfs_at_totalvfs_and_range_size_are_valid(sim: SimHost, ctx: Context) -> None:
    """The largest counts are accepted, stored as given, and start to exactly those VFs."""
    whole = define(ctx, "whole", IXGBE0, vfs=63)
    ranged = define(ctx, "ranged", "enp133s0f1#56-63", vfs=8)
    assert (whole.state, whole.vfs_per_pf, whole.pfs[0].range) == (
        "inactive", 63, None)
    assert (ranged.state, ranged.vfs_per_pf, ranged.pfs[0].range) == (
        "inactive", 8, "56-63")
    pools.start(ctx, "whole")
    pools.start(ctx, "ranged")
    assert [index for index, _ in host_vfs(sim, IXGBE0)] == list(range(63))
    assert [index for index, _ in host_vfs(sim, I40E1)] == list(range(64))
    assert [index for _, index, *_ in vf_rows(ctx, I40E1)] == list(range(56, 64))
    assert (pools.info(ctx, "whole").vfs.free, pools.info(ctx, "ranged").vfs.free) \
        == (63, 8)


def test_vfs_above_totalvfs_and_range(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match=r"^PF 0000:05:00\.0 \(enp5s0f0\) supports at most "
                                           r"63 VFs; 64 requested$"):
        define(ctx, "x", IXGBE0, vfs=64)
    with pytest.raises(InvalidInput) as caught:
        define(ctx, "x", "enp133s0f1#8-15", vfs=9)
    assert str(caught.value) == ("--vfs 9 does not fit VF range 8-15 of PF 0000:85:00.1 "
                                 "(enp133s0f1), which holds 8 VFs")
    with pytest.raises(InvalidInput) as caught:
        define(ctx, "x", "enp133s0f1#60-64", vfs=1)
    assert str(caught.value) == ("VF range 60-64 of PF 0000:85:00.1 (enp133s0f1) goes past "
                                 "its 64 VFs (0-63)")


def test_missing_and_non_sriov_pfs_are_invalid(ctx: Context) -> None:
    with pytest.raises(InvalidInput) as caught:
        define(ctx, "x", "enp9s0f0", vfs=1)
    assert str(caught.value) == ("invalid --pf 'enp9s0f0': no PF named 'enp9s0f0': no such "
                                 "PCI address or network interface on this host")
    with pytest.raises(InvalidInput) as caught:
        define(ctx, "x", "eno1", vfs=1)
    assert str(caught.value) == "0000:00:1f.6 (eno1) is not SR-IOV capable (driver e1000e)"


def test_mlx4_refuses_sysfs_and_auto_picks_module_param(
        make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3", "intel-i350")
    with open_context(sim=sim.root) as ctx:
        with pytest.raises(InvalidInput) as caught:
            define(ctx, "x", "enp5s0", vfs=2, method="sysfs")
        assert str(caught.value) == ("driver mlx4_core cannot resize through sysfs; use "
                                     "--method module-param")
        assert define(ctx, "mlx", "enp5s0", vfs=2).pfs[0].method == "module-param"
        assert define(ctx, "igb", "enp6s0f0", vfs=2).pfs[0].method == "sysfs"
        assert define(ctx, "igb-mp", "enp6s0f1", vfs=2,
                      method="module-param").pfs[0].method == "module-param"


def test_drivers_without_a_module_parameter_refuse_module_param(ctx: Context) -> None:
    with pytest.raises(InvalidInput) as caught:
        define(ctx, "x", I40E0, vfs=2, method="module-param")
    assert str(caught.value) == ("driver i40e has no module parameter for VFs; use --method "
                                 "sysfs")


def test_driver_limits_and_unsupported_vf_fields(make_sim: Callable[..., SimHost]) -> None:
    # An I350 whose firmware advertises 8 VFs: igb itself still allows only 7.
    sim = make_sim("intel-i350:totalvfs=8", "intel-x710")
    with open_context(sim=sim.root) as ctx:
        with pytest.raises(InvalidInput) as caught:
            define(ctx, "x", "enp5s0f0", vfs=8)
        assert str(caught.value) == ("driver igb allows at most 7 VFs per PF; PF 0000:05:00.0 "
                                     "(enp5s0f0) would need 8")
        with pytest.raises(InvalidInput) as caught:
            define(ctx, "x", "enp6s0f0", vfs=1, min_tx_rate=10)
        assert str(caught.value) == ("driver i40e cannot set min_tx_rate on its VFs (PF "
                                     "0000:06:00.0 (enp6s0f0))")


def test_mlx4_and_igb_pools_define_on_their_hosts(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3", "intel-82576")
    with open_context(sim=sim.root) as ctx:
        define(ctx, "mlx", "enp5s0#0-31", vfs=8, mode="macvtap")
        define(ctx, "igb", "enp6s0f0", "enp6s0f1", vfs=7, mode="netdev")
        with pytest.raises(InvalidInput, match=r"supports at most 7 VFs; 8 requested$"):
            define(ctx, "big", "enp6s0f0", vfs=8)
        assert [r.state for r in pools.list_pools(ctx, include_inactive=True)] == [
            "inactive", "inactive"]


# --------------------------------------------------------------------------- undefine
def test_undefine_forgets_an_inactive_pool_and_frees_its_pfs(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    pools.undefine(ctx, "a")
    with pytest.raises(NotFound, match=r"^no pool named 'a'$"):
        pools.info(ctx, "a")
    with ctx.store.session() as session:
        assert list(session.scalars(select(PoolPf))) == []
    assert actions(ctx) == ["pool.define", "pool.undefine"]
    define(ctx, "b", IXGBE0, vfs=2)  # the PF is free again


def test_undefine_of_an_active_pool_is_a_conflict(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    pools.start(ctx, "a", timeout=0.5)
    with pytest.raises(Conflict) as caught:
        pools.undefine(ctx, "a")
    assert str(caught.value) == "pool 'a' is active; destroy it before undefining it"
    assert pool_state(ctx, "a") == "active"
    assert actions(ctx)[-1] == "pool.start"


def test_undefine_unknown_pool_is_not_found(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.undefine(ctx, "nope")


# --------------------------------------------------------------------------- TOML
def test_dumpconfig_golden_full(ctx: Context, golden: Callable[[str, str], None]) -> None:
    define(ctx, *FULL, vfs=8, mode="macvtap", method="sysfs", **FULL_DEFAULTS)
    pools.set_autostart(ctx, "full", True)
    golden("pool-dumpconfig-full.toml", pools.dumpconfig(ctx, "full"))


def test_dumpconfig_golden_ranges(ctx: Context, golden: Callable[[str, str], None]) -> None:
    # Netdev names in --pf are stored, and dumped, as PCI addresses.
    define(ctx, "ranged", "enp133s0f0#0-7", "enp133s0f1#8-15", vfs=4)
    golden("pool-dumpconfig-ranged.toml", pools.dumpconfig(ctx, "ranged"))


def test_dumpconfig_unknown_pool(ctx: Context) -> None:
    with pytest.raises(NotFound, match=r"^no pool named 'nope'$"):
        pools.dumpconfig(ctx, "nope")


@pytest.mark.parametrize("pool", ["full", "ranged", "minimal"])
def test_dumpconfig_round_trips_through_define_file(
        pool: str, cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path) -> None:
    setups = {
        "full": ["full", "--pf", IXGBE0, "--pf", "enp5s0f1", "--vfs", "8", "--mode", "macvtap",
                 "--method", "sysfs", "--vlan", "100", "--qos", "3", "--trust", "--no-spoofchk",
                 "--max-tx-rate", "1000", "--mtu", "9000"],
        "ranged": ["ranged", "--pf", "enp133s0f0#0-7", "--pf", "enp133s0f1#8-15", "--vfs", "4"],
        "minimal": ["minimal", "--pf", I40E0, "--vfs", "1"],
    }
    sim = ["--sim", str(sim_root)]
    assert cli(*sim, "pool", "define", *setups[pool]).exit_code == 0
    assert cli(*sim, "pool", "autostart", pool).exit_code == 0
    dumped = cli(*sim, "pool", "dumpconfig", pool)
    assert dumped.exit_code == 0
    before = cli(*sim, "pool", "info", pool, "--json").stdout
    path = tmp_path / f"{pool}.toml"
    path.write_text(dumped.stdout)
    assert cli(*sim, "pool", "undefine", pool).exit_code == 0
    result = cli(*sim, "pool", "define", "--file", str(path))
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (f"defined pool {pool} (inactive); start it with `vfpool pool start "
                             f"{pool}`\n")
    assert cli(*sim, "pool", "dumpconfig", pool).stdout == dumped.stdout
    assert cli(*sim, "pool", "info", pool, "--json").stdout == before


def test_define_file_with_a_name_overrides_the_files_name(
        cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path) -> None:
    sim = ["--sim", str(sim_root)]
    assert cli(*sim, "pool", "define", "orig", "--pf", IXGBE0, "--vfs", "2").exit_code == 0
    path = tmp_path / "orig.toml"
    path.write_text(cli(*sim, "pool", "dumpconfig", "orig").stdout)
    assert cli(*sim, "pool", "undefine", "orig").exit_code == 0
    result = cli(*sim, "pool", "define", "copy", "--file", str(path))
    assert result.exit_code == 0, result.stderr
    assert cli(*sim, "pool", "dumpconfig", "copy").stdout == \
        path.read_text().replace('name = "orig"', 'name = "copy"')


def test_define_file_is_checked_against_the_host_like_flags(ctx: Context) -> None:
    define(ctx, "a", IXGBE0, vfs=2)
    text = f'name = "b"\nvfs = 2\npf = [{{ pci = "{IXGBE0}" }}]\n'
    with pytest.raises(Conflict, match=r"^PF 0000:05:00\.0 \(enp5s0f0\) is already in pool 'a'$"):
        pools.define(ctx, from_toml(text, "b.toml"))
    text = 'name = "b"\nvfs = 64\npf = [{ pci = "enp5s0f1" }]\n'
    with pytest.raises(InvalidInput, match=r"supports at most 63 VFs; 64 requested$"):
        pools.define(ctx, from_toml(text, "b.toml"))


@pytest.mark.parametrize(("text", "message"), [
    ('name = "b"\nvfs = 2\n', None),  # no [[pf]]: "a pool needs at least one --pf"
    ('vfs = 2\npf = [{ pci = "enp5s0f0" }]\n', "b.toml: missing key 'name'"),
    ('name = "b"\npf = [{ pci = "enp5s0f0" }]\n', "b.toml: missing key 'vfs'"),
    ('name = "b"\nvfs = "2"\npf = [{ pci = "enp5s0f0" }]\n', "b.toml: 'vfs' must be an integer"),
    ('name = "b"\nvfs = 2\ncolour = 1\npf = [{ pci = "enp5s0f0" }]\n',
     "b.toml: unknown key 'colour'"),
    ('name = "b"\nvfs = 2\npf = [{ pci = "enp5s0f0", size = 3 }]\n',
     "b.toml: unknown key 'size' in [[pf]]"),
    ('name = "b"\nvfs = 2\npf = [{ pci = "enp5s0f0", range = "9-1" }]\n',
     "invalid VF range '9-1' in 'enp5s0f0#9-1': 9 is above 1"),
    ('name = "b"\nvfs = 2\nmode = "tap"\npf = [{ pci = "enp5s0f0" }]\n',
     "invalid mode 'tap': use one of vfio, macvtap, netdev"),
    ('name = "b b"\nvfs = 2\npf = [{ pci = "enp5s0f0" }]\n',
     "invalid pool name 'b b': use 1 to 64 letters, digits, '_', '.' or '-', starting with a "
     "letter or digit"),
    ('name = "b"\nvfs = 2\npf = [{ pci = "enp5s0f0" }]\n[defaults]\nvlan = 4095\n',
     "VLAN 4095 is outside 1-4094"),
    ('name = "b"\nvfs = 2\npf = [{ pci = "enp5s0f0" }\n', None),  # not TOML
])
def test_invalid_toml_is_exit_2(text: str, message: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_toml(text, "b.toml")
    assert caught.value.exit_code == 2
    if message is not None:
        assert str(caught.value) == message


@pytest.mark.parametrize(("key", "value"), [
    ("vlan", '"100"'), ("mtu", '"9000"'), ("trust", '"yes"'), ("qos", "1.5"),
])
def test_wrongly_typed_defaults_in_toml_are_exit_2(
        key: str, value: str, cli: Callable[..., CliResult], sim_root: Path,
        tmp_path: Path) -> None:
    """A file is input like the flags: a wrong type is invalid input (exit 2) that names the
    key, never an internal error."""
    path = tmp_path / "b.toml"
    path.write_text('name = "b"\nvfs = 2\npf = [{ pci = "enp5s0f0" }]\n[defaults]\n'
                    + ("vlan = 5\n" if key == "qos" else "") + f"{key} = {value}\n")
    result = cli("--sim", str(sim_root), "pool", "define", "--file", str(path))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert key in result.stderr
    assert "internal error" not in result.stderr


def test_non_boolean_autostart_in_toml_is_exit_2(
        cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path) -> None:
    """`autostart = "no"` must not turn autostart on."""
    path = tmp_path / "b.toml"
    path.write_text('name = "b"\nvfs = 2\nautostart = "no"\npf = [{ pci = "enp5s0f0" }]\n')
    result = cli("--sim", str(sim_root), "pool", "define", "--file", str(path))
    assert result.exit_code == 2, result.stdout
    assert "autostart" in result.stderr


def test_toml_module_param_conflict(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-i350")
    with open_context(sim=sim.root) as ctx:
        pools.define(ctx, spec("a", "enp5s0f0", vfs=3, method="module-param"))
        text = ('name = "b"\nvfs = 2\nmethod = "module-param"\n'
                'pf = [{ pci = "0000:05:00.1" }]\n')
        with pytest.raises(Conflict) as caught:
            pools.define(ctx, from_toml(text, "b.toml"))
        assert str(caught.value) == ("driver igb's max_vfs parameter sizes every igb port "
                                     "alike, but pool 'a' needs 3 VFs per PF and pool 'b' "
                                     "needs 2")
