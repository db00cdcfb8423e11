"""`pool start` and `pool resize` wait for a PF's link that sizing took down (igb closes and
reopens the PF to enable or disable SR-IOV: igb_sriov_reinit), so that a rate lease right
after them works; bounded, and never an error: a link that stays down is reported on stderr
and in a `pf.link_down` event. A PF that had no carrier before is not waited for."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pools import actions, define, events, pool_state
from vfpool.host import sriov
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.service import leases, pools
from vfpool.service.context import Context
from vfpool.sim.host import SimHost

PF0, PF1 = "0000:03:00.0", "0000:03:00.1"
NETDEV0, NETDEV1 = "enp3s0f0", "enp3s0f1"
T = 2.0  # seconds to wait for VFs


@pytest.fixture
def igb(make_sim: Callable[..., SimHost],
        make_ctx: Callable[..., Context]) -> tuple[SimHost, Context]:
    """A dual-port 82576 (igb: rates only with the PF link up), and a Context on it."""
    sim = make_sim("intel-82576@0000:03:00.0")
    return sim, make_ctx(sim)


def carrier(sim: SimHost, pci: str = PF0) -> bool | None:
    return sriov.carrier(Sysfs(sim), PciAddress.parse(pci))


def test_start_waits_for_the_link_and_a_rate_lease_then_works(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    sim.set_link_bounce(NETDEV0, 0.5)
    define(ctx, "a", NETDEV0, vfs=2, method="sysfs", max_tx_rate=100)
    record = pools.start(ctx, "a", timeout=T)
    assert carrier(sim) is True  # read at once: start returned only with the link back
    assert "warnings" not in record.document() and "pf.link_down" not in actions(ctx)
    [lease] = leases.acquire(ctx, "a", "vm1")
    assert sim.vf_configs(NETDEV0)[lease.vf.index].max_tx_rate == 100


def test_resize_waits_for_the_link_too(igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    define(ctx, "a", NETDEV0, vfs=1, method="sysfs", max_tx_rate=100)
    pools.start(ctx, "a", timeout=T)
    sim.set_link_bounce(NETDEV0, 0.5)
    pools.resize(ctx, "a", 3, timeout=T)
    assert carrier(sim) is True
    assert len(leases.acquire(ctx, "a", "vm1", count=3)) == 3


def test_a_link_that_never_returns_is_reported_and_the_pool_still_starts(
        igb: tuple[SimHost, Context], caplog: pytest.LogCaptureFixture) -> None:
    sim, ctx = igb
    sim.set_link_bounce(NETDEV0, None)
    define(ctx, "a", NETDEV0, vfs=2, method="sysfs")
    with caplog.at_level(logging.WARNING, logger="vfpool.service.pools"):
        record = pools.start(ctx, "a", timeout=T, link_timeout=0.3)
    assert pool_state(ctx, "a") == "active" and record.vfs.free == 2
    [warning] = record.warnings
    assert warning == (f"warning: PF {PF0} ({NETDEV0}): link still down 0.3 s after sizing; "
                       "igb refuses VF rates until its link is up")
    assert [entry.getMessage() for entry in caplog.records] == [warning]
    [event] = [e for e in events(ctx) if e.action == "pf.link_down"]
    assert (event.pool, event.pf) == ("a", PF0)
    assert event.detail == {"netdev": NETDEV0, "why": "no carrier", "waited": 0.3,
                            "message": warning}
    assert carrier(sim) is False


def test_a_pf_without_carrier_before_sizing_is_not_waited_for(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    sim.set_operstate(NETDEV0, "down")  # the cable is out
    sim.set_link_bounce(NETDEV0, None)
    define(ctx, "a", NETDEV0, vfs=2, method="sysfs")
    record = pools.start(ctx, "a", timeout=T, link_timeout=30.0)
    assert "warnings" not in record.document() and "pf.link_down" not in actions(ctx)
    assert carrier(sim) is False


def test_only_the_sized_pf_is_waited_for(igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    sim.set_link_bounce(NETDEV1, None)  # would never come back, but PF1 is not sized
    define(ctx, "a", NETDEV0, vfs=1, method="sysfs")
    assert not pools.start(ctx, "a", timeout=T, link_timeout=30.0).warnings
    assert (carrier(sim, PF0), carrier(sim, PF1)) == (True, True)


def test_a_reload_brings_back_up_the_ports_that_had_their_link(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    sim.set_link(NETDEV1, up=False)  # down before: left down
    define(ctx, "m", NETDEV0, vfs=2, method="module-param")
    record = pools.start(ctx, "m", timeout=T, link_timeout=30.0)
    # `modprobe -r igb; modprobe igb` brings igb's ports back administratively down.
    assert (carrier(sim, PF0), carrier(sim, PF1)) == (True, None)
    assert "warnings" not in record.document() and "pf.link_down" not in actions(ctx)


def test_a_port_that_cannot_be_brought_up_is_reported_without_waiting(
        igb: tuple[SimHost, Context]) -> None:
    sim, ctx = igb
    sim.set_link(NETDEV1, up=False)
    sim.inject_fault(f"netlink:{NETDEV0}", errno_code=errno.EIO, count=1000)
    define(ctx, "m", NETDEV0, vfs=2, method="module-param")
    record = pools.start(ctx, "m", timeout=0.3, link_timeout=30.0)
    assert carrier(sim, PF0) is None
    assert record.warnings == (
        f"warning: PF {PF0} ({NETDEV0}): link down after sizing (the port is administratively "
        f"down; `ip link set {NETDEV0} up` brings it back); igb refuses VF rates until its "
        "link is up",)
    assert [e.detail["why"] for e in events(ctx) if e.action == "pf.link_down"] == [
        "administratively down"]


def test_the_cli_says_so_on_stderr_and_exits_0(igb: tuple[SimHost, Context],
                                               tmp_path: Path) -> None:
    """A real `vfpool` process: the warning reaches stderr as one line, stdout is the data."""
    sim, _ = igb
    sim.set_link_bounce(NETDEV0, None)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    # The process's bound is cut from LINK_WAIT to 0.5 s, so that the test does not wait 10 s.
    runner = ("import sys; from vfpool.service import pools; pools.LINK_WAIT = 0.5; "
              "from vfpool.cli.main import main; sys.argv[0] = 'vfpool'; main()")
    env = {key: value for key, value in os.environ.items() if not key.startswith("VFPOOL_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", runner, "--sim", str(sim.root), "--db",
                               db, *args], capture_output=True, text=True, timeout=120,
                              env=env, check=False)

    assert run("pool", "define", "a", "--pf", NETDEV0, "--vfs", "2",
               "--method", "sysfs").returncode == 0
    started = run("pool", "start", "a")
    assert started.returncode == 0, started.stderr
    assert started.stdout == "started pool a: 2 VFs, 2 free\n"
    assert started.stderr == (f"warning: PF {PF0} ({NETDEV0}): link still down 0.5 s after "
                              "sizing; igb refuses VF rates until its link is up\n")
