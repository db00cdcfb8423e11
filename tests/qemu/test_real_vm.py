"""A real QEMU (TCG) with leased VFs whose netdevs are veth links in a throwaway network
namespace: launch, hotplug, a DHCP frame through the VF, and a crashed launcher.

Root only. Every QEMU and vfpool process is killed by its PID in teardown (``processes``), and
the namespace is deleted (``netns``), even when a test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.qemu.conftest import Processes, RealHost, pid_gone, wait_for
from vfpool.host import netns as netns_module
from vfpool.qemu.machine import QemuMachine
from vfpool.qemu.qmp import Qmp
from vfpool.service import leases as lease_service
from vfpool.service import vm
from vfpool.service.leases import live_leases
from vfpool.store import Lease

PAUSED = ["-S", "-nodefaults", "-display", "none", "-accel", "tcg", "-m", "64"]
VFPOOL = Path(sys.executable).with_name("vfpool")


# --------------------------------------------------------------------------- helpers
def links(namespace: str) -> dict[str, dict[str, Any]]:
    """The links of ``namespace`` as `ip -j link` shows them, by name."""
    result = subprocess.run(["ip", "-n", namespace, "-j", "link", "show"], capture_output=True,
                            text=True, timeout=30, check=True)
    return {link["ifname"]: link for link in json.loads(result.stdout or "[]")}


def macvtaps(namespace: str) -> list[str]:
    return sorted(name for name in links(namespace) if name.startswith("vfpmvt"))


def pci_devices(qmp: Qmp) -> dict[str, dict[str, Any]]:
    """Every PCI device of the VM, behind bridges and root ports too, by qdev id."""
    found: dict[str, dict[str, Any]] = {}

    def walk(devices: list[dict[str, Any]]) -> None:
        for device in devices:
            if device.get("qdev_id"):
                found[device["qdev_id"]] = device
            bridge = device.get("pci_bridge")
            if bridge:
                walk(bridge.get("devices", []))

    for bus in qmp.execute("query-pci"):
        walk(bus["devices"])
    return found


def peripherals(qmp: Qmp) -> set[str]:
    """The ids of the devices added with -device or device_add. (query-pci cannot see behind
    a root port of a paused VM: the guest never gave it a secondary bus number.)"""
    return {entry["name"] for entry in qmp.execute("qom-list", path="/machine/peripheral")
            if entry["type"].startswith("child<")}


def nic_macs(qmp: Qmp) -> dict[str, str]:
    """NIC id -> MAC from the monitor's `info network`."""
    text = qmp.execute("human-monitor-command", **{"command-line": "info network"})
    return dict(re.findall(r"^(\S+): index=\d+,type=nic,.*macaddr=([0-9a-f:]+)", text,
                           re.MULTILINE))


def lease_rows(host: RealHost, *, live_only: bool = False) -> list[dict[str, Any]]:
    with host.context() as ctx, ctx.store.session() as session:
        rows = live_leases(session) if live_only else list(
            session.query(Lease).order_by(Lease.id))
        return [{"id": row.id, "state": row.state, "mac": row.mac, "owner_pid": row.owner_pid,
                 "macvtap": (row.applied_config or {}).get("macvtap")} for row in rows]


def send_quit(socket_path: Path) -> None:
    """QMP quit. A running QEMU may close the socket before we do, and vfpool's Qmp.close
    then raises EOFError (see test_machine.py::test_qmp_context_exit_after_quit); that is
    not what these tests are about."""
    qmp = Qmp(socket_path).__enter__()
    try:
        qmp.execute("quit")
    finally:
        with contextlib.suppress(EOFError):
            qmp.close()


