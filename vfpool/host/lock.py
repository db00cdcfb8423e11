"""File locks under the host root's run/vfpool: one for PF changes, one per VF for leases.

flock locks die with their process, so a crash never leaves a lock held, and a lock that can
be taken shows that whoever held it is gone."""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from vfpool.errors import PermissionDenied


def _open(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+")
    except PermissionError:
        raise PermissionDenied(f"cannot take the lock {path}: permission denied") from None


@contextmanager
def host_lock(root: Path) -> Iterator[None]:
    with _open(root / "run/vfpool/host.lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def vf_lock(root: Path, vf_pci: str, *, blocking: bool = True) -> Iterator[bool]:
    """Serialise host changes to one VF: acquire, release and reconcile each hold it while
    they change the VF, and re-read the lease once they have it. Yields False when
    ``blocking`` is off and another process holds the lock."""
    with _open(root / "run/vfpool/vf" / f"{vf_pci}.lock") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


@contextmanager
def acquirer_lock(root: Path) -> Iterator[str]:
    """A lock this process holds while it reserves and sets up leases; yields its name.

    Taken before the reservation commits, so every reserved lease names a lock that is held
    for as long as its acquirer lives: ``acquirer_alive`` is then exact, with no window.
    """
    name = uuid.uuid4().hex
    path = root / "run/vfpool/acquire" / f"{name}.lock"
    with _open(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield name
        finally:
            path.unlink(missing_ok=True)


def acquirer_alive(root: Path, name: str | None) -> bool:
    """Whether the process that holds acquirer lock ``name`` is still running."""
    if not name or not name.isalnum():
        return False
    path = root / "run/vfpool/acquire" / f"{name}.lock"
    try:
        handle = open(path)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
