"""QemuMachine with the real qemu-system-x86_64 (TCG, `-machine none`): launch and QMP,
shutdown's escalation from QMP quit to SIGTERM to SIGKILL, and the errors of a QEMU that does
not start. Every QEMU is killed by its PID in teardown (``processes``)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests.qemu.conftest import Processes
from vfpool.errors import HostError, NotFound
from vfpool.qemu.machine import QemuError, QemuMachine
from vfpool.qemu.qmp import Qmp

BARE = ["-nodefaults", "-display", "none", "-accel", "tcg", "-machine", "none"]
PAUSED = ["-S", *BARE]


def make(qemu: str, tmp_path: Path, *extra: str, qmp: bool = True) -> QemuMachine:
    socket_path = tmp_path / "qmp.sock"
    argv = [qemu, *(["-qmp", f"unix:{socket_path},server=on,wait=off"] if qmp else []), *extra]
    return QemuMachine(argv, socket_path, workdir=tmp_path)


def launched(machine: QemuMachine, processes: Processes, timeout: float = 30.0) -> QemuMachine:
    try:
        machine.launch(timeout)
    finally:
        processes.add(machine.pid)
    return machine


def test_launch_query_status_and_quit(qemu: str, tmp_path: Path, processes: Processes) -> None:
    machine = launched(make(qemu, tmp_path, *PAUSED), processes)
    assert machine.pid is not None
    assert machine.running()
    assert machine.exitcode is None
    with Qmp(machine.qmp_socket) as qmp:
        status = qmp.execute("query-status")
        assert status["status"] == "prelaunch"
        assert status["running"] is False
    assert machine.shutdown(timeout=10) == 0  # QMP quit is enough
    assert not machine.running()
    assert machine.exitcode == 0
    assert "terminating on signal" not in machine.output()  # it was not SIGTERM


def test_shutdown_twice_is_safe(qemu: str, tmp_path: Path, processes: Processes) -> None:
    machine = launched(make(qemu, tmp_path, *PAUSED), processes)
    assert machine.shutdown(timeout=10) == 0
    assert machine.shutdown(timeout=10) == 0
    assert machine.wait(1) == 0


def test_context_manager_shuts_down(qemu: str, tmp_path: Path, processes: Processes) -> None:
    with make(qemu, tmp_path, *PAUSED) as machine:
        launched(machine, processes)
        assert machine.running()
    assert not machine.running()
    assert machine.exitcode == 0


def test_never_launched() -> None:
    machine = QemuMachine(["qemu-system-x86_64"], Path("/nonexistent/qmp.sock"))
    assert machine.pid is None
    assert not machine.running()
    assert machine.shutdown() is None
    assert machine.output() == ""
    with pytest.raises(HostError, match="QEMU was never launched"):
        machine.wait()


def test_launch_twice_is_refused(qemu: str, tmp_path: Path, processes: Processes) -> None:
    machine = launched(make(qemu, tmp_path, *PAUSED), processes)
    try:
        with pytest.raises(HostError, match="this QEMU was launched already"):
            machine.launch()
    finally:
        machine.shutdown(timeout=10)


def test_bad_option_raises_qemu_error_with_argv_exit_code_and_output(
        qemu: str, tmp_path: Path, processes: Processes) -> None:
    machine = make(qemu, tmp_path, *PAUSED, "-no-such-option")
    with pytest.raises(QemuError) as raised:
        launched(machine, processes)
    error = raised.value
    assert error.argv == machine.argv
    assert error.exitcode == 1
    assert machine.exitcode == 1
    assert "-no-such-option: invalid option" in error.output
    assert str(error) == (f"QEMU exited while starting (exit code 1); argv: "
                          f"{' '.join(machine.argv)}; output: {error.output.strip()}")
    assert isinstance(error, HostError)
    assert not machine.running()


def test_missing_binary_raises_qemu_error(tmp_path: Path) -> None:
    argv = [str(tmp_path / "no-such-qemu"), *PAUSED]
    machine = QemuMachine(argv, tmp_path / "qmp.sock", workdir=tmp_path)
    with pytest.raises(QemuError) as raised:
        machine.launch(timeout=5)
    assert raised.value.argv == argv
    assert raised.value.exitcode is None
    assert raised.value.output == ""
    assert str(raised.value).startswith(
        f"cannot run {tmp_path}/no-such-qemu: No such file or directory (exit code None); "
        f"argv: {tmp_path}/no-such-qemu -S")
    assert machine.pid is None
    assert machine.shutdown() is None


def test_qmp_that_never_answers_times_out_and_stops_qemu(
        qemu: str, tmp_path: Path, processes: Processes) -> None:
    """No -qmp at all: launch gives up after its timeout and does not leave QEMU running.
    (This waits shutdown's default 10 s for a quit that cannot come before it sends SIGTERM.)"""
    machine = make(qemu, tmp_path, *PAUSED, qmp=False)
    with pytest.raises(QemuError, match="QEMU's QMP socket did not answer within 1 s") as raised:
        launched(machine, processes, timeout=1)
    assert not machine.running()
    assert raised.value.argv == machine.argv
    assert raised.value.exitcode == 0
    assert "terminating on signal 15" in raised.value.output


def test_shutdown_sends_sigterm_when_qmp_is_unreachable(
        qemu: str, tmp_path: Path, processes: Processes) -> None:
    machine = launched(make(qemu, tmp_path, *PAUSED), processes)
    machine.qmp_socket = tmp_path / "elsewhere.sock"  # quit cannot be delivered
    assert machine.shutdown(timeout=1) == 0  # QEMU exits cleanly on SIGTERM
    assert not machine.running()
    assert "terminating on signal 15" in machine.output()


def shutdown_watched(machine: QemuMachine, timeout: float, limit: float) -> int | None:
    """``machine.shutdown(timeout)`` in a thread; if it has not returned after ``limit``
    seconds, kill QEMU ourselves (so nothing hangs) and fail."""
    outcome: list[int | None] = []
    worker = threading.Thread(target=lambda: outcome.append(machine.shutdown(timeout=timeout)),
                              daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        assert machine.pid is not None
        os.kill(machine.pid, signal.SIGKILL)
        worker.join(15)
        pytest.fail(f"shutdown(timeout={timeout:g}) had not returned after {limit:g} s: it never "
                    "escalated to SIGTERM/SIGKILL")
    return outcome[0]


def test_shutdown_sends_sigkill_when_qemu_ignores_quit_and_sigterm(
        qemu: str, tmp_path: Path, processes: Processes) -> None:
    """A stopped process answers no QMP and acts on no SIGTERM; only SIGKILL ends it. Quit
    (1 s), SIGTERM (1 s) and SIGKILL must be done well within 8 s."""
    machine = launched(make(qemu, tmp_path, *PAUSED), processes)
    assert machine.pid is not None
    os.kill(machine.pid, signal.SIGSTOP)
    assert shutdown_watched(machine, timeout=1, limit=8) == -signal.SIGKILL
    assert not machine.running()
    assert machine.shutdown(timeout=1) == -signal.SIGKILL


def test_qmp_context_exit_after_quit(qemu: str, tmp_path: Path, processes: Processes) -> None:
    """`with Qmp(...) as qmp: qmp.execute("quit")` must not fail when QEMU has already closed
    its end: quitting is what was asked for."""
    machine = launched(make(qemu, tmp_path, *BARE), processes)
    with Qmp(machine.qmp_socket) as qmp:
        qmp.execute("quit")
        assert machine.wait(10) == 0
    assert not machine.running()


def test_qmp_errors_are_host_errors(qemu: str, tmp_path: Path, processes: Processes) -> None:
    machine = launched(make(qemu, tmp_path, *PAUSED), processes)
    try:
        with Qmp(machine.qmp_socket) as qmp:
            with pytest.raises(HostError, match="QMP no-such-command failed: The command "
                                                "no-such-command has not been found"):
                qmp.execute("no-such-command")
            assert qmp.execute("query-status")["status"] == "prelaunch"
        with pytest.raises(NotFound, match=f"no QMP socket at {tmp_path}/nope.sock"):
            Qmp(tmp_path / "nope.sock").__enter__()
    finally:
        machine.shutdown(timeout=10)
