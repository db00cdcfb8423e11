"""A QEMU process, in the manner of QEMU's python/qemu/machine: the command line is data, the
wrapper is a context manager with guarded optional state, shutdown escalates from QMP ``quit``
to SIGTERM to SIGKILL, and cleanup is safe to run twice."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from vfpool.errors import HostError
from vfpool.qemu.qmp import Qmp

PR_SET_PDEATHSIG = 1


class QemuError(HostError):
    """QEMU failed to start or ended badly. Carries the argv, exit code and output tail."""

    def __init__(self, message: str, *, argv: list[str], exitcode: int | None,
                 output: str) -> None:
        tail = "\n".join(output.rstrip().splitlines()[-8:])
        super().__init__(f"{message} (exit code {exitcode}); argv: {' '.join(argv)}"
                         + (f"; output: {tail}" if tail else ""),
                         argv=argv, exitcode=exitcode, output=output)
        self.argv = argv
        self.exitcode = exitcode
        self.output = output


def _die_with_parent() -> None:
    # If the launcher dies (even by SIGKILL), QEMU goes too, so its leases become stale for
    # reconcile instead of being held by an orphan nobody will release.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class QemuMachine:
    def __init__(self, argv: list[str], qmp_socket: Path, *, pass_fds: tuple[int, ...] = (),
                 workdir: Path | None = None) -> None:
        self.argv = list(argv)
        self.qmp_socket = qmp_socket
        self.pass_fds = pass_fds
        self._workdir = workdir or Path(tempfile.mkdtemp(prefix="vfpool-qemu-"))
        self._log_path = self._workdir / "qemu.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._exitcode: int | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exitcode(self) -> int | None:
        return self._exitcode

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def launch(self, timeout: float = 30.0) -> None:
        """Start QEMU and wait until its QMP socket answers."""
        if self._process is not None:
            raise HostError("this QEMU was launched already")
        with open(self._log_path, "wb") as log:
            try:
                self._process = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=self.pass_fds, preexec_fn=_die_with_parent)
            except OSError as exc:
                raise QemuError(f"cannot run {self.argv[0]}: {exc.strerror}", argv=self.argv,
                                exitcode=None, output="") from exc
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                self._exitcode = code
                raise QemuError("QEMU exited while starting", argv=self.argv, exitcode=code,
                                output=self.output())
            if self.qmp_socket.exists():
                try:
                    with Qmp(self.qmp_socket, timeout=5.0) as qmp:
                        qmp.execute("query-status")
                    return
                except HostError:
                    pass
            if time.monotonic() >= deadline:
                self.shutdown(timeout=2.0)  # QMP is not answering: escalate quickly
                raise QemuError(f"QEMU's QMP socket did not answer within {timeout:g} s",
                                argv=self.argv, exitcode=self._exitcode, output=self.output())
            time.sleep(0.05)

    def wait(self, timeout: float | None = None) -> int:
        if self._process is None:
            raise HostError("QEMU was never launched")
        self._exitcode = self._process.wait(timeout)
        return self._exitcode

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """QMP quit, then SIGTERM, then SIGKILL, each given ``timeout``. Safe to call twice."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            try:
                with Qmp(self.qmp_socket, timeout=timeout) as qmp:
                    qmp.execute("quit")
            except Exception:
                pass
            for send in (None, signal.SIGTERM, signal.SIGKILL):
                if send is not None and process.poll() is None:
                    os.kill(process.pid, send)
                try:
                    process.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._exitcode = process.poll()
        return self._exitcode

    def __enter__(self) -> QemuMachine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.shutdown()
