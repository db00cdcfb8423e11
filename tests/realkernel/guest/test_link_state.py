"""VF link state on the real igb: igb_netdev_ops has no ndo_set_vf_link_state, so the kernel
answers EOPNOTSUPP (test_vf_fields.py), and vfpool must refuse a link state on an igb pool up
front, naming the driver, while a pool that leaves link state alone leases as usual. The kernel
is read back with `ip -j -d link`. The VFs need no VF driver here (vfio mode sizes with
autoprobe off)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES

pytestmark = pytest.mark.usefixtures("baseline")
PF0 = PF_ADDRESSES[0]
Cli = Callable[..., Any]


def ok(result: Any) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.stdout}"
    return result


def refused_naming_igb(result: Any) -> None:
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr}{result.stdout}"
    assert "igb" in result.stderr and "link" in result.stderr, result.stderr


def test_link_state_enable_on_an_igb_pool_is_refused_naming_igb(vfpool_cli: Cli) -> None:
    pf = realhost.pf_netdev(PF0)
    defined = vfpool_cli("pool", "define", "ls", "--pf", pf, "--vfs", "1", "--method",
                         "sysfs", "--mode", "vfio", "--link-state", "enable")
    if defined.exit_code != 0:  # refused when defined: as good, nothing exists to lease
        refused_naming_igb(defined)
        assert realhost.numvfs(PF0) == 0
        return
    ok(vfpool_cli("pool", "start", "ls"))
    before = realhost.vfinfo(PF0)
    refused_naming_igb(vfpool_cli("lease", "acquire", "ls", "--owner", "vm1"))
    assert ok(vfpool_cli("lease", "list", "--json")).json() == []
    info = ok(vfpool_cli("pool", "info", "ls", "--json")).json()
    assert info["vfs"]["free"] == info["vfs"]["total"] == 1
    assert realhost.vfinfo(PF0) == before  # the kernel's VF is as it was: link-state auto
    assert before[0]["link_state"] == "auto"


def test_a_default_igb_pool_leases_and_a_lease_link_state_is_refused(vfpool_cli: Cli) -> None:
    pf = realhost.pf_netdev(PF0)
    ok(vfpool_cli("pool", "define", "d", "--pf", pf, "--vfs", "1", "--method", "sysfs",
                  "--mode", "vfio"))
    ok(vfpool_cli("pool", "start", "d"))
    refused_naming_igb(vfpool_cli("lease", "acquire", "d", "--owner", "vm1",
                                  "--link-state", "disable"))
    assert ok(vfpool_cli("lease", "list", "--json")).json() == []
    lease = ok(vfpool_cli("lease", "acquire", "d", "--owner", "vm1", "--json")).json()[0]
    assert realhost.driver(lease["vf"]["pci"]) == "vfio-pci"
    # vfpool left the link state alone on igb: the kernel still shows auto.
    assert realhost.vfinfo(PF0)[lease["vf"]["index"]]["link_state"] == "auto"
    ok(vfpool_cli("lease", "release", str(lease["id"]), "--token", lease["token"]))
    assert realhost.vfinfo(PF0)[lease["vf"]["index"]]["link_state"] == "auto"