class Launch:
    """`vm.launch` in a thread, as `vfpool vm launch` runs it; ``machine`` once QEMU runs."""

    def __init__(self, host: RealHost, processes: Processes, count: int,
                 qemu_args: list[str]) -> None:
        self.host = host
        self.processes = processes
        self.machine: QemuMachine | None = None
        self.result: vm.LaunchResult | None = None
        self.error: BaseException | None = None
        self.notes: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(count, qemu_args), daemon=True)

    def _started(self, machine: QemuMachine) -> None:
        self.machine = machine
        self.processes.add(machine.pid)
        self._ready.set()

    def _run(self, count: int, qemu_args: list[str]) -> None:
        try:
            with self.host.context() as ctx:
                self.result = vm.launch(ctx, "vm1", "p", count=count, qemu_args=qemu_args,
                                        note=self.notes.append, started=self._started)
        except BaseException as exc:  # handed to the test
            self.error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> Launch:
        self._thread.start()
        self._ready.wait(60)
        if self.machine is None:
            raise AssertionError(f"vm launch did not start QEMU: {self.error!r}")
        return self

    def finish(self, timeout: float = 30.0) -> vm.LaunchResult:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "vm launch did not return after QEMU ended"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def __exit__(self, *exc_info: object) -> None:
        if self.machine is not None and self.machine.pid is not None and self.machine.running():
            os.kill(self.machine.pid, signal.SIGKILL)
        self._thread.join(30)


# --------------------------------------------------------------------------- launch
def test_launch_two_macvtap_nics_and_release_on_quit(real_host: RealHost,
                                                    processes: Processes) -> None:
    with Launch(real_host, processes, 2, PAUSED) as launched:
        assert launched.machine is not None
        held = lease_rows(real_host, live_only=True)
        assert [row["state"] for row in held] == ["active", "active"]
        assert {row["owner_pid"] for row in held} == {launched.machine.pid}
        names = [f"vfpmvt{row['id']}" for row in held]
        assert macvtaps(real_host.netns) == sorted(names)
        present = links(real_host.netns)
        for row, name in zip(held, names, strict=True):
            assert present[name]["address"] == row["mac"]
            assert present[name]["link"] in real_host.vf_netdevs
            assert row["macvtap"] == {"name": name, "netns": real_host.netns}
        with Qmp(launched.machine.qmp_socket) as qmp:
            assert qmp.execute("query-status")["status"] == "prelaunch"
            devices = pci_devices(qmp)
            macs = nic_macs(qmp)
            for row in held:
                device = f"vfpool-{row['id']}"
                assert device in devices, sorted(devices)
                assert macs[device] == row["mac"]
                assert qmp.execute("qom-get", path=f"/machine/peripheral/{device}",
                                   property="mac") == row["mac"]
        send_quit(launched.machine.qmp_socket)
        result = launched.finish()
    assert result.exitcode == 0
    assert [row["state"] for row in lease_rows(real_host)] == ["released", "released"]
    assert macvtaps(real_host.netns) == []
    assert set(real_host.vf_netdevs) <= set(links(real_host.netns))  # the VFs stay


# --------------------------------------------------------------------------- hotplug
HOTPLUG = ["-machine", "q35", "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
           "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1"]


