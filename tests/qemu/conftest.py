"""Fixtures for the QEMU hand-off: simulated hosts with leases, the real QEMU binary, and
throwaway network namespaces whose veth links stand in for VF netdevs.

Every QEMU or vfpool process a test starts is killed by its PID in teardown, and every network
namespace is deleted, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vfpool.model.pool import VfDefaults
from vfpool.service import pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

QEMU = "qemu-system-x86_64"
X710 = "intel-x710@0000:85:00.0:numa=1"
PF = "enp133s0f0"


def qemu_binary() -> str:
    found = shutil.which(QEMU)
    if found is None:
        pytest.skip(f"{QEMU} is not installed")
    return found


@pytest.fixture
def qemu() -> str:
    return qemu_binary()


def wait_for(what: str, check: Callable[[], object], timeout: float = 15.0,
             interval: float = 0.05) -> object:
    """Poll ``check`` until it returns something true; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie (a zombie is a dead process nobody reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"


def kill_pid(pid: int | None) -> None:
    """SIGKILL one process we started; fine when it is gone already."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Processes:
    """PIDs a test started; all of them are killed in teardown."""

    pids: list[int] = field(default_factory=list)
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(self, pid: int | None) -> None:
        if pid is not None:
            self.pids.append(pid)

    def add_popen(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.popens.append(process)
        self.pids.append(process.pid)
        return process


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        for pid in started.pids:
            kill_pid(pid)
        for process in started.popens:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


# --------------------------------------------------------------------------- simulated leases
@dataclass
class SimLeases:
    root: Path
    lease_ids: dict[str, int]  # mode -> lease id
    macs: dict[str, str]


VFIO_MAC = "52:54:00:00:00:01"
MACVTAP_MAC = "52:54:00:00:00:02"
NETDEV_MAC = "52:54:00:00:00:03"


@pytest.fixture
def sim_leases(sim_root: Path) -> SimLeases:
    """On the default sim: pool ``v`` (vfio, enp133s0f0), ``m`` (macvtap, enp133s0f1) and ``n``
    (netdev, enp5s0f0), each started with 2 VFs, ``idle`` (netdev, enp5s0f1) defined only; vm1
    holds one lease of each started pool, with fixed MACs."""
    from vfpool.service import leases

    with open_context(sim=sim_root) as ctx:
        for name, pf, mode in (("v", "enp133s0f0", "vfio"), ("m", "enp133s0f1", "macvtap"),
                               ("n", "enp5s0f0", "netdev"), ("idle", "enp5s0f1", "netdev")):
            pools.define(ctx, pools.parse_spec(name, [pf], 2, "auto", mode, VfDefaults()))
        ids = {}
        macs = {}
        for name, mode, mac in (("v", "vfio", VFIO_MAC), ("m", "macvtap", MACVTAP_MAC),
                                ("n", "netdev", NETDEV_MAC)):
            pools.start(ctx, name)
            [lease] = leases.acquire(ctx, name, "vm1", mac=mac)
            ids[mode] = lease.id
            macs[mode] = mac
    return SimLeases(sim_root, ids, macs)


# --------------------------------------------------------------------------- real kernel
def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


@pytest.fixture
def netns() -> Iterator[str]:
    """A uniquely named network namespace, deleted in teardown even when the test fails."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip netns`) is not installed")
    name = f"vfpt-{secrets.token_hex(4)}"
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30,
                       check=False)


@dataclass
class RealHost:
    root: Path
    netns: str
    vf_netdevs: list[str]
    peers: list[str]

    def context(self) -> Context:
        return open_context(sim=self.root)


@pytest.fixture
def real_host(tmp_path: Path, netns: str, qemu: str) -> RealHost:
    """An X710 sim whose VF netdevs are veth links in ``netns``; pool ``p`` (macvtap, 2 VFs)
    started. The far ends of the veths are ``peer0`` and ``peer1``, up."""
    root = tmp_path / "host"
    SimHost.create(root, [X710], netns=netns)
    with open_context(sim=root) as ctx:
        pools.define(ctx, pools.parse_spec("p", [PF], 2, "auto", "macvtap", VfDefaults()))
        pools.start(ctx, "p")
    _ip("-n", netns, "link", "set", "lo", "up")
    netdevs = [f"{PF}v0", f"{PF}v1"]
    peers = ["peer0", "peer1"]
    for netdev, peer in zip(netdevs, peers, strict=True):
        _ip("-n", netns, "link", "add", netdev, "type", "veth", "peer", "name", peer)
        _ip("-n", netns, "link", "set", peer, "up")
    return RealHost(root, netns, netdevs, peers)
