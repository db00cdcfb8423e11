"""NIC profiles, NIC specs and where the simulator places cards, PFs and VF ranges."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vfpool.errors import Conflict, InvalidInput
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress, vf_address
from vfpool.sim.host import SimHost
from vfpool.sim.profiles import PROFILES
from vfpool.sim.spec import NicSpec, layout_card, layout_host

# The NIC families of SRIOV-FACTS.md:
# (profile, vendor, PF device, VF device, PF driver, VF driver, totalvfs, offset, stride, PFs,
#  ports per PF)
FAMILIES = [
    ("intel-82576", 0x8086, 0x10C9, 0x10CA, "igb", "igbvf", 7, 128, 2, 2, 1),
    ("intel-i350", 0x8086, 0x1521, 0x1520, "igb", "igbvf", 7, 128, 4, 2, 1),
    ("intel-82599", 0x8086, 0x10FB, 0x10ED, "ixgbe", "ixgbevf", 63, 128, 2, 2, 1),
    ("intel-x710", 0x8086, 0x1572, 0x154C, "i40e", "iavf", 64, 16, 1, 2, 1),
    ("intel-e810", 0x8086, 0x159B, 0x1889, "ice", "iavf", 64, 8, 1, 2, 1),
    ("mellanox-cx5", 0x15B3, 0x1017, 0x1018, "mlx5_core", "mlx5_core", 8, 2, 1, 2, 1),
    ("mellanox-cx3", 0x15B3, 0x1003, 0x1004, "mlx4_core", "mlx4_core", 63, 1, 1, 1, 2),
]
FAMILY_FIELDS = ("name, vendor, pf_device, vf_device, pf_driver, vf_driver, totalvfs, offset, "
                 "stride, pfs, ports_per_pf")


@pytest.mark.parametrize(FAMILY_FIELDS, FAMILIES)
def test_profile_has_the_facts_doc_values(name: str, vendor: int, pf_device: int,
                                          vf_device: int, pf_driver: str, vf_driver: str,
                                          totalvfs: int, offset: int, stride: int, pfs: int,
                                          ports_per_pf: int) -> None:
    profile = PROFILES[name]
    assert (profile.vendor, profile.pf_device, profile.vf_device) == (vendor, pf_device,
                                                                      vf_device)
    assert (profile.pf_driver, profile.vf_driver) == (pf_driver, vf_driver)
    assert (profile.totalvfs, profile.offset, profile.stride) == (totalvfs, offset, stride)
    assert (profile.pfs, profile.ports_per_pf) == (pfs, ports_per_pf)


def test_only_mlx4_lacks_a_sysfs_resize_path() -> None:
    assert {name for name, p in PROFILES.items() if not p.sysfs_resize} == {"mellanox-cx3"}
    assert {name: p.module_param for name, p in PROFILES.items() if p.module_param} == {
        "intel-82576": "max_vfs", "intel-i350": "max_vfs", "intel-82599": "max_vfs",
        "mellanox-cx3": "num_vfs"}


@pytest.mark.parametrize(FAMILY_FIELDS, FAMILIES)
def test_simulated_card_shows_the_profile_in_sysfs(
        make_sim: Callable[..., SimHost], name: str, vendor: int, pf_device: int,
        vf_device: int, pf_driver: str, vf_driver: str, totalvfs: int, offset: int,
        stride: int, pfs: int, ports_per_pf: int) -> None:
    sysfs = Sysfs(make_sim(f"{name}@0000:07:00.0"))
    found = sysfs.pfs()
    assert [str(pf.pci) for pf in found] == [f"0000:07:00.{func}" for func in range(pfs)]
    first = found[0]
    assert (first.vendor, first.device, first.vf_device) == (vendor, pf_device, vf_device)
    assert (first.driver, first.totalvfs, first.offset, first.stride) == (pf_driver, totalvfs,
                                                                         offset, stride)
    assert len(first.netdevs) == ports_per_pf
    assert first.model == PROFILES[name].card


# --------------------------------------------------------------------------- NicSpec.parse
VALID_SPECS = [
    ("intel-82599", "intel-82599", None, 0, 63),
    ("intel-82599@0000:05:00.0", "intel-82599", "0000:05:00.0", 0, 63),
    ("intel-82599@05:00.0", "intel-82599", "0000:05:00.0", 0, 63),
    ("intel-x710@0000:85:00.0:numa=1", "intel-x710", "0000:85:00.0", 1, 64),
    ("intel-x710:numa=1", "intel-x710", None, 1, 64),
    ("mellanox-cx5:totalvfs=16", "mellanox-cx5", None, 0, 16),
    ("mellanox-cx5@0000:01:00.0:numa=1:totalvfs=16", "mellanox-cx5", "0000:01:00.0", 1, 16),
    ("intel-x710:totalvfs=128:numa=-1", "intel-x710", None, -1, 128),
    ("intel-82576:totalvfs=8", "intel-82576", None, 0, 8),
    ("intel-e810:numa=63:totalvfs=256", "intel-e810", None, 63, 256),
    ("intel-i350:totalvfs=1", "intel-i350", None, 0, 1),
    ("mellanox-cx3@0000:07:00.7", "mellanox-cx3", "0000:07:00.7", 0, 63),  # one PF fits
]


@pytest.mark.parametrize(("text", "profile", "pci", "numa", "totalvfs"), VALID_SPECS)
def test_nic_spec_parse(text: str, profile: str, pci: str | None, numa: int,
                        totalvfs: int) -> None:
    spec = NicSpec.parse(text)
    assert spec.profile is PROFILES[profile]
    assert (str(spec.pci) if spec.pci else None) == pci
    assert (spec.numa_node, spec.totalvfs) == (numa, totalvfs)


INVALID_SPECS = [
    ("intel-99999", "unknown NIC profile 'intel-99999'"),
    ("broadcom-57414", "unknown NIC profile"),
    ("", "invalid NIC spec"),
    ("Intel-82599", "invalid NIC spec"),
    ("intel-82599@", "invalid NIC spec"),
    ("intel-82599@0000:05:00", "invalid NIC spec"),
    ("intel-82599@zz:00.0", "invalid NIC spec"),
    ("intel-82599@0000:05:20.0", "slot 0x20"),
    ("intel-82599@0000:05:00.7", "2 PFs from function 7 do not fit"),
    ("intel-82599:speed=10", "unknown option 'speed'"),
    ("intel-82599:numa", "invalid NIC spec"),
    ("intel-82599:numa=x", "numa must be an integer from -1 to 63"),
    ("intel-82599:numa=64", "numa must be an integer from -1 to 63"),
    ("intel-82599:numa=-2", "numa must be an integer from -1 to 63"),
    ("intel-82599:numa=", "numa must be an integer"),
    ("intel-82599:totalvfs=0", "totalvfs must be an integer from 1 to 256"),
    ("intel-82599:totalvfs=257", "totalvfs must be an integer from 1 to 256"),
    ("intel-82599:totalvfs=many", "totalvfs must be an integer"),
    ("intel-82599 intel-x710", "invalid NIC spec"),
]


@pytest.mark.parametrize(("text", "message"), INVALID_SPECS)
def test_nic_spec_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        NicSpec.parse(text)
    assert message in str(excinfo.value)
    assert excinfo.value.exit_code == 2


def test_unknown_nic_is_rejected_by_create(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown NIC profile"):
        SimHost.create(tmp_path / "host", ["intel-99999"])
    assert not (tmp_path / "host").exists()


# --------------------------------------------------------------------------- placement
def test_default_host_is_dual_82599_on_numa0_and_dual_x710_on_numa1(sysfs: Sysfs) -> None:
    found = {str(pf.pci): pf for pf in sysfs.pfs()}
    assert sorted(found) == ["0000:05:00.0", "0000:05:00.1", "0000:85:00.0", "0000:85:00.1"]
    for bdf in ("0000:05:00.0", "0000:05:00.1"):
        assert (found[bdf].driver, found[bdf].device, found[bdf].numa_node) == ("ixgbe",
                                                                               0x10FB, 0)
    for bdf in ("0000:85:00.0", "0000:85:00.1"):
        assert (found[bdf].driver, found[bdf].device, found[bdf].numa_node) == ("i40e",
                                                                               0x1572, 1)
    assert [pf.netdev for pf in found.values()] == ["enp5s0f0", "enp5s0f1", "enp133s0f0",
                                                    "enp133s0f1"]


def test_default_host_has_the_onboard_non_sriov_nic(sim: SimHost, sysfs: Sysfs) -> None:
    onboard = PciAddress.parse("0000:00:1f.6")
    assert onboard in sysfs.pci_addresses()
    assert onboard not in [pf.pci for pf in sysfs.pfs()]
    assert sysfs.netdev_device("eno1") == onboard


@pytest.mark.parametrize(("spec", "pfs", "netdevs"), [
    ("intel-x710@0000:0a:00.2", ["0000:0a:00.2", "0000:0a:00.3"], ["enp10s0f2", "enp10s0f3"]),
    ("intel-82599@0000:3b:00.0", ["0000:3b:00.0", "0000:3b:00.1"], ["enp59s0f0", "enp59s0f1"]),
    ("mellanox-cx5@0000:01:00.0", ["0000:01:00.0", "0000:01:00.1"],
     ["enp1s0f0np0", "enp1s0f1np0"]),
    ("mellanox-cx3@0000:07:00.0", ["0000:07:00.0"], ["enp7s0"]),
])
def test_bdf_names_pf0_and_other_ports_follow(make_sim: Callable[..., SimHost], spec: str,
                                              pfs: list[str], netdevs: list[str]) -> None:
    found = Sysfs(make_sim(spec)).pfs()
    assert [str(pf.pci) for pf in found] == pfs
    assert [pf.netdev for pf in found] == netdevs


@pytest.mark.parametrize(("spec", "offsets"), [
    ("intel-x710@0000:85:00.0", [16, 79]),  # 16 + 64 - 1
    ("intel-x710@0000:85:00.0:totalvfs=32", [16, 47]),
    ("intel-e810@0000:3b:00.0", [8, 71]),
    ("mellanox-cx5@0000:01:00.0", [2, 9]),  # "PF1 offset 9 when PF0 has 8"
    ("mellanox-cx5@0000:01:00.0:totalvfs=16", [2, 17]),
    ("intel-82576@0000:03:00.0", [128, 128]),
    ("intel-i350@0000:03:00.0", [128, 128]),
    ("intel-82599@0000:05:00.0", [128, 128]),
])
def test_pf_offsets(make_sim: Callable[..., SimHost], spec: str, offsets: list[int]) -> None:
    found = Sysfs(make_sim(spec)).pfs()
    assert [pf.offset for pf in found] == offsets


@pytest.mark.parametrize("spec", ["intel-x710@0000:85:00.0", "mellanox-cx5@0000:01:00.0",
                                  "intel-e810@0000:3b:00.0:totalvfs=100"])
def test_stride1_cards_put_later_pf_ranges_after_earlier_ones(spec: str) -> None:
    parsed = NicSpec.parse(spec)
    assert parsed.pci is not None
    pf0, pf1 = layout_card(parsed, parsed.pci).pfs
    last_of_pf0 = vf_address(pf0.pci, pf0.offset, pf0.stride, pf0.totalvfs - 1)
    first_of_pf1 = vf_address(pf1.pci, pf1.offset, pf1.stride, 0)
    assert first_of_pf1.routing_id == last_of_pf0.routing_id + 1


@pytest.mark.parametrize(("spec", "pf0_vfs", "pf1_vfs"), [
    ("intel-82576@0000:03:00.0", ["0000:03:10.0", "0000:03:10.2", "0000:03:10.4"],
     ["0000:03:10.1", "0000:03:10.3", "0000:03:10.5"]),
    ("intel-i350@0000:03:00.0", ["0000:03:10.0", "0000:03:10.4", "0000:03:11.0"],
     ["0000:03:10.1", "0000:03:10.5", "0000:03:11.1"]),
    ("intel-82599@0000:05:00.0", ["0000:05:10.0", "0000:05:10.2", "0000:05:10.4"],
     ["0000:05:10.1", "0000:05:10.3", "0000:05:10.5"]),
])
def test_interleaved_cards_share_offset_and_interleave(spec: str, pf0_vfs: list[str],
                                                       pf1_vfs: list[str]) -> None:
    parsed = NicSpec.parse(spec)
    assert parsed.pci is not None
    pf0, pf1 = layout_card(parsed, parsed.pci).pfs
    assert [str(vf_address(pf0.pci, pf0.offset, pf0.stride, i)) for i in range(3)] == pf0_vfs
    assert [str(vf_address(pf1.pci, pf1.offset, pf1.stride, i)) for i in range(3)] == pf1_vfs


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_vf_ranges_of_one_card_do_not_overlap(name: str) -> None:
    card = layout_card(NicSpec.parse(name), PciAddress.parse("0000:05:00.0"))
    ranges = [{vf_address(pf.pci, pf.offset, pf.stride, i).routing_id
               for i in range(pf.totalvfs)} | {pf.pci.routing_id} for pf in card.pfs]
    assert sum(len(r) for r in ranges) == len(set().union(*ranges))
    assert len(ranges[0]) == card.pfs[0].totalvfs + 1


@pytest.mark.parametrize("nics", [
    ["intel-82599@0000:05:00.0", "intel-x710@0000:05:00.0"],  # the same address
    ["intel-82599@0000:05:00.0", "intel-x710@0000:05:10.0"],  # on 82599 PF0's VF0
    ["intel-82599@0000:05:00.0", "intel-i350@0000:05:1f.0"],  # inside the VF range
    ["intel-x710@0000:85:00.0", "mellanox-cx3@0000:85:09.7"],  # on X710 PF0's last VF
    ["mellanox-cx3@0000:00:1f.6"],  # the onboard NIC's address
])
def test_overlapping_nics_are_rejected(tmp_path: Path, nics: list[str]) -> None:
    with pytest.raises(InvalidInput, match="overlaps the PCI addresses of another device"):
        SimHost.create(tmp_path / "host", nics)
    assert not (tmp_path / "host").exists()


def test_adjacent_nics_are_accepted(make_sim: Callable[..., SimHost]) -> None:
    # 82599 PF1's last VF is 05:1f.5 (rid 0x5fd); 05:1f.6 is free.
    sim = make_sim("intel-82599@0000:05:00.0", "mellanox-cx3@0000:05:1f.6")
    assert [str(pf.pci) for pf in Sysfs(sim).pfs()] == ["0000:05:00.0", "0000:05:00.1",
                                                        "0000:05:1f.6"]


def test_nic_past_bus_ff_is_rejected_naming_the_nic(tmp_path: Path) -> None:
    # 82599 PF0 at ff:10.0 (rid 0xff80) would put VF0 at rid 0xff80 + 128 = 0x10000.
    with pytest.raises(InvalidInput) as excinfo:
        SimHost.create(tmp_path / "host", ["intel-82599@0000:ff:10.0"])
    assert str(excinfo.value) == ("NIC intel-82599 at 0000:ff:10.0: its VFs would run past "
                                  "bus ff")
    assert not (tmp_path / "host").exists()


def test_x710_pf1_vfs_follow_pf0_in_the_tree(sim: SimHost, sysfs: Sysfs) -> None:
    pf1 = PciAddress.parse("0000:85:00.1")
    sim.write_attr(sysfs.attr(pf1, "sriov_numvfs"), "2")
    assert [(str(vf.pci), vf.netdev) for vf in sysfs.pf(pf1).vfs] == [
        ("0000:85:0a.0", "enp133s0f1v0"), ("0000:85:0a.1", "enp133s0f1v1")]


def test_nics_without_bdf_get_distinct_free_buses(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-i350", "mellanox-cx5", "intel-e810", "intel-82599@0000:05:00.0")
    found = Sysfs(sim).pfs()
    by_device: dict[int, list[PciAddress]] = {}
    for pf in found:
        by_device.setdefault(pf.device, []).append(pf.pci)
    # The explicit 82599 keeps bus 05; the others follow it, one bus each.
    assert by_device[0x10FB] == [PciAddress.parse("0000:05:00.0"),
                                 PciAddress.parse("0000:05:00.1")]
    buses = {device: {a.bus for a in addresses} for device, addresses in by_device.items()}
    assert all(len(bus_set) == 1 for bus_set in buses.values())
    assert len({next(iter(b)) for b in buses.values()}) == 4
    assert buses[0x1521] == {0x06}  # I350: first free bus after the 82599
    # No address of any card (PFs and every possible VF) collides with another's.
    layouts = layout_host([NicSpec.parse(s["profile"] + "@" + s["pci"] + f":totalvfs="
                                         f"{s['totalvfs']}") for s in sim.state()["nics"]],
                          {PciAddress.parse("0000:00:1f.6").routing_id})
    ids = [layout.routing_ids() for layout in layouts]
    assert sum(len(i) for i in ids) == len(set().union(*ids))


def test_auto_placement_skips_the_buses_that_vf_ranges_use() -> None:
    layouts = layout_host([NicSpec.parse("intel-e810"), NicSpec.parse("intel-e810")], set())
    first, second = (layout.pfs[0].pci for layout in layouts)
    assert str(first) == "0000:05:00.0"
    # E810 PF0 at 05:00.0: VFs from rid 0x508 for 2x64 -> last 0x587, still bus 05.
    assert str(second) == "0000:06:00.0"
    big = layout_host([NicSpec.parse("intel-82599:totalvfs=256"),
                       NicSpec.parse("intel-i350")], set())
    top_bus = max(rid >> 8 for rid in big[0].routing_ids())
    assert big[1].pfs[0].pci.bus == top_bus + 1


# --------------------------------------------------------------------------- create
def test_create_refuses_a_non_empty_directory_that_is_not_a_sim(tmp_path: Path) -> None:
    root = tmp_path / "precious"
    root.mkdir()
    (root / "notes.txt").write_text("keep me\n")
    with pytest.raises(Conflict, match="not empty"):
        SimHost.create(root)
    with pytest.raises(Conflict, match="not a simulated host"):
        SimHost.create(root, force=True)
    assert (root / "notes.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_create_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(Conflict):
        SimHost.create(target, force=True)
    assert target.read_text() == "x"


def test_create_into_an_empty_directory(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert len(Sysfs(SimHost.create(root)).pfs()) == 4


def test_create_refuses_an_existing_sim_without_force(sim_root: Path) -> None:
    with pytest.raises(Conflict, match="--force"):
        SimHost.create(sim_root, ["mellanox-cx3"])
    assert len(Sysfs(SimHost(sim_root)).pfs()) == 4


def test_force_rebuilds_an_existing_sim(sim_root: Path) -> None:
    old = SimHost(sim_root)
    old_boot = old.boot_id()
    pf = Sysfs(old).attr(PciAddress.parse("0000:05:00.0"), "sriov_numvfs")
    old.write_attr(pf, "4")
    rebuilt = SimHost.create(sim_root, ["mellanox-cx3@0000:07:00.0"], force=True)
    sysfs = Sysfs(rebuilt)
    assert [str(p.pci) for p in sysfs.pfs()] == ["0000:07:00.0"]
    assert not (sim_root / "sys/bus/pci/devices/0000:05:00.0").exists()
    assert not (sim_root / "sys/class/net/enp5s0f0v0").exists()
    assert rebuilt.boot_id() != old_boot
    state = json.loads((sim_root / "sim.json").read_text())
    assert [nic["profile"] for nic in state["nics"]] == ["mellanox-cx3"]


def test_cli_create_refuses_a_foreign_directory_even_with_force(
        cli: Callable[..., CliResult], tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "db.sqlite").write_text("")
    result = cli("sim", "create", str(root), "--force")
    assert result.exit_code == 4
    assert "error: refusing to replace" in result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["db.sqlite"]
