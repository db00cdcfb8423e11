"""Every VF field vfpool sets, through the real pyroute2 adapter, read back by iproute2; and
the real igb's refusals, as the user sees them. The VFs here need no VF driver, so they are
made by a vfio pool (autoprobe off: igbvf's probe costs time on the emulated 82576).

Enabling SR-IOV makes igb close and reopen the PF (igb_sriov_reinit): its carrier is off until
the watchdog sees the link again, and until then igb refuses every VF rate. `pool start` waits
for it, so nothing here waits itself: the carrier is read right after the start returns."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES
from vfpool.host.netlink import PyRoute2Netlink
from vfpool.model.vfconfig import VfConfig

pytestmark = pytest.mark.usefixtures("baseline")
PF0 = PF_ADDRESSES[0]


def carrier(pf: str) -> str | None:
    return realhost.read(f"/sys/class/net/{pf}/carrier")


@pytest.fixture
def two_vfs(vfpool_cli: Callable[..., Any]) -> Iterator[str]:
    pf = realhost.pf_netdev(PF0)
    assert carrier(pf) == "1"  # the baseline's PF has its link
    assert vfpool_cli("pool", "define", "f", "--pf", pf, "--vfs", "2", "--method", "sysfs",
                      "--mode", "vfio").exit_code == 0
    started = vfpool_cli("pool", "start", "f")
    link = carrier(pf)  # read at once: pool start waited for the link, not this fixture
    assert started.exit_code == 0, started.stderr
    assert realhost.numvfs(PF0) == 2
    assert link == "1", f"{pf} has no carrier right after pool start returned"
    yield pf
    vfpool_cli("pool", "destroy", "f")
    vfpool_cli("pool", "undefine", "f")


FIELDS = [
    ("mac", VfConfig(mac="02:aa:00:00:00:01"), {"mac": "02:aa:00:00:00:01"}),
    ("vlan", VfConfig(vlan=100, qos=3), {"vlan": 100, "qos": 3}),
    ("spoofchk", VfConfig(spoofchk=False), {"spoofchk": False}),
    ("trust", VfConfig(trust=True), {"trust": True}),
    ("rate", VfConfig(max_tx_rate=100), {"max_tx_rate": 100, "min_tx_rate": 0}),
]


def test_every_field_set_through_pyroute2_reads_back_in_iproute2(two_vfs: str) -> None:
    adapter = PyRoute2Netlink()
    untouched = realhost.vfinfo(PF0)[0]
    for field, config, expected in FIELDS:
        adapter.set_vf(two_vfs, 1, field, config)
        after = realhost.vfinfo(PF0)
        assert {key: after[1][key] for key in expected} == expected, field
        mine = adapter.vf_configs(two_vfs)[1].as_dict()  # vfpool's reader agrees
        assert {key: mine[key] for key in expected} == expected, field
    assert realhost.vfinfo(PF0)[0] == untouched  # only VF 1 changed


def test_vfpools_reading_of_the_vf_table_is_iproute2s(two_vfs: str) -> None:
    """vfpool decodes the kernel's VF table itself (vfpool.host.rtnl): every field of every
    VF, and one VF's alone, as iproute2 prints them."""
    adapter = PyRoute2Netlink()
    adapter.set_vf(two_vfs, 1, "vlan", VfConfig(vlan=7, qos=1))
    adapter.set_vf(two_vfs, 1, "trust", VfConfig(trust=True))
    theirs = realhost.vfinfo(PF0)
    assert sorted(theirs) == [0, 1]
    mine = {index: config.as_dict() for index, config in adapter.vf_configs(two_vfs).items()}
    assert mine == theirs
    for index, fields in theirs.items():
        one = adapter.vf_config(two_vfs, index)
        assert one is not None and one.as_dict() == fields
    assert adapter.vf_config(two_vfs, 2) is None  # at numvfs: the PF reports no such VF


REFUSALS = [
    ("link_state", VfConfig(link_state="disable"), errno.EOPNOTSUPP, "does not implement"),
    ("rate", VfConfig(min_tx_rate=10, max_tx_rate=100), errno.EINVAL, "no minimum VF rate"),
    ("rate", VfConfig(max_tx_rate=5000), errno.EINVAL, "above the PF's link speed"),
    ("vlan", VfConfig(vlan=4096), errno.EINVAL, ""),
]


def test_refusals_arrive_as_oserrors_that_name_igb_and_why(two_vfs: str) -> None:
    before = realhost.vfinfo(PF0)
    for field, config, code, why in REFUSALS:
        with pytest.raises(OSError) as caught:
            PyRoute2Netlink().set_vf(two_vfs, 0, field, config)
        assert caught.value.errno == code, field
        assert "driver igb refused" in str(caught.value) and why in str(caught.value)
    # igb_ndo_set_vf_bw() refuses any rate while the PF link is down.
    realhost.run("ip", "link", "set", two_vfs, "down")
    with pytest.raises(OSError) as caught:
        PyRoute2Netlink().set_vf(two_vfs, 0, "rate", VfConfig(max_tx_rate=100))
    assert caught.value.errno == errno.EINVAL
    assert "the PF link is down" in str(caught.value)
    assert realhost.vfinfo(PF0) == before  # nothing was applied


def test_a_rate_lease_right_after_pool_start_succeeds(vfpool_cli: Callable[..., Any]) -> None:
    pf = realhost.pf_netdev(PF0)
    assert vfpool_cli("pool", "define", "q", "--pf", pf, "--vfs", "1", "--method", "sysfs",
                      "--mode", "vfio", "--max-tx-rate", "100").exit_code == 0
    started = vfpool_cli("pool", "start", "q")
    link = carrier(pf)
    assert started.exit_code == 0, started.stderr
    assert link == "1", f"{pf} has no carrier right after pool start returned"
    leased = vfpool_cli("lease", "acquire", "q", "--owner", "vm1", "--json")
    assert leased.exit_code == 0, leased.stderr
    assert realhost.vfinfo(PF0)[0]["max_tx_rate"] == 100
    lease = leased.json()[0]
    released = vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"])
    assert released.exit_code == 0, released.stderr
    assert realhost.vfinfo(PF0)[0]["max_tx_rate"] == 0


def test_a_lease_refused_by_igb_names_the_driver(vfpool_cli: Callable[..., Any]) -> None:
    pf = realhost.pf_netdev(PF0)
    (realhost.DEVICES / PF0 / "sriov_drivers_autoprobe").write_text("0\n")
    assert vfpool_cli("pool", "define", "r", "--pf", pf, "--vfs", "1", "--method", "sysfs",
                      "--mode", "vfio", "--max-tx-rate", "100").exit_code == 0
    assert vfpool_cli("pool", "start", "r").exit_code == 0
    realhost.run("ip", "link", "set", pf, "down")
    result = vfpool_cli("lease", "acquire", "r", "--owner", "vm1")
    assert result.exit_code == 1
    assert realhost.vfinfo(PF0)[0]["max_tx_rate"] == 0  # undone
    assert "igb" in result.stderr, result.stderr
