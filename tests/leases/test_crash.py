"""An acquiring process SIGKILLed between reservation and activation leaves a `reserved` lease;
`vfpool reconcile` puts the VF back as it was and frees it, and leaves live acquires alone.

A `hang` fault on the simulated host blocks the acquirer at a chosen step, while it holds the
VF's lock; the test then kills that one process by its PID. The acquirer and reconcile are real
`vfpool` processes. Steps of an acquire (vfpool/service/leases.py): 1 reserve, 2 save the VF's
config and driver in the lease, 3 apply the config through the PF, 4 bind the driver, 5 verify,
6 activate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from tests.races import env
from vfpool.host.lock import LOCK_DIR, holders
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.pool import VfDefaults
from vfpool.model.vfconfig import VfConfig
from vfpool.service import leases, pools
from vfpool.service.context import open_context
from vfpool.service.results import LeaseDetail, LeaseInfo
from vfpool.sim.host import SimHost
from vfpool.store import Vf

VFPOOL = Path(sys.executable).parent / "vfpool"
POOL = "crash"
PF_NETDEV, PF_PCI = "enp133s0f0", "0000:85:00.0"  # the default host's first X710 port
DEADLINE = 60.0  # seconds for a blocked acquirer to reach its fault
CALL_TIMEOUT = 120.0
# What an administrator had set on VF 0 before vfpool leased it; reconcile must put it back.
ADMIN_CONFIG = VfConfig(mac="02:11:22:33:44:55", vlan=7, qos=1, link_state="disable")
SAVED = {"mac": "02:11:22:33:44:55", "vlan": 7, "qos": 1, "spoofchk": True, "trust": False,
         "link_state": "disable", "min_tx_rate": 0, "max_tx_rate": 0, "driver": None,
         "mtu": None, "driver_override": None}
FREE = {"total": 2, "free": 2, "leased": 0, "reserved": 0, "unusable": 0}
ONE_RESERVED = {"total": 2, "free": 1, "leased": 0, "reserved": 1, "unusable": 0}
GONE = "reserved, but the process that acquired it is gone"
RUNNING = "reserved; its acquire is still running"

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers
def _argv(root: Path, *args: str) -> list[str]:
    return [str(VFPOOL), "--sim", str(root), *args]


def _vfpool(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(root, *args), capture_output=True, text=True, env=env(),
                          timeout=CALL_TIMEOUT, check=False)


def _json(root: Path, *args: str) -> Any:
    result = _vfpool(root, *args)
    assert result.returncode == 0, (f"`vfpool {' '.join(args)}` exited {result.returncode}\n"
                                    f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return json.loads(result.stdout)


@contextmanager
def _spawned(root: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A `vfpool` process in the background; killed (by its PID) if still running at the end."""
    with _running(_argv(root, *args)) as process:
        yield process


@contextmanager
def _running(argv: list[str], **options: Any) -> Iterator[subprocess.Popen[str]]:
    """A process in the background; killed (by its PID) if still running at the end."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env(), **options)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=CALL_TIMEOUT)


def _holds_flock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds an flock on ``path`` (from /proc/locks; never touches
    the lock itself)."""
    return pid in holders(path)


def _wait_until(what: str, probe: Callable[[], T | None],
                process: subprocess.Popen[str]) -> T:
    """Poll ``probe`` until it returns something, while ``process`` is still running."""
    deadline = time.monotonic() + DEADLINE
    while True:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the acquirer exited {process.returncode} before {what}\n"
                        f"stdout: {out}\nstderr: {err}")
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} did not happen within {DEADLINE:g} s")
        time.sleep(0.05)


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=CALL_TIMEOUT)
    assert process.returncode == -signal.SIGKILL


