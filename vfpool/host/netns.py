"""Running host operations inside a named network namespace (/run/netns/NAME).

A simulated host can place its VF netdevs in a throwaway namespace, where veth links stand in
for them; vfpool then makes macvtaps and opens tap devices there. Python 3.11 has no os.setns,
so this calls libc's setns(2) for the current thread.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from vfpool.errors import HostError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise HostError(f"setns failed: {os.strerror(code)}", errno=code)


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block inside network namespace ``name`` (None: stay where we are)."""
    if name is None:
        yield
        return
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except FileNotFoundError:
        raise HostError(f"network namespace {name!r} does not exist") from None
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
