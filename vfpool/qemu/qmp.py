"""A small synchronous QMP session on top of the qemu.qmp package."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from vfpool.errors import HostError, NotFound

DEFAULT_TIMEOUT = 10.0


class Qmp:
    """``with Qmp(path) as qmp: qmp.execute("query-pci")``."""

    def __init__(self, socket_path: Path | str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self._qmp: Any = None

    def __enter__(self) -> Qmp:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        if not Path(self.socket_path).exists():
            raise NotFound(f"no QMP socket at {self.socket_path}")
        monitor = QEMUMonitorProtocol(self.socket_path)
        monitor.settimeout(self.timeout)
        try:
            monitor.connect()
        except (TimeoutError, OSError) as exc:
            monitor.close()
            raise HostError(f"cannot connect to QMP at {self.socket_path}: {exc}") from exc
        self._qmp = monitor
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None

    def execute(self, command: str, **arguments: Any) -> Any:
        from qemu.qmp import ExecuteError

        if self._qmp is None:
            raise HostError("QMP session is closed")
        try:
            return self._qmp.cmd(command, **arguments)
        except ExecuteError as exc:
            raise HostError(f"QMP {command} failed: {exc.error.error.desc}",
                            command=command) from exc
        except (TimeoutError, OSError, EOFError) as exc:
            raise HostError(f"QMP {command} failed: {exc or type(exc).__name__}",
                            command=command) from exc

    def send_fd(self, fd: int, name: str) -> None:
        """Pass ``fd`` over the socket (SCM_RIGHTS) and register it as ``name`` (getfd)."""
        self._qmp.send_fd_scm(fd)
        self.execute("getfd", fdname=name)

    def wait_event(self, name: str, match: Callable[[dict[str, Any]], bool],
                   timeout: float) -> dict[str, Any]:
        """The first event ``name`` whose data ``match`` accepts, within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostError(f"QEMU sent no matching {name} event within {timeout:g} s")
            try:
                event = self._qmp.pull_event(wait=float(left))
            except TimeoutError:
                continue
            if event is not None and event.get("event") == name and match(
                    event.get("data", {})):
                return dict(event)
