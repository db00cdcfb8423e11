"""A small synchronous QMP session over qemu.qmp's QMPClient, with a timeout on every step.

qemu.qmp's own synchronous wrapper (legacy.QEMUMonitorProtocol) waits forever in connect() for
a QEMU that accepts the socket but never greets (a stopped process), which would keep a
shutdown from ever escalating to signals; so each call here runs under asyncio.wait_for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from vfpool.errors import HostError, NotFound

DEFAULT_TIMEOUT = 10.0
T = TypeVar("T")


class Qmp:
    """``with Qmp(path) as qmp: qmp.execute("query-pci")``."""

    def __init__(self, socket_path: Path | str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def _run(self, step: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        assert self._loop is not None
        return self._loop.run_until_complete(asyncio.wait_for(step, timeout or self.timeout))

    def __enter__(self) -> Qmp:
        from qemu.qmp import QMPClient, QMPError

        if not Path(self.socket_path).exists():
            raise NotFound(f"no QMP socket at {self.socket_path}")
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient("vfpool")
        try:
            self._run(self._client.connect(self.socket_path))
        except (QMPError, OSError, TimeoutError) as exc:
            self.close()
            raise HostError(f"cannot connect to QMP at {self.socket_path}: "
                            f"{exc or type(exc).__name__}") from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect; never raises (QEMU may have closed the socket itself after quit)."""
        if self._loop is None:
            return
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._run(self._client.disconnect(), timeout=2.0)
            self._client = None
        self._loop.close()
        self._loop = None

    def execute(self, command: str, **arguments: Any) -> Any:
        from qemu.qmp import ExecuteError, QMPError

        if self._client is None:
            raise HostError("QMP session is closed")
        try:
            return self._run(self._client.execute(command, arguments or None))
        except ExecuteError as exc:
            raise HostError(f"QMP {command} failed: {exc.error.error.desc}",
                            command=command) from exc
        except (QMPError, OSError, TimeoutError, EOFError) as exc:
            raise HostError(f"QMP {command} failed: {exc or type(exc).__name__}",
                            command=command) from exc

    def send_fd(self, fd: int, name: str) -> None:
        """Pass ``fd`` over the socket (SCM_RIGHTS) and register it as ``name`` (getfd)."""
        self._client.send_fd_scm(fd)
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
                event = self._run(self._client.events.get(), timeout=left)
            except TimeoutError:
                continue
            if event.get("event") == name and match(event.get("data", {})):
                return dict(event)
