"""Each fault kind means the same on every kind of target the sim checks for faults: a sysfs
attribute of a device or of a driver, modprobe, and netlink (set_vf and set_link)."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vfpool.model.vfconfig import VfConfig
from vfpool.sim.host import SimHost

DEVICES = Path("sys/bus/pci/devices")


def _attempt(call: Callable[[], object]) -> str | None:
    """None when the call succeeds, else the kernel's error text."""
    try:
        call()
    except OSError as exc:
        return os.strerror(exc.errno or 0)
    return None


def _modprobe(sim: SimHost, args: list[str]) -> str | None:
    result = sim.modprobe(args)
    return None if result.returncode == 0 else result.stderr


def _read(sim: SimHost, relative: str) -> str:
    return (sim.root / relative).read_text()


@dataclass(frozen=True)
class Target:
    name: str
    fault: str  # as `vfpool sim fault` takes it
    act: Callable[[SimHost], str | None]
    # Whether the operation's effect is there. Never blocks, even behind a hang fault.
    done: Callable[[SimHost], bool]
    setup: Callable[[SimHost], None] = lambda sim: None

    def __str__(self) -> str:
        return self.name


def _one_vf(sim: SimHost) -> None:
    sim.write_attr(sim.root / DEVICES / "0000:05:00.0/sriov_numvfs", "1")


TARGETS = [
    Target("sriov_numvfs", str(DEVICES / "0000:05:00.0/sriov_numvfs"),
           lambda sim: _attempt(lambda: sim.write_attr(
               sim.root / DEVICES / "0000:05:00.0/sriov_numvfs", "2")),
           lambda sim: _read(sim, str(DEVICES / "0000:05:00.0/sriov_numvfs")) == "2\n"),
    Target("driver_override", str(DEVICES / "0000:05:00.1/driver_override"),
           lambda sim: _attempt(lambda: sim.write_attr(
               sim.root / DEVICES / "0000:05:00.1/driver_override", "vfio-pci")),
           lambda sim: _read(sim, str(DEVICES / "0000:05:00.1/driver_override"))
           == "vfio-pci\n"),
    Target("driver unbind", "sys/bus/pci/drivers/i40e/unbind",
           lambda sim: _attempt(lambda: sim.write_attr(
               sim.root / "sys/bus/pci/drivers/i40e/unbind", "0000:85:00.1")),
           lambda sim: not (sim.root / DEVICES / "0000:85:00.1/driver").exists()),
    Target("modprobe", "modprobe:i40e",
           lambda sim: _modprobe(sim, ["-r", "i40e"]),
           lambda sim: not (sim.root / "sys/bus/pci/drivers/i40e").exists()),
    Target("netlink set_vf", "netlink:enp5s0f0",
           lambda sim: _attempt(lambda: sim.set_vf("enp5s0f0", 0, "vlan", VfConfig(vlan=10))),
           lambda sim: sim.state()["vf_config"].get("0000:05:00.0/0", {}).get("vlan") == 10,
           setup=_one_vf),
    Target("netlink set_link", "netlink:enp5s0f1",
           lambda sim: _attempt(lambda: sim.set_link("enp5s0f1", mtu=9000)),
           lambda sim: _read(sim, "sys/class/net/enp5s0f1/mtu") == "9000\n"),
]


@pytest.fixture(params=TARGETS, ids=str)
def target(request: pytest.FixtureRequest, sim: SimHost) -> Target:
    chosen: Target = request.param
    chosen.setup(sim)
    assert not chosen.done(sim)
    return chosen


def test_errno_fails_count_times_then_the_operation_goes_through(sim: SimHost,
                                                                 target: Target) -> None:
    sim.inject_fault(target.fault, kind="errno", errno_code=errno.EIO, count=2)
    for _ in range(2):
        error = target.act(sim)
        assert error is not None and os.strerror(errno.EIO) in error
        assert not target.done(sim)
    assert target.act(sim) is None
    assert target.done(sim)
    assert sim.state()["faults"] == []


def test_ignore_reports_success_and_does_nothing(sim: SimHost, target: Target) -> None:
    sim.inject_fault(target.fault, kind="ignore")
    assert target.act(sim) is None
    assert not target.done(sim)
    assert sim.state()["faults"] == []
    assert target.act(sim) is None
    assert target.done(sim)


def test_no_netdev_lets_the_operation_through(sim: SimHost, target: Target) -> None:
    # Only VFs have netdevs to withhold (see test_no_netdev_fault_creates_vfs_without_netdevs);
    # everywhere the write happens and the fault is used up.
    sim.inject_fault(target.fault, kind="no-netdev")
    assert target.act(sim) is None
    assert target.done(sim)
    assert sim.state()["faults"] == []


def test_hang_blocks_until_cleared_then_the_operation_goes_through(sim: SimHost,
                                                                   target: Target) -> None:
    sim.inject_fault(target.fault, kind="hang")
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(target.act(sim)), daemon=True)
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and outcome == []
    assert not target.done(sim)
    sim.clear_faults()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert outcome == [None]
    assert target.done(sim)


def test_a_fault_on_one_target_leaves_the_others_alone(sim: SimHost, target: Target) -> None:
    for other in TARGETS:
        if other is not target and other.fault != target.fault:
            sim.inject_fault(other.fault, kind="errno", errno_code=errno.EIO)
    assert target.act(sim) is None
    assert target.done(sim)