def test_attach_and_detach_over_qmp(real_host: RealHost, processes: Processes, qemu: str,
                                    tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    with real_host.context() as ctx:
        [lease] = lease_service.acquire(ctx, "p", "vm1")
    lease_id = lease.id
    name = f"vfpmvt{lease_id}"
    socket_path = tmp_path / "qmp.sock"
    argv = [qemu, "-qmp", f"unix:{socket_path},server=on,wait=off", *PAUSED, *HOTPLUG]
    machine = QemuMachine(argv, socket_path, workdir=tmp_path)
    try:
        machine.launch()
        processes.add(machine.pid)
        sim = ["--sim", str(real_host.root)]
        attached = cli(*sim, "vm", "attach", str(socket_path), str(lease_id), "--bus", "rp1",
                       "--json")
        assert attached.exit_code == 0, attached.stderr
        assert json.loads(attached.stdout) == {"lease": lease_id,
                                               "device_id": f"vfpool-{lease_id}",
                                               "mode": "macvtap", "macvtap": name}
        assert macvtaps(real_host.netns) == [name]
        assert links(real_host.netns)[name]["address"] == lease.mac
        with Qmp(socket_path) as qmp:
            devices = peripherals(qmp)
            assert f"vfpool-{lease_id}" in devices, sorted(devices)
            assert nic_macs(qmp)[f"vfpool-{lease_id}"] == lease.mac
        assert lease_rows(real_host)[0]["macvtap"] == {"name": name, "netns": real_host.netns}

        detached = cli(*sim, "vm", "detach", str(socket_path), str(lease_id), "--timeout", "20")
        assert detached.exit_code == 0, detached.stderr
        assert detached.stdout == f"detached lease {lease_id} (vfpool-{lease_id})\n"
        with Qmp(socket_path) as qmp:
            assert f"vfpool-{lease_id}" not in peripherals(qmp)
            network = qmp.execute("human-monitor-command", **{"command-line": "info network"})
            assert f"vfpool-{lease_id}-net" not in network
        assert macvtaps(real_host.netns) == []
        assert lease_rows(real_host)[0]["macvtap"] is None
        assert lease_rows(real_host)[0]["state"] == "active"  # detach keeps the lease
    finally:
        machine.shutdown(timeout=5)
    assert machine.exitcode == 0


# --------------------------------------------------------------------------- frames
ETH_P_ALL = 0x0003


def _is_dhcp_from(frame: bytes, mac: str) -> bool:
    if len(frame) < 14 + 20 + 8:
        return False
    source = ":".join(f"{byte:02x}" for byte in frame[6:12])
    (ethertype,) = struct.unpack("!H", frame[12:14])
    if source != mac or ethertype != 0x0800 or frame[14 + 9] != 17:
        return False
    header = (frame[14] & 0x0F) * 4
    (port,) = struct.unpack("!H", frame[14 + header + 2:14 + header + 4])
    return bool(port == 67)


def test_dhcp_frame_from_the_lease_mac_reaches_the_far_veth(real_host: RealHost,
                                                            processes: Processes) -> None:
    with netns_module.entered(real_host.netns):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with raw:
        raw.bind((real_host.peers[0], 0))
        raw.settimeout(1.0)
        booting = ["-nodefaults", "-display", "none", "-accel", "tcg", "-m", "128", "-boot", "n"]
        with Launch(real_host, processes, 1, booting) as launched:
            [row] = lease_rows(real_host, live_only=True)
            seen: list[str] = []
            deadline = time.monotonic() + 30
            found = False
            while not found and time.monotonic() < deadline:
                try:
                    frame = raw.recv(65535)
                except TimeoutError:
                    continue
                seen.append(frame[6:14].hex())
                found = _is_dhcp_from(frame, row["mac"])
            assert found, (f"no DHCP frame from {row['mac']} on {real_host.peers[0]} within "
                           f"30 s; saw {len(seen)} other frames: {seen[:10]}")
            assert launched.machine is not None
            send_quit(launched.machine.qmp_socket)
            assert launched.finish().exitcode == 0
    assert lease_rows(real_host, live_only=True) == []
    assert macvtaps(real_host.netns) == []


# --------------------------------------------------------------------------- crash
PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def reaping_orphans() -> Iterator[None]:
    """Adopt orphaned descendants, as init does. This sandbox's PID 1 does not reap, and an
    unreaped QEMU stays a zombie, which `kill(pid, 0)` still finds."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return pid_gone(pid)
    return done == pid


def test_killed_launcher_takes_qemu_and_reconcile_repairs(real_host: RealHost,
                                                          processes: Processes,
                                                          tmp_path: Path,
                                                          cli: Callable[..., CliResult]) -> None:
    with reaping_orphans():
        _killed_launcher(real_host, processes, tmp_path, cli)


def _killed_launcher(real_host: RealHost, processes: Processes, tmp_path: Path,
                     cli: Callable[..., CliResult]) -> None:
    output = tmp_path / "launcher.out"
    with open(output, "wb") as sink:
        launcher = processes.add_popen(subprocess.Popen(
            [str(VFPOOL), "--sim", str(real_host.root), "vm", "launch", "--owner", "vm1",
             "--pool", "p", "--count", "1", "--", *PAUSED],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT))

    def qemu_pid() -> int | None:
        if launcher.poll() is not None:
            pytest.fail(f"vfpool vm launch ended early: {output.read_text()}")
        rows = lease_rows(real_host, live_only=True)
        if len(rows) == 1 and rows[0]["owner_pid"] not in (None, launcher.pid):
            return int(rows[0]["owner_pid"])
        return None

    pid = int(wait_for("QEMU running with the lease", qemu_pid, timeout=30))  # type: ignore
    processes.add(pid)
    [row] = lease_rows(real_host, live_only=True)
    name = f"vfpmvt{row['id']}"
    assert macvtaps(real_host.netns) == [name]

    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait(10)
    wait_for(f"QEMU (pid {pid}) ending with its launcher", lambda: reaped(pid), timeout=15)
    # The launcher had no chance to clean up: the lease is still live, the macvtap still there.
    assert [r["state"] for r in lease_rows(real_host, live_only=True)] == ["active"]
    assert macvtaps(real_host.netns) == [name]

    first = cli("--sim", str(real_host.root), "reconcile", "--json")
    assert first.exit_code == 0, first.stderr
    findings = json.loads(first.stdout)["findings"]
    stat = Path(f"/proc/{pid}/stat")
    assert len(findings) == 1, (findings, stat.read_text() if stat.exists() else "reaped")
    [finding] = findings
    assert finding["lease"] == row["id"]
    assert finding["owner"] == "vm1"
    assert finding["problem"] == f"its owner process {pid} is gone"
    assert finding["action"].endswith(f", remove macvtap {name}")
    assert finding["result"] == "free"
    assert macvtaps(real_host.netns) == []
    assert [r["state"] for r in lease_rows(real_host)] == ["stale"]

    second = cli("--sim", str(real_host.root), "reconcile", "--json")
    assert second.exit_code == 0, second.stderr
    assert json.loads(second.stdout)["findings"] == []


# --------------------------------------------------------------------------- failures, dry run
def test_launch_with_a_bad_qemu_argument_releases_everything(
        real_host: RealHost, cli: Callable[..., CliResult]) -> None:
    result = cli("--sim", str(real_host.root), "vm", "launch", "--owner", "vm1", "--pool", "p",
                 "--count", "2", "--", "-nodefaults", "-display", "none", "-no-such-option")
    assert result.exit_code != 0
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: QEMU exited while starting (exit code 1); argv: ")
    assert error.endswith(" -nodefaults -display none -no-such-option; output: "
                          "qemu-system-x86_64: -no-such-option: invalid option")
    assert "Traceback" not in result.stderr
    rows = lease_rows(real_host)
    assert len(rows) == 2
    assert {row["state"] for row in rows} == {"released"}
    assert macvtaps(real_host.netns) == []


def test_launch_dry_run_prints_argv_and_leases_nothing(
        real_host: RealHost, cli: Callable[..., CliResult]) -> None:
    result = cli("--sim", str(real_host.root), "vm", "launch", "--owner", "vm1", "--pool", "p",
                 "--count", "2", "--dry-run", "--", "-m", "64")
    assert result.exit_code == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("qemu-system-x86_64 -name vm1 -qmp unix:")
    assert "'tap,id=vfpool-1-net,fd=$TAPFD_1' " in line
    assert "'tap,id=vfpool-2-net,fd=$TAPFD_2' " in line
    assert line.endswith(" -m 64")
    assert lease_rows(real_host) == []
    assert macvtaps(real_host.netns) == []


def test_launch_shows_its_steps_on_a_terminal(real_host: RealHost) -> None:
    """On a terminal, vm launch shows leasing, each macvtap and QEMU's start as steps, with
    the command's time; here QEMU refuses an argument, so the error line follows."""
    from tests.cli.test_progress_rich import environment, on_a_terminal

    result, shown = on_a_terminal(
        "--sim", str(real_host.root), "vm", "launch", "--owner", "vm1", "--pool", "p",
        "--count", "2", "--", "-nodefaults", "-display", "none", "-no-such-option",
        env=environment())
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert result.returncode != 0
    assert "leasing 2 VF(s) of pool p for vm1" in plain
    assert len(set(re.findall(r"lease \d+: macvtap on \S+, its tap and vhost-net", plain))) == 2
    assert "starting qemu-system-x86_64 with 2 NIC(s)" in plain
    assert re.search(r"vm launch vm1: \d+\.\d s in all", plain)
    assert "error: QEMU exited while starting" in plain
    assert {row["state"] for row in lease_rows(real_host)} == {"released"}