class Host:
    """The simulated host with pool ``crash`` (2 VFs of one X710 port, vfio) started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sim = SimHost(root)
        self.sysfs = Sysfs(self.sim)
        vfs = self.sysfs.pf(PciAddress.parse(PF_PCI)).vfs
        self.vf0, self.vf1 = str(vfs[0].pci), str(vfs[1].pci)

    def vf(self, index: int) -> tuple[VfConfig, str | None, str]:
        """VF ``index`` on the host: (config through the PF, driver, driver_override). Reads
        through the sim's netlink port, so call it only while no netlink fault hangs."""
        vf = self.sysfs.pf(PciAddress.parse(PF_PCI)).vfs[index]
        override = self.sysfs.attr(vf.pci, "driver_override").read_text().strip()
        return self.sim.vf_configs(PF_NETDEV)[index], vf.driver, override

    def lock_file(self, vf_pci: str) -> Path:
        return self.root / LOCK_DIR / f"vf-{vf_pci}.lock"

    def lease(self, lease_id: int) -> LeaseDetail:
        with open_context(sim=self.root) as ctx:
            return leases.show_lease(ctx, lease_id)

    def leases(self) -> list[LeaseInfo]:
        with open_context(sim=self.root) as ctx:
            return leases.list_leases(ctx, include_finished=True)

    def pool_vfs(self) -> dict[str, int]:
        with open_context(sim=self.root) as ctx:
            return pools.info(ctx, POOL).vfs.as_dict()

    def store_vf_state(self, vf_pci: str) -> tuple[str, str | None]:
        with open_context(sim=self.root) as ctx, ctx.store.session() as session:
            row = session.scalars(select(Vf).where(Vf.pci == vf_pci)).one()
            return row.state, row.reason

    def reserved_lease(self, owner: str, *, saved: bool) -> LeaseDetail | None:
        """The owner's lease once it is reserved (and, with ``saved``, has its saved config)."""
        for record in self.leases():
            if record.owner == owner and record.state == "reserved":
                full = self.lease(record.id)
                if not saved or full.saved_config is not None:
                    return full
        return None


@pytest.fixture
def host(sim_root: Path) -> Iterator[Host]:
    with open_context(sim=sim_root) as ctx:
        pools.define(ctx, pools.parse_spec(
            POOL, [PF_NETDEV], 2, "auto", "vfio",
            VfDefaults(vlan=100, qos=2, trust=True, spoofchk=False, max_tx_rate=1000)))
        pools.start(ctx, POOL)
    sim = SimHost(sim_root)
    for field in ("mac", "vlan", "link_state"):
        sim.set_vf(PF_NETDEV, 0, field, ADMIN_CONFIG)
    try:
        yield Host(sim_root)
    finally:
        # A failed test may leave a hang behind; nothing may stay blocked on it.
        sim.clear_faults()


def _applied(mac: str) -> VfConfig:
    """VF 0 with the pool's defaults and the lease's MAC applied; the administrator's
    link_state "disable" gives way to "auto" while leased (and comes back on release)."""
    return VfConfig(mac=mac, vlan=100, qos=2, spoofchk=False, trust=True, link_state="auto",
                    min_tx_rate=0, max_tx_rate=1000)


def _kill_blocked_in_bind(host: Host, acquirer: subprocess.Popen[str]) -> LeaseDetail:
    """Wait until ``acquirer`` holds VF 0's lock with its lease reserved, the VF's config
    saved and the lease's applied (blocked in step 4 by a fault), then kill it; the lease as
    it was then."""
    def blocked_in_bind() -> LeaseDetail | None:
        lease = host.reserved_lease("vm1", saved=True)
        if lease is None or not _holds_flock(acquirer.pid, host.lock_file(host.vf0)):
            return None
        return lease if host.vf(0)[0] == _applied(lease.mac) else None

    lease = _wait_until("a reserved lease with its saved config and the config applied",
                        blocked_in_bind, acquirer)
    _kill(acquirer)
    return lease


# --------------------------------------------------------------------------- crashes
def test_acquire_killed_after_applying_the_config_is_restored_and_freed_by_reconcile(
        host: Host) -> None:
    before = host.vf(0)
    assert before == (VfConfig(mac="02:11:22:33:44:55", vlan=7, qos=1, spoofchk=True,
                               trust=False, link_state="disable", min_tx_rate=0, max_tx_rate=0),
                      None, "(null)")
    # Step 4 starts with the VF's driver_override: block there, after steps 2 and 3 are done.
    host.sim.inject_fault(f"sys/bus/pci/devices/{host.vf0}/driver_override", kind="hang")
    with _spawned(host.root, "lease", "acquire", POOL, "--owner", "vm1", "--json") as acquirer:
        lease = _kill_blocked_in_bind(host, acquirer)
    host.sim.clear_faults()

    lease_id = lease.id
    assert lease.vf.pci == host.vf0
    assert lease.saved_config == SAVED
    listed = [r for r in _json(host.root, "lease", "list", "--all", "--json")
              if r["id"] == lease_id]
    assert [(r["state"], r["owner"], r["vf"]["pci"]) for r in listed] == \
        [("reserved", "vm1", host.vf0)]
    crashed = host.vf(0)
    assert crashed == (_applied(lease.mac), None, "(null)")
    assert host.pool_vfs() == ONE_RESERVED

    # --dry-run reports it and changes nothing.
    finding = {"lease": lease_id, "vf": host.vf0, "owner": "vm1", "problem": GONE,
               "action": "restore the VF's saved config and driver, free it"}
    assert _json(host.root, "reconcile", "--dry-run", "--json") == \
        {"dry_run": True, "findings": [finding]}
    assert host.lease(lease_id) == lease
    assert host.vf(0) == crashed
    assert host.pool_vfs() == ONE_RESERVED
    assert host.store_vf_state(host.vf0) == ("reserved", None)

    assert _json(host.root, "reconcile", "--json") == \
        {"dry_run": False, "findings": [{**finding, "result": "free"}]}
    after = host.lease(lease_id)
    assert after.state == "released"
    assert after.released_at is not None
    assert host.vf(0)[:2] == before[:2]  # config and driver as before the acquire
    assert host.store_vf_state(host.vf0) == ("free", None)
    assert host.pool_vfs() == FREE

    # Idempotent: a second run finds nothing.
    assert _json(host.root, "reconcile", "--json") == {"dry_run": False, "findings": []}
    assert host.vf(0)[:2] == before[:2]

    # The VF is usable again: the next acquire gets it (lowest index first).
    again = _json(host.root, "lease", "acquire", POOL, "--owner", "vm2", "--json")
    assert [(r["state"], r["owner"], r["vf"]["pci"]) for r in again] == \
        [("active", "vm2", host.vf0)]
    assert host.lease(again[0]["id"]).saved_config == SAVED
    assert host.vf(0) == (_applied(again[0]["mac"]), "vfio-pci", "vfio-pci")


