"""`vfpool watch` on a umockdev testbed: udev events in, store changes and events rows out.

Events are sent with ``Testbed.uevent()`` after the monitor started, so they wait in its
socket and the loop finds them in order: no sleeps. Where a test shows that an event changes
nothing, it sends a handled event after it and checks that only that one was handled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import CliResult
from tests.udev.conftest import OTHER_PF, PF, VFS, PoolHost
from vfpool.errors import StoreError
from vfpool.host.udev import DeviceChange, UdevDiscovery, UdevMonitor
from vfpool.model.pci import PciAddress
from vfpool.service import watch as watch_service
from vfpool.store import Event, Lease, Vf

VFPOOL = Path(sys.executable).parent / "vfpool"
UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "vfpool-watch.service"
DEADLINE = 15.0  # seconds; only ever reached when something is broken


@pytest.fixture
def monitor(pool_host: PoolHost) -> UdevMonitor:
    """A started monitor: events sent from now on wait in its socket."""
    started = UdevMonitor()
    started.start()
    return started


def run_watch(host: PoolHost, monitor: UdevMonitor, changes: int = 1,
              links: watch_service.Links | None = None) -> list[str]:
    """Run the loop until ``changes`` changes were handled; their log lines."""
    seen: list[str] = []
    if links is None:
        links = watch_service.initial_links(host.ctx, UdevDiscovery().pfs())
    count = watch_service.watch(host.ctx, monitor, lambda: len(seen) >= changes, links=links,
                                timeout=DEADLINE,
                                on_change=lambda handled: seen.append(handled.message),
                                on_error=lambda message: seen.append(f"error: {message}"))
    assert count + sum(line.startswith("error: ") for line in seen) == len(seen) == changes
    return seen


def vf_row(host: PoolHost, pci: str) -> tuple[str, str | None]:
    with host.store.session() as session:
        vf = session.scalars(select(Vf).where(Vf.pci == pci)).one()
        return vf.state, vf.reason


def lease_state(host: PoolHost) -> str:
    with host.store.session() as session:
        lease = session.get(Lease, host.lease_id)
        assert lease is not None
        return lease.state


def events_after(host: PoolHost, first_id: int = 0) -> list[tuple[Any, ...]]:
    with host.store.session() as session:
        return [(event.action, event.pool, event.pf, event.vf, event.lease_id)
                for event in session.scalars(select(Event).where(Event.id > first_id)
                                             .order_by(Event.id))]


def last_event_id(host: PoolHost) -> int:
    with host.store.session() as session:
        return max(session.scalars(select(Event.id)), default=0)


LEASED = f"VF {VFS[0]} (VF 0 of PF {PF}, pool tenant-a)"


def test_removed_vf_becomes_unusable_and_its_lease_lost(pool_host: PoolHost,
                                                        monitor: UdevMonitor) -> None:
    before = last_event_id(pool_host)
    pool_host.bed.remove(VFS[0])
    assert run_watch(pool_host, monitor) == [
        f"{LEASED} removed: unusable; lease {pool_host.lease_id} of 'vm1' lost"]
    assert vf_row(pool_host, VFS[0]) == ("unusable", "removed")
    assert lease_state(pool_host) == "lost"
    assert events_after(pool_host, before) == [
        ("lease.lost", "tenant-a", PF, VFS[0], pool_host.lease_id),
        ("vf.removed", "tenant-a", PF, VFS[0], pool_host.lease_id),
    ]


def test_removing_a_free_vf_loses_no_lease(pool_host: PoolHost, monitor: UdevMonitor) -> None:
    pool_host.bed.remove(VFS[1])
    assert run_watch(pool_host, monitor) == [
        f"VF {VFS[1]} (VF 1 of PF {PF}, pool tenant-a) removed: unusable"]
    assert vf_row(pool_host, VFS[1]) == ("unusable", "removed")
    assert (vf_row(pool_host, VFS[0]), lease_state(pool_host)) == (("leased", None), "active")


def test_removed_pf_takes_all_its_vfs(pool_host: PoolHost, monitor: UdevMonitor) -> None:
    before = last_event_id(pool_host)
    pool_host.bed.uevent(PF, "remove")  # the PF alone, as if its VF events were lost
    assert run_watch(pool_host, monitor) == [
        f"PF {PF} (enp133s0f0) removed: 4 VF(s) unusable, 1 lease(s) lost"]
    assert [vf_row(pool_host, pci) for pci in VFS] == [("unusable", "removed")] * 4
    assert lease_state(pool_host) == "lost"
    assert [event[0] for event in events_after(pool_host, before)] == [
        "lease.lost", "vf.removed", "vf.removed", "vf.removed", "vf.removed", "pf.removed"]


def test_pf_removal_in_the_kernels_order_handles_each_vf_once(pool_host: PoolHost,
                                                              monitor: UdevMonitor) -> None:
    for pci in VFS:  # the kernel removes the VFs first, then the PF
        pool_host.bed.remove(pci)
    pool_host.bed.remove(PF)
    lines = run_watch(pool_host, monitor, changes=5)
    assert lines[0] == f"{LEASED} removed: unusable; lease {pool_host.lease_id} of 'vm1' lost"
    assert lines[4] == f"PF {PF} (enp133s0f0) removed: 0 VF(s) unusable, 0 lease(s) lost"
    assert [vf_row(pool_host, pci) for pci in VFS] == [("unusable", "removed")] * 4


def test_a_vf_that_reappears_is_free_again(pool_host: PoolHost, monitor: UdevMonitor) -> None:
    before = last_event_id(pool_host)
    for pci in VFS[:2]:
        pool_host.bed.uevent(pci, "remove")
        pool_host.bed.uevent(pci, "add")
    lines = run_watch(pool_host, monitor, changes=4)
    assert lines[1] == f"{LEASED} is back: free"
    assert lines[3] == f"VF {VFS[1]} (VF 1 of PF {PF}, pool tenant-a) is back: free"
    assert [vf_row(pool_host, pci) for pci in VFS[:2]] == [("free", None)] * 2
    assert lease_state(pool_host) == "lost"  # the lease stays lost: its VF was reset
    assert [event[0] for event in events_after(pool_host, before)] == [
        "lease.lost", "vf.removed", "vf.returned", "vf.removed", "vf.returned"]


def test_only_vfs_that_udev_removed_come_back(pool_host: PoolHost,
                                              monitor: UdevMonitor) -> None:
    with pool_host.store.session() as session:
        vf = session.scalars(select(Vf).where(Vf.pci == VFS[2])).one()
        vf.state, vf.reason = "unusable", "restore failed: EIO"
    pool_host.bed.uevent(VFS[2], "add")
    pool_host.bed.uevent(VFS[3], "remove")  # handled: shows that the add was passed over
    assert run_watch(pool_host, monitor) == [
        f"VF {VFS[3]} (VF 3 of PF {PF}, pool tenant-a) removed: unusable"]
    assert vf_row(pool_host, VFS[2]) == ("unusable", "restore failed: EIO")


def test_pf_link_changes_are_noted_once(pool_host: PoolHost, monitor: UdevMonitor) -> None:
    links = watch_service.initial_links(pool_host.ctx, UdevDiscovery().pfs())
    assert links == {(PF, "enp133s0f0"): watch_service.LinkState("up", "1")}
    before = last_event_id(pool_host)
    pool_host.bed.set_attribute("enp133s0f0", "operstate", "down\n")
    pool_host.bed.set_attribute("enp133s0f0", "carrier", "0\n")
    pool_host.bed.uevent("enp133s0f0", "change")
    assert run_watch(pool_host, monitor, links=links) == [
        f"PF {PF} (enp133s0f0) link up, carrier -> down, no carrier"]
    pool_host.bed.uevent("enp133s0f0", "change")  # nothing new
    pool_host.bed.uevent(VFS[3], "remove")
    assert run_watch(pool_host, monitor, links=links)[0].startswith(f"VF {VFS[3]} ")
    with pool_host.store.session() as session:
        [event] = session.scalars(select(Event).where(Event.id > before,
                                                      Event.action == "pf.link"))
        assert (event.pool, event.pf, event.detail) == ("tenant-a", PF, {
            "netdev": "enp133s0f0", "operstate": "down", "carrier": "0",
            "previous_operstate": "up", "previous_carrier": "1"})


def test_devices_outside_the_store_are_passed_over(pool_host: PoolHost,
                                                   monitor: UdevMonitor) -> None:
    before = last_event_id(pool_host)
    pool_host.bed.set_attribute("enp133s0f1", "operstate", "down\n")
    pool_host.bed.uevent("enp133s0f1", "change")  # a PF in no pool
    pool_host.bed.uevent("eno1", "change")  # not SR-IOV
    pool_host.bed.uevent("lo", "change")  # virtual
    pool_host.bed.uevent(OTHER_PF, "remove")
    pool_host.bed.uevent("0000:05:00.0", "remove")
    pool_host.bed.uevent(VFS[0], "change")  # a pci change is not a removal
    pool_host.bed.uevent(VFS[3], "remove")
    assert run_watch(pool_host, monitor) == [
        f"VF {VFS[3]} (VF 3 of PF {PF}, pool tenant-a) removed: unusable"]
    assert [event[0] for event in events_after(pool_host, before)] == ["vf.removed"]


def test_a_pf_that_reappears_is_noted_and_once_stops_after_it(pool_host: PoolHost,
                                                               monitor: UdevMonitor) -> None:
    pool_host.bed.uevent(PF, "add")
    pool_host.bed.uevent(VFS[3], "remove")  # still queued when --once stops
    seen: list[str] = []
    count = watch_service.watch(pool_host.ctx, monitor, threading.Event(), once=True,
                                timeout=DEADLINE,
                                on_change=lambda handled: seen.append(handled.message))
    assert (count, seen) == (1, [f"PF {PF} (enp133s0f0) is back; its VFs return as they "
                                 "reappear"])
    assert events_after(pool_host, last_event_id(pool_host) - 1) == [
        ("pf.added", "tenant-a", PF, None, None)]
    assert vf_row(pool_host, VFS[3]) == ("free", None)


def test_a_change_the_store_refuses_is_reported_and_the_watch_goes_on(
        pool_host: PoolHost, monitor: UdevMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    real_apply = watch_service.apply
    refused: list[str] = []

    def apply_once_refused(ctx: Any, change: DeviceChange,
                           links: watch_service.Links) -> list[watch_service.Handled]:
        if not refused:
            refused.append(change.sys_name)
            raise StoreError("database is locked")
        return real_apply(ctx, change, links)

    monkeypatch.setattr(watch_service, "apply", apply_once_refused)
    pool_host.bed.uevent(VFS[1], "remove")
    pool_host.bed.uevent(VFS[2], "remove")
    assert run_watch(pool_host, monitor, changes=2) == [
        f"error: remove of pci device {VFS[1]} was not recorded: database is locked",
        f"VF {VFS[2]} (VF 2 of PF {PF}, pool tenant-a) removed: unusable"]


def test_handle_is_idempotent_and_keyed_by_pci_address(pool_host: PoolHost) -> None:
    removed = DeviceChange("remove", "pci", VFS[1], f"/sys/devices/pci0000:00/{VFS[1]}",
                           PciAddress.parse(VFS[1]))
    links: watch_service.Links = {}
    for expected in (1, 0):
        with pool_host.store.immediate() as session:
            assert len(watch_service.handle(session, removed, links)) == expected
    netdev_gone = DeviceChange("remove", "net", "enp133s0f0",
                               f"/sys/devices/pci0000:00/{PF}/net/enp133s0f0",
                               PciAddress.parse(PF))
    [handled] = watch_service.apply(pool_host.ctx, netdev_gone, links)
    assert handled.message == f"PF {PF} (enp133s0f0) link absent (netdev removed)"
    assert watch_service.apply(pool_host.ctx, netdev_gone, links) == []


# ---------------------------------------------------------------- the command

def test_cli_watch_runs_for_its_timeout(pool_host: PoolHost,
                                        cli: Callable[..., CliResult]) -> None:
    result = cli("--db", pool_host.db_url, "watch", "--timeout", "0")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", (
        "watching udev for PCI and net changes (1 PF(s) of the store present)\n"
        "stopped as asked after 0 change(s)\n"))


@pytest.mark.without_umockdev
def test_cli_watch_refuses_a_simulated_host(sim_root: Path,
                                            cli: Callable[..., CliResult]) -> None:
    result = cli("--sim", str(sim_root), "watch")
    assert (result.exit_code, result.stderr) == (
        2, "error: vfpool watch follows this machine's udev, and a simulated host has none: "
           "run it without --sim (or VFPOOL_SIM)\n")


class Lines:
    """A process's stderr, read line by line in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + DEADLINE
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{text!r} never appeared on stderr; it has {self.lines}")
                self._changed.wait(left)

    def all(self) -> list[str]:
        self._thread.join(DEADLINE)
        return self.lines


