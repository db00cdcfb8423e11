"""The vfpool error hierarchy.

Every error that vfpool raises on purpose is a ``VfpoolError``. Each subclass also inherits the
matching built-in exception, so library callers can catch ``LookupError`` or ``PermissionError``
without knowing vfpool, and each has the exit code that DESIGN.md assigns to it. The CLI prints
``error: <message>`` and exits with ``exit_code``; there is no traceback unless ``--debug``.
"""

from __future__ import annotations

import errno as errno_module
import os
from typing import Any


class VfpoolError(Exception):
    """Base class. Exit code 1 unless a subclass says otherwise."""

    exit_code = 1

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message


class InvalidInput(VfpoolError, ValueError):
    """The user gave a value that can never be valid here. The user must act."""

    exit_code = 2


class NotFound(VfpoolError, LookupError):
    """The named object does not exist. The user must act (check the name)."""

    exit_code = 3


class Conflict(VfpoolError):
    """The request clashes with existing state. The user or administrator must act."""

    exit_code = 4


class Busy(Conflict):
    """A lock or the store stayed busy past its deadline. Nothing was changed by the step that
    waited. The user retries, or the administrator finds the process that holds it."""


class LockTimeout(Busy):
    """A vfpool lock was held by another process for longer than ``--lock-timeout``.

    ``lock`` is the lock's path, ``holders`` the PIDs that held it when the wait ended."""


class StoreBusy(Busy):
    """The store's write lock (SQLite) or its rows (PostgreSQL) stayed busy past the
    deadline, or kept failing with serialization errors."""


class Exhausted(VfpoolError):
    """The pool has no free VF that fits. The administrator must grow the pool or wait."""

    exit_code = 5


class PermissionDenied(VfpoolError, PermissionError):
    """Not root on a real host, or a wrong lease token. The user must act."""

    exit_code = 6


class HostError(VfpoolError):
    """The host (kernel, driver, a tool) failed. The administrator must act.

    ``errno`` and ``path`` or ``argv`` say what failed, so the message can be acted on.
    """

    exit_code = 1

    def __init__(self, message: str, *, errno: int | None = None, **fields: Any) -> None:
        super().__init__(message, errno=errno, **fields)
        self.errno = errno


class VerificationError(HostError):
    """The host was told to change but reads back different. The administrator must act.

    ``diff`` maps each field to its (desired, current) pair.
    """

    def __init__(self, subject: str, diff: dict[str, tuple[object, object]]) -> None:
        detail = "; ".join(f"{key}: desired {want!r}, current {have!r}" for key, (want, have)
                           in diff.items())
        super().__init__(f"{subject} did not reach the desired state ({detail})")
        self.diff = diff


class StoreError(VfpoolError):
    """The database failed in a way that is not a conflict. A developer or admin must act."""

    exit_code = 1


class KernelRefusal(OSError):
    """A kernel port's refusal of one VF field: the errno, the PF's driver and, where the
    driver's rule is known, why (``why`` starts with ``"; "`` or is empty)."""

    def __init__(self, code: int, text: str, *, driver: str | None, why: str) -> None:
        super().__init__(code, text)
        self.driver = driver
        self.why = why


def errno_name(code: int | None) -> str:
    """``errno.EBUSY`` → ``"EBUSY"``; unknown codes are printed as numbers."""
    if code is None:
        return "unknown errno"
    return errno_module.errorcode.get(code, str(code))


def describe_oserror(exc: OSError) -> str:
    """A short ``EBUSY (Device or resource busy)`` text for an OSError."""
    code = exc.errno
    return f"{errno_name(code)} ({os.strerror(code) if code else exc})"