def test_reconcile_puts_back_the_driver_override_of_an_acquire_killed_mid_bind(
        host: Host) -> None:
    before = host.vf(0)
    # Block step 4 after it set driver_override to vfio-pci, at the probe that would bind it.
    host.sim.inject_fault("sys/bus/pci/drivers_probe", kind="hang")
    with _spawned(host.root, "lease", "acquire", POOL, "--owner", "vm1", "--json") as acquirer:
        def override_set() -> LeaseDetail | None:
            lease = host.reserved_lease("vm1", saved=True)
            if lease is None or not _holds_flock(acquirer.pid, host.lock_file(host.vf0)):
                return None
            return lease if host.vf(0)[2] == "vfio-pci" else None

        lease = _wait_until("driver_override set to vfio-pci", override_set, acquirer)
        _kill(acquirer)
    host.sim.clear_faults()
    assert host.vf(0) == (_applied(lease.mac), None, "vfio-pci")

    report = _json(host.root, "reconcile", "--json")
    assert [(f["lease"], f.get("result")) for f in report["findings"]] == [(lease.id, "free")]
    assert host.lease(lease.id).state == "released"
    assert host.store_vf_state(host.vf0) == ("free", None)
    # Everything the acquire changed is undone, the override included: a leftover vfio-pci
    # override binds the VF to vfio-pci at its next probe.
    assert host.vf(0) == before


def test_acquire_killed_before_any_host_change_is_freed_by_reconcile(host: Host) -> None:
    before = host.vf(0)
    # The sim's netlink hang also blocks reading VF config through the PF (step 2), so the
    # acquirer stops before it saved or changed anything.
    host.sim.inject_fault(f"netlink:{PF_NETDEV}", kind="hang")
    with _spawned(host.root, "lease", "acquire", POOL, "--owner", "vm1", "--json") as acquirer:
        def reading() -> LeaseDetail | None:
            lease = host.reserved_lease("vm1", saved=False)
            if lease is None or not _holds_flock(acquirer.pid, host.lock_file(host.vf0)):
                return None
            return lease

        lease = _wait_until("a reserved lease whose acquirer holds the VF's lock", reading,
                            acquirer)
        _kill(acquirer)
    host.sim.clear_faults()

    lease_id = lease.id
    assert lease.saved_config is None
    assert host.lease(lease_id).state == "reserved"
    assert host.vf(0) == before

    finding = {"lease": lease_id, "vf": host.vf0, "owner": "vm1", "problem": GONE,
               "action": "free the VF (nothing was changed on it)"}
    assert _json(host.root, "reconcile", "--dry-run", "--json") == \
        {"dry_run": True, "findings": [finding]}
    assert host.lease(lease_id) == lease
    assert host.pool_vfs() == ONE_RESERVED

    assert _json(host.root, "reconcile", "--json") == \
        {"dry_run": False, "findings": [{**finding, "result": "free"}]}
    assert host.lease(lease_id).state == "released"
    assert host.vf(0) == before
    assert host.pool_vfs() == FREE
    assert _json(host.root, "reconcile", "--json") == {"dry_run": False, "findings": []}


