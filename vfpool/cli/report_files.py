"""Writing a report's file: whole or not at all, with errors that name the file.

Shared by report_render (table, JSON, CSV) and report_metrics (Prometheus through
prometheus_client's ``write_to_textfile``), so that neither imports the other for it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import suppress
from pathlib import Path

from vfpool.errors import HostError, PermissionDenied, describe_oserror


def write_error(path: Path, exc: OSError) -> HostError | PermissionDenied:
    """The vfpool error for a failed write of ``path``: permission denied (exit 6) for EACCES,
    EPERM and EROFS, else a host error (exit 1) naming the missing directory or the errno."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return PermissionDenied(f"cannot write {path}: {reason}", path=str(path),
                                errno=exc.errno)
    if exc.errno == errno.ENOENT:
        return HostError(f"cannot write {path}: directory {path.parent} does not exist",
                         errno=exc.errno, path=str(path))
    return HostError(f"cannot write {path}: {describe_oserror(exc)}", errno=exc.errno,
                     path=str(path))


def refuse_directory(path: Path) -> None:
    if path.is_dir():
        raise HostError(f"cannot write {path}: it is a directory", errno=errno.EISDIR,
                        path=str(path))


def sync_directory(path: Path) -> None:
    """Make a rename in ``path``'s directory durable; a file system that cannot fsync a
    directory still has the complete file in place."""
    with suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_atomically(path: Path | str, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` whole, or leave it as it was.

    The text goes to a temp file in the same directory (so the rename cannot cross file
    systems), is fsynced, then renamed over ``path``; a reader sees the old file or the new
    one, never half of one. The temp name starts with a dot and ends in ``.tmp``. ``mode`` is
    set with fchmod, so the umask does not narrow it.
    """
    path = Path(path)
    refuse_directory(path)
    try:
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temp_name)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise
    sync_directory(path)
