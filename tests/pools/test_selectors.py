"""Pools that choose their PFs by selector (issue 13): `pool define NAME --select
vendor=8086,device=1572[,driver=i40e][,pf=enp*]` picks the PFs at each start of the pool on
each host, dumpconfig writes the selectors back, and one TOML file defines the same pool on
hosts whose NICs sit at other addresses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vfpool.errors import Conflict, InvalidInput
from vfpool.host.sysfs import Sysfs
from vfpool.model.pool import PfSelector, selected
from vfpool.model.snapshot import PfSnapshot
from vfpool.service import pools
from vfpool.service.context import Context

Cli = Callable[..., CliResult]
X710 = "vendor=8086,device=1572"  # the default sim's two i40e ports, 0000:85:00.0/.1


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stderr
    return result


def pool_json(cli: Cli, root: Path, name: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(ok(cli("--sim", str(root), "pool", "show", name,
                                                    "--json")).stdout)
    return document


@pytest.mark.parametrize(("text", "shown"), [
    ("vendor=8086,device=1572", "vendor=8086,device=1572"),
    ("vendor=0x8086, device=1572 ,driver=i40e", "vendor=8086,device=1572,driver=i40e"),
    ("pf=enp133*", "pf=enp133*"),
    ("device=10FB,pf=enp5s0f[01]", "device=10fb,pf=enp5s0f[01]"),
])
def test_a_selector_reads_and_writes_back(text: str, shown: str) -> None:
    assert str(PfSelector.parse(text)) == shown
    assert PfSelector.parse(shown) == PfSelector.parse(text)


@pytest.mark.parametrize(("text", "why"), [
    ("vendr=8086", "unknown key 'vendr'"), ("vendor=808", "four hex digits"),
    ("vendor=8086,vendor=8086", "vendor is given twice"), ("vendor", "KEY=VALUE"),
    ("driver=i40e;rm", "characters"), ("", "KEY=VALUE"),
])
def test_a_bad_selector_is_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        PfSelector.parse(text)


def test_matching_by_ids_driver_and_netdev_pattern(sysfs: Sysfs) -> None:
    pfs = sysfs.pfs()
    pick = lambda *texts: [str(pf.pci) for pf in selected(  # noqa: E731
        tuple(PfSelector.parse(text) for text in texts), pfs)]
    assert pick(X710) == ["0000:85:00.0", "0000:85:00.1"]
    assert pick("driver=ixgbe") == ["0000:05:00.0", "0000:05:00.1"]
    assert pick("vendor=8086,pf=enp*s0f1") == ["0000:05:00.1", "0000:85:00.1"]
    assert pick("driver=ixgbe", "pf=enp133s0f0") == ["0000:05:00.0", "0000:05:00.1",
                                                     "0000:85:00.0"]  # either selector
    assert pick("vendor=15b3") == []


def test_define_stores_selectors_and_start_chooses_the_pfs(cli: Cli, sim_root: Path) -> None:
    sim = ("--sim", str(sim_root))
    ok(cli(*sim, "pool", "define", "t", "--select", f"{X710},pf=enp133*", "--vfs", "4",
           "--vlan", "5"))
    defined = pool_json(cli, sim_root, "t")
    assert (defined["select"], defined["pfs"]) == ([f"{X710},pf=enp133*"], [])
    assert f"select      {X710},pf=enp133*" in ok(cli(*sim, "pool", "show", "t")).stdout
    ok(cli(*sim, "pool", "start", "t"))
    started = pool_json(cli, sim_root, "t")
    assert [pf["pci"] for pf in started["pfs"]] == ["0000:85:00.0", "0000:85:00.1"]  # type: ignore[index]
    assert started["vfs"] == {"total": 8, "free": 8, "leased": 0, "reserved": 0, "unusable": 0}
    for pci in ("0000:85:00.0", "0000:85:00.1"):
        assert (sim_root / "sys/bus/pci/devices" / pci / "sriov_numvfs").read_text().strip() \
            == "4"
    events = json.loads(ok(cli(*sim, "events", "--action", "pool.select", "--json")).stdout)
    assert events[0]["detail"]["pfs"] == ["0000:85:00.0", "0000:85:00.1"]
    lease = json.loads(ok(cli(*sim, "lease", "acquire", "t", "--owner", "vm1",
                              "--json")).stdout)[0]
    assert lease["vlan"] == 5 and lease["pf"]["pci"].startswith("0000:85:00.")


def test_start_skips_pfs_of_other_pools_and_says_when_none_is_left(cli: Cli,
                                                                  sim_root: Path) -> None:
    sim = ("--sim", str(sim_root))
    ok(cli(*sim, "pool", "define", "fixed", "--pf", "enp133s0f0", "--vfs", "2"))
    ok(cli(*sim, "pool", "define", "t", "--select", X710, "--vfs", "2"))
    ok(cli(*sim, "pool", "start", "t"))
    assert [pf["pci"] for pf in pool_json(cli, sim_root, "t")["pfs"]] == [  # type: ignore[index]
        "0000:85:00.1"]
    ok(cli(*sim, "pool", "define", "u", "--select", X710, "--vfs", "2"))
    busy = cli(*sim, "pool", "start", "u")
    assert (busy.exit_code, busy.stderr) == (4, "error: every PF that matches the selectors "
                                             f"of pool 'u' ({X710}) is in another pool: "
                                             "'fixed', 't'\n")
    ok(cli(*sim, "pool", "define", "m", "--select", "vendor=15b3", "--vfs", "2"))
    none = cli(*sim, "pool", "start", "m")
    assert (none.exit_code, none.stderr) == (3, "error: no PF on this host matches the "
                                             "selectors of pool 'm' (vendor=15b3)\n")
    assert pool_json(cli, sim_root, "m")["state"] == "inactive"
    # Once destroyed, "t" holds no PF and chooses again at its next start: "u" can take its
    # PF meanwhile, and pf list no longer shows "t" on it.
    ok(cli(*sim, "pool", "destroy", "t"))
    assert pool_json(cli, sim_root, "t")["pfs"] == []
    pf_pools = {pf["pci"]: pf["pool"] for pf in json.loads(ok(cli(*sim, "pf", "list",
                                                                  "--json")).stdout)}
    assert pf_pools["0000:85:00.1"] is None
    ok(cli(*sim, "pool", "start", "u"))
    assert [pf["pci"] for pf in pool_json(cli, sim_root, "u")["pfs"]] == [  # type: ignore[index]
        "0000:85:00.1"]
    assert cli(*sim, "pool", "start", "t").exit_code == 4


def test_a_selector_pool_starts_again_on_its_pfs(cli: Cli, sim_root: Path) -> None:
    """An active pool keeps the PFs it has: a second start is a no-op, and after a reboot
    the pool comes back on the same PFs."""
    sim = ("--sim", str(sim_root))
    ok(cli(*sim, "pool", "define", "t", "--select", "driver=ixgbe", "--vfs", "3"))
    ok(cli(*sim, "pool", "start", "t"))
    again = json.loads(ok(cli(*sim, "pool", "start", "t", "--json")).stdout)
    assert again["already_active"] is True
    ok(cli("sim", "reboot", str(sim_root)))
    ok(cli(*sim, "pool", "start", "t"))
    assert [pf["pci"] for pf in pool_json(cli, sim_root, "t")["pfs"]] == [  # type: ignore[index]
        "0000:05:00.0", "0000:05:00.1"]


def test_one_toml_defines_the_same_pool_on_a_host_with_other_addresses(
        cli: Cli, sim_root: Path, tmp_path: Path) -> None:
    sim = ("--sim", str(sim_root))
    ok(cli(*sim, "pool", "define", "t", "--select", f"{X710},driver=i40e", "--vfs", "2",
           "--mode", "netdev", "--trust"))
    toml = ok(cli(*sim, "pool", "dumpconfig", "t")).stdout
    assert f'select = [\n    "{X710},driver=i40e",\n]' in toml and "pci =" not in toml
    other = tmp_path / "other"
    ok(cli("sim", "create", str(other), "--nic", "intel-x710@0000:3b:00.0:numa=0"))
    (tmp_path / "t.toml").write_text(toml)
    ok(cli("--sim", str(other), "pool", "define", "--file", str(tmp_path / "t.toml")))
    ok(cli("--sim", str(other), "pool", "start", "t"))
    there = pool_json(cli, other, "t")
    assert [pf["pci"] for pf in there["pfs"]] == ["0000:3b:00.0", "0000:3b:00.1"]  # type: ignore[index]
    assert ok(cli("--sim", str(other), "pool", "dumpconfig", "t")).stdout == toml


@pytest.mark.parametrize(("args", "error"), [
    (("--select", X710, "--pf", "enp5s0f0"), "error: give --pf or --select, not both: a pool "
                                            "has fixed PFs or chooses them at start"),
    (("--select", "vendor=intel"), "error: invalid --select 'vendor=intel': vendor must be "
                                   "four hex digits, such as 8086, not 'intel'"),
], ids=["both", "bad-id"])
def test_define_refuses(args: tuple[str, ...], error: str, cli: Cli, sim_root: Path) -> None:
    result = cli("--sim", str(sim_root), "pool", "define", "x", "--vfs", "2", *args)
    assert (result.exit_code, result.stderr) == (2, error + "\n")


def test_a_start_refuses_selectors_that_changed_while_it_chose(
        cli: Cli, sim_root: Path, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PFs are matched outside the store's transaction; if the pool is defined again
    with other selectors meanwhile, the start records nothing and says so."""
    sim = ("--sim", str(sim_root))
    ok(cli(*sim, "pool", "define", "t", "--select", f"{X710},pf=enp133s0f0", "--vfs", "2"))
    enumerate_pfs = ctx.sysfs.pfs

    def redefined_meanwhile(*, with_vfs: bool = False) -> list[PfSnapshot]:
        found = enumerate_pfs(with_vfs=with_vfs)
        ok(cli(*sim, "pool", "undefine", "t"))
        ok(cli(*sim, "pool", "define", "t", "--select", "driver=ixgbe", "--vfs", "2"))
        return found

    monkeypatch.setattr(ctx.sysfs, "pfs", redefined_meanwhile)
    with pytest.raises(Conflict, match="the selectors of pool 't' changed while this start "
                                       "chose its PFs; retry"):
        pools.start(ctx, "t")
    assert pool_json(cli, sim_root, "t")["pfs"] == []
    monkeypatch.setattr(ctx.sysfs, "pfs", enumerate_pfs)
    pools.start(ctx, "t")  # the retry matches the selectors it reads
    assert [pf["pci"] for pf in pool_json(cli, sim_root, "t")["pfs"]] == [  # type: ignore[index]
        "0000:05:00.0", "0000:05:00.1"]
