"""One host-wide lock around changes to PFs, so two vfpool processes never resize at once."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vfpool.errors import PermissionDenied


@contextmanager
def host_lock(root: Path) -> Iterator[None]:
    path = root / "run/vfpool/host.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held for the whole block
    except PermissionError:
        raise PermissionDenied(f"cannot take the host lock {path}: permission denied") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
