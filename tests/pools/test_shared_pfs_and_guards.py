"""PFs split between pools by VF ranges, and the guards added around them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pools import I40E1, define, host_vfs, numvfs
from vfpool.errors import InvalidInput
from vfpool.model.drivers import DriverInfo
from vfpool.model.pci import PciAddress
from vfpool.model.pool import PfRef, VfDefaults, check_member
from vfpool.model.snapshot import PfSnapshot
from vfpool.service import pools
from vfpool.service.context import Context
from vfpool.service.results import VfCounts
from vfpool.sim.host import SimHost


@pytest.mark.parametrize("first", ["low", "high"])
def test_pools_sharing_a_pf_start_in_either_order(sim: SimHost, ctx: Context,
                                                  first: str) -> None:
    define(ctx, "low", "enp133s0f1#0-7", vfs=8)
    define(ctx, "high", "enp133s0f1#8-15", vfs=8)
    second = "high" if first == "low" else "low"
    pools.start(ctx, first)
    before = host_vfs(sim, I40E1)
    record = pools.start(ctx, second)
    # The first start sized the PF for both pools, so the second needed no N→0→M.
    assert numvfs(sim, I40E1) == 16
    assert host_vfs(sim, I40E1) == before
    assert record.changed == ()
    counts = {name: pools.info(ctx, name).vfs.free for name in ("low", "high")}
    assert counts == {"low": 8, "high": 8}


def test_an_inactive_pool_has_no_leasable_vfs_even_with_keep_vfs(sim: SimHost,
                                                                  ctx: Context) -> None:
    define(ctx, "a", "enp133s0f0", vfs=3)
    pools.start(ctx, "a")
    assert pools.info(ctx, "a").vfs.free == 3
    pools.destroy(ctx, "a", keep_vfs=True)
    record = pools.info(ctx, "a")
    assert record.vfs == VfCounts()
    assert record.pfs[0].numvfs == 3  # the VFs are still on the host


def test_a_netdev_mode_needs_a_known_vf_net_driver() -> None:
    spec = pools.parse_spec("p", ["enp5s0f0"], 2, "sysfs", "macvtap", VfDefaults())
    unknown = DriverInfo("vendor_nic")  # a driver vfpool has no table entry for
    with pytest.raises(InvalidInput, match=r"^driver vendor_nic has no VF net driver vfpool "
                                           r"knows, so it cannot do --mode macvtap; use "
                                           r"--mode vfio$"):
        check_member(spec, PfRef("enp5s0f0"), _pf(), unknown, "sysfs")
    vfio = pools.parse_spec("p", ["enp5s0f0"], 2, "sysfs", "vfio", VfDefaults())
    check_member(vfio, PfRef("enp5s0f0"), _pf(), unknown, "sysfs")


def _pf() -> PfSnapshot:
    return PfSnapshot(pci=PciAddress.parse("0000:05:00.0"), vendor=0x1234, device=0x5678,
                      driver="vendor_nic", totalvfs=8, numvfs=0, offset=1, stride=1,
                      vf_device=None, numa_node=0, drivers_autoprobe=True)


def test_sim_create_in_an_unwritable_directory_is_exit_6(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root, so the test cannot switch to user nobody")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    tmp_path.chmod(0o755)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         str(Path(sys.executable).parent / "vfpool"), "sim", "create", str(locked / "host")],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 6
    assert result.stderr == (f"error: cannot create the simulated host in {locked}/host: "
                             "permission denied\n")
