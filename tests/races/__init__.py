"""Contention tests: operations that run into each other, as separate `vfpool` processes.

Shared helpers: run the CLI in the background, wait until a process holds a lock (read from
/proc/locks, never by touching the lock), and check the two promises after every race: no VF
has two live leases, and every active lease's VF on the host carries that lease's config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from vfpool.host.lock import LOCK_DIR, holders
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.pool import VfDefaults
from vfpool.model.vfconfig import VfConfig
from vfpool.service import pools
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost
from vfpool.store import LIVE_LEASE_STATES, Lease

VFPOOL = Path(sys.executable).parent / "vfpool"
DEADLINE = 60.0  # seconds for a background process to reach the state a test waits for
CALL_TIMEOUT = 120.0


def env(**extra: str) -> dict[str, str]:
    """The environment of a `vfpool` process: none of the caller's VFPOOL_* settings, except
    VFPOOL_DB, which the store backend fixture (env_store, tests/conftest.py) sets or
    removes: the process uses the store that the test uses."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith("VFPOOL_") or key == "VFPOOL_DB"}
    return {**clean, **extra}


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"`vfpool {' '.join(self.argv)}` exited {self.returncode}\n"
                f"stdout: {self.stdout}\nstderr: {self.stderr}")

    def json(self) -> Any:
        assert self.returncode == 0, self.describe()
        return json.loads(self.stdout)


def vfpool(root: Path, *args: str, timeout: float = CALL_TIMEOUT, **extra: str) -> Call:
    result = subprocess.run([str(VFPOOL), "--sim", str(root), *args], capture_output=True,
                            text=True, env=env(**extra), timeout=timeout, check=False)
    return Call(tuple(args), result.returncode, result.stdout, result.stderr)


class Background:
    """A `vfpool` process running beside the test; always reaped, killed if still running."""

    def __init__(self, root: Path, *args: str, **extra: str) -> None:
        self.argv = tuple(args)
        self.process = subprocess.Popen([str(VFPOOL), "--sim", str(root), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env(**extra))

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float = CALL_TIMEOUT) -> Call:
        out, err = self.process.communicate(timeout=timeout)
        return Call(self.argv, self.process.returncode, out, err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=CALL_TIMEOUT)


@contextmanager
def background(root: Path, *args: str, **extra: str) -> Iterator[Background]:
    process = Background(root, *args, **extra)
    try:
        yield process
    finally:
        process.kill()


def wait_until(what: str, probe: Callable[[], bool], *watched: Background) -> None:
    """Poll ``probe`` until it holds; fail if the deadline passes or a watched process ends."""
    deadline = time.monotonic() + DEADLINE
    while not probe():
        for process in watched:
            if not process.running():
                call = process.finish()
                raise AssertionError(f"{call.describe()}\n... before {what}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE:g} s")
        time.sleep(0.02)


def lock_path(root: Path, name: str) -> Path:
    return root / LOCK_DIR / name


def pf_lock(root: Path, pci: str) -> Path:
    return lock_path(root, f"pf-{pci}.lock")


def vf_lock(root: Path, pci: str) -> Path:
    return lock_path(root, f"vf-{pci}.lock")


def holds(process: Background, path: Path) -> bool:
    return process.pid in holders(path)


def holds_acquirer_lock(root: Path, process: Background) -> bool:
    """Whether the process holds an acquirer lock: it has started a lease change."""
    folder = root / LOCK_DIR
    return folder.is_dir() and any(holds(process, path)
                                   for path in folder.glob("acquire-*.lock"))


def start_pool(root: Path, name: str, *pfs: str, vfs: int, mode: str, method: str = "auto",
               autostart: bool = False, start: bool = True, **defaults: Any) -> None:
    """Define a pool (optionally autostarted) and start it, in this process: set-up for a
    race, at a fraction of the cost of two `vfpool` processes."""
    with open_context(sim=root) as ctx:
        pools.define(ctx, pools.parse_spec(name, list(pfs), vfs, method, mode,
                                           VfDefaults(**defaults)))
        if autostart:
            pools.set_autostart(ctx, name, True)
        if start:
            pools.start(ctx, name)


def live_leases(root: Path) -> list[Lease]:
    with open_context(sim=root) as ctx:
        return ctx.store.read(lambda session: list(session.scalars(
            select(Lease).where(Lease.state.in_(LIVE_LEASE_STATES)).order_by(Lease.id))))


def host_vf(sim: SimHost, pf_pci: str, index: int) -> tuple[VfConfig, str | None] | None:
    """VF ``index`` of a PF as the simulated host has it (read directly, not through vfpool's
    services): its config through the PF, and its driver. None when it does not exist."""
    sysfs = Sysfs(sim)
    pf = sysfs.pf(PciAddress.parse(pf_pci))
    vf = next((vf for vf in pf.vfs if vf.index == index), None)
    if vf is None or pf.netdev is None:
        return None
    return sim.vf_configs(pf.netdev)[index], vf.driver


def assert_consistent(root: Path) -> list[Lease]:
    """No VF in two live leases, and every active lease's VF carries that lease's config and
    driver. Returns the live leases."""
    sim = SimHost(root)
    live = live_leases(root)
    vfs = [lease.vf_pci for lease in live]
    assert len(vfs) == len(set(vfs)), f"a VF has two live leases: {sorted(vfs)}"
    for lease in live:
        if lease.state != "active":
            continue
        found = host_vf(sim, lease.pf_pci, lease.vf_index)
        assert found is not None, f"lease {lease.id}'s VF {lease.vf_pci} is not on the host"
        config, driver = found
        applied = lease.applied_config or {}
        wanted = VfConfig.from_dict(applied).set_fields()
        have = {key: getattr(config, key) for key in wanted}
        assert have == wanted, f"lease {lease.id}: VF {lease.vf_pci} has {have}, not {wanted}"
        assert driver == applied.get("driver"), \
            f"lease {lease.id}: VF {lease.vf_pci} is bound to {driver}, not {applied['driver']}"
    return live
