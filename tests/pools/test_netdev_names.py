"""A netdev whose name is not UTF-8. Linux takes any bytes in an interface name but '/', ':',
white space and NUL; Python lists the other bytes as lone surrogates, which no database text
and no JSON can hold. vfpool shows and records such a name with those bytes as ``\\xNN``
(host/sysfs.py ``shown_name``): a pool start, a report and a lease go on, where the store
refused the name with an internal error before.

Default simulated host: 82599 (ixgbe) at 0000:05:00.0 = enp5s0f0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.leases.test_acquire import IXGBE0, host_vf, start_pool
from vfpool.host.sysfs import Sysfs, shown_name
from vfpool.model.pci import PciAddress
from vfpool.service import leases, pools
from vfpool.service.context import Context
from vfpool.sim.host import SimHost

PF = "enp5s0f0"
RAW = b"vf\xff\xfe1"  # not UTF-8
SHOWN = "vf\\xff\\xfe1"


@pytest.mark.parametrize(("name", "shown"), [
    ("enp5s0f0v1", "enp5s0f0v1"),
    ("vé1", "vé1"),  # UTF-8, not ASCII: as it is
    (os.fsdecode(RAW), SHOWN),
    (os.fsdecode(b"a\\xff\xff"), "a\\xff\\xff"),  # a backslash of its own stays one
])
def test_a_name_is_shown_as_it_is_unless_its_bytes_are_not_utf8(name: str, shown: str) -> None:
    assert shown_name(name) == shown
    shown_name(name).encode()  # any text column takes it


def rename_netdev(root: Path, old: str, new: bytes) -> None:
    """Rename a netdev in the simulated sysfs as `ip link set OLD name NEW` would show it:
    the device's ``net/`` entry and its ``class/net`` link."""
    link = root / "sys/class/net" / old
    target = os.readlink(link)
    device_net = (link.parent / target).resolve().parent
    os.rename(bytes(device_net / old), bytes(device_net) + b"/" + new)
    link.unlink()
    os.symlink(os.fsencode(os.path.dirname(target)) + b"/" + new,
               bytes(link.parent) + b"/" + new)


def test_a_vf_netdev_whose_name_is_not_utf8_is_recorded_and_leased(
        ctx: Context, sim: SimHost, cli: Any) -> None:
    start_pool(ctx, "p", PF, vfs=2)
    pools.destroy(ctx, "p", keep_vfs=True)
    [name] = host_vf(sim, IXGBE0, 1).netdevs
    rename_netdev(sim.root, name.name, RAW)
    assert [n.name for n in host_vf(sim, IXGBE0, 1).netdevs] == [SHOWN]

    pools.start(ctx, "p")  # refused with UnicodeEncodeError before
    report = cli("--sim", str(sim.root), "--json", "report")
    assert report.exit_code == 0, report.stderr
    vfs = {vf["pci"]: vf["netdev"] for vf in json.loads(report.stdout)["vfs"]}
    assert vfs[str(host_vf(sim, IXGBE0, 1).pci)] == SHOWN
    snapshot = Sysfs(sim).pf(PciAddress.parse(IXGBE0))
    assert [netdev.name for vf in snapshot.vfs for netdev in vf.netdevs][1] == SHOWN

    records = leases.acquire(ctx, "p", "vm1", count=2)
    assert [r.state for r in records] == ["active", "active"]
    for record in records:
        leases.release(ctx, record.id, token=record.token)
    assert pools.info(ctx, "p").vfs.as_dict()["free"] == 2