# A process that leases through the Python API: after its own release of VF 0 it guesses VF 0
# for its next acquire, reads it before the reservation, and saves it in the reservation
# (leases.py, "what a context remembers"). It waits for a line on stdin before that acquire.
API_ACQUIRER = """
import sys
import vfpool
with vfpool.connect(sim=sys.argv[1]) as host:
    lease = host.acquire(sys.argv[2], owner="warm")
    host.release(lease)
    print(*(f"{pool} {vf.vf_pci}" for pool, vf in host.context.freed.items()), flush=True)
    sys.stdin.readline()
    host.acquire(sys.argv[2], owner="vm1")
"""


def test_an_api_acquire_that_saved_in_its_reservation_is_restored_after_a_kill(
        host: Host) -> None:
    before = host.vf(0)
    with _running([sys.executable, "-c", API_ACQUIRER, str(host.root), POOL],
                  stdin=subprocess.PIPE) as acquirer:
        assert acquirer.stdout is not None and acquirer.stdin is not None
        assert acquirer.stdout.readline().split() == [POOL, host.vf0]  # the guess
        assert host.vf(0) == before  # the warm-up's release put VF 0 back
        # Block step 4 at the VF's driver_override, after the config is applied.
        host.sim.inject_fault(f"sys/bus/pci/devices/{host.vf0}/driver_override", kind="hang")
        acquirer.stdin.write("go\n")
        acquirer.stdin.flush()
        lease = _kill_blocked_in_bind(host, acquirer)
    host.sim.clear_faults()

    assert lease.saved_config == SAVED
    report = _json(host.root, "reconcile", "--json")
    assert report["findings"] == [{
        "lease": lease.id, "vf": host.vf0, "owner": "vm1", "problem": GONE,
        "action": "restore the VF's saved config and driver, free it", "result": "free"}]
    assert host.lease(lease.id).state == "released"
    assert host.vf(0) == before
    assert host.store_vf_state(host.vf0) == ("free", None)
    assert host.pool_vfs() == FREE


# --------------------------------------------------------------------------- live acquires
def test_reconcile_leaves_a_live_blocked_acquire_alone(host: Host) -> None:
    host.sim.inject_fault(f"netlink:{PF_NETDEV}", kind="hang")
    with _spawned(host.root, "lease", "acquire", POOL, "--owner", "vm1", "--json") as acquirer:
        def holding() -> LeaseDetail | None:
            lease = host.reserved_lease("vm1", saved=False)
            if lease is None or not _holds_flock(acquirer.pid, host.lock_file(host.vf0)):
                return None
            return lease

        lease = _wait_until("a reserved lease whose acquirer holds the VF's lock", holding,
                            acquirer)
        assert _json(host.root, "reconcile", "--json") == {"dry_run": False, "findings": [
            {"lease": lease.id, "vf": host.vf0, "problem": RUNNING, "action": "none"}]}
        assert host.lease(lease.id) == lease
        assert acquirer.poll() is None

        host.sim.clear_faults()
        out, err = acquirer.communicate(timeout=CALL_TIMEOUT)
        assert acquirer.returncode == 0, f"stdout: {out}\nstderr: {err}"
    records = json.loads(out)
    assert [(r["id"], r["state"], r["vf"]["pci"]) for r in records] == \
        [(lease.id, "active", host.vf0)]
    assert host.store_vf_state(host.vf0) == ("leased", None)
    assert host.vf(0) == (_applied(records[0]["mac"]), "vfio-pci", "vfio-pci")


def test_reconcile_leaves_every_lease_of_a_live_multi_vf_acquire_alone(host: Host) -> None:
    # --count 2 reserves both VFs in step 1, then sets them up one at a time; while the first
    # is blocked, the second is reserved by a live process too.
    host.sim.inject_fault(f"netlink:{PF_NETDEV}", kind="hang")
    with _spawned(host.root, "lease", "acquire", POOL, "--owner", "vm1", "--count", "2",
                  "--json") as acquirer:
        def holding() -> list[LeaseInfo] | None:
            reserved = [r for r in host.leases() if r.state == "reserved"]
            if len(reserved) != 2 or not _holds_flock(acquirer.pid, host.lock_file(host.vf0)):
                return None
            return reserved

        reserved = _wait_until("two reserved leases, the first one's VF locked", holding,
                               acquirer)
        report = _json(host.root, "reconcile", "--json")
        assert [(f["lease"], f["problem"], f["action"]) for f in report["findings"]] == \
            [(record.id, RUNNING, "none") for record in reserved], report
        assert [host.lease(record.id).state for record in reserved] == \
            ["reserved", "reserved"]

        host.sim.clear_faults()
        out, err = acquirer.communicate(timeout=CALL_TIMEOUT)
        assert acquirer.returncode == 0, f"stdout: {out}\nstderr: {err}"
    assert [(r["state"], r["vf"]["pci"]) for r in json.loads(out)] == \
        [("active", host.vf0), ("active", host.vf1)]
