"""Which host this is: its machine id (``etc/machine-id`` under the host root) and its name.

A fleet's hosts share one store, and each row there belongs to one host; this is the key.
A simulated host keeps both under its own root (``vfpool sim create DIR`` writes them).
"""

from __future__ import annotations

import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

MACHINE_ID = re.compile(r"[0-9a-f]{32}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


@dataclass(frozen=True)
class HostIdentity:
    machine_id: str
    name: str


def write_identity(root: Path, name: str) -> HostIdentity:
    """Give a simulated host a fresh random machine id and the hostname ``name``."""
    identity = HostIdentity(uuid.uuid4().hex, name)
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "machine-id").write_text(identity.machine_id + "\n")
    (etc / "hostname").write_text(name + "\n")
    return identity


def read_identity(root: Path, *, simulated: bool) -> HostIdentity:
    """The identity of the host under ``root``.

    A real host's name is its hostname; a sim's is its ``etc/hostname`` (else its folder's
    name). A sim made before identities existed gets one now. A real host without a usable
    ``/etc/machine-id`` is keyed by a UUID derived from its name."""
    name = _text(root / "etc/hostname") if simulated else socket.gethostname()
    if not name or not NAME.fullmatch(name):
        name = root.resolve().name if simulated else (name or "localhost")
    machine_id = (_text(root / "etc/machine-id") or "").lower()
    if MACHINE_ID.fullmatch(machine_id):
        return HostIdentity(machine_id, name)
    if simulated:
        try:
            return write_identity(root, name)
        except OSError:  # a sim someone else owns: key it by its path
            return HostIdentity(uuid.uuid5(uuid.NAMESPACE_URL, str(root.resolve())).hex, name)
    return HostIdentity(uuid.uuid5(uuid.NAMESPACE_DNS, name).hex, name)


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None