@pytest.fixture
def watch_process(pool_host: PoolHost) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    env = {**os.environ, "UMOCKDEV_DIR": str(pool_host.bed.root)}
    env.pop("VFPOOL_SIM", None)
    proc = subprocess.Popen(["umockdev-wrapper", str(VFPOOL), "--db", pool_host.db_url,
                             "watch"], env=env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc, Lines(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_watch_follows_udev_and_stops_cleanly_on_a_signal(
        pool_host: PoolHost, watch_process: tuple[subprocess.Popen[str], Lines],
        signum: signal.Signals) -> None:
    proc, stderr = watch_process
    stderr.wait_for("watching udev")
    pool_host.bed.remove(VFS[0])
    lost = f"{LEASED} removed: unusable; lease {pool_host.lease_id} of 'vm1' lost"
    stderr.wait_for(lost)
    os.kill(proc.pid, signum)
    assert proc.wait(timeout=DEADLINE) == 0
    assert stderr.all() == [
        "watching udev for PCI and net changes (1 PF(s) of the store present)",
        lost,
        f"stopped on {signum.name} after 1 change(s)",
    ]
    assert proc.stdout is not None and proc.stdout.read() == ""
    assert (vf_row(pool_host, VFS[0]), lease_state(pool_host)) == (("unusable", "removed"),
                                                                   "lost")


@pytest.mark.without_umockdev
def test_systemd_unit_runs_vfpool_watch_and_stops_it_with_sigterm() -> None:
    lines = UNIT.read_text().splitlines()
    assert [line.split("=", 1)[1].split()[1:] for line in lines
            if line.startswith("ExecStart=")] == [["watch"]]
    assert {"Type=exec", "KillSignal=SIGTERM", "Restart=on-failure"} <= set(lines)
