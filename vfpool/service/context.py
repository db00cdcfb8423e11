"""Wiring: one host (real or simulated) and one store, opened lazily."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from vfpool.errors import PermissionDenied
from vfpool.host.identity import HostIdentity, read_identity
from vfpool.host.kernel import RealKernel
from vfpool.host.lock import DEFAULT_LOCK_TIMEOUT, Locks
from vfpool.host.sysfs import Sysfs
from vfpool.ports import KernelPort
from vfpool.store import Store, default_db_url, missing_sqlite_file, open_store


class FreedVf(NamedTuple):
    """A VF a release by this context left free: a good guess for the pool's next acquire."""

    pf_pci: str
    vf_pci: str
    vf_index: int


class KnownLease(NamedTuple):
    """A lease this context acquired: what its release must know before it takes locks."""

    pf_pci: str
    vf_pci: str
    token_hash: str


def host_owner(kernel: KernelPort) -> int:
    """Who owns the host's locks: root on a real host, the owner of a simulated host's tree."""
    return kernel.root.stat().st_uid if kernel.simulated else 0


class Context:
    """What a service function works on. The store is opened on first use, so commands that
    only read the host never create a database.

    ``lock_timeout`` bounds every wait: for a vfpool lock, and for the store while another
    process writes to it.

    ``read_only``: the command only reads. A SQLite store that does not exist is then not
    created: the command reads an empty store in a temporary directory, removed at close.
    """

    def __init__(self, kernel: KernelPort, db_url: str, *,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, read_only: bool = False) -> None:
        self.kernel = kernel
        self.sysfs = Sysfs(kernel)
        self.db_url = db_url
        self.lock_timeout = lock_timeout
        self.locks = Locks(kernel.root, owner=host_owner(kernel), timeout=lock_timeout)
        self.read_only = read_only
        self._store: Store | None = None
        self._identity: HostIdentity | None = None
        self._scratch: Path | None = None
        # The PFs each pool had at this context's last acquire from it: the next acquire
        # locks these without a read of its own, and the reservation checks them under the
        # lock (a pool redefined meanwhile is read again). See leases.acquire.
        self.pool_pfs: dict[str, frozenset[str]] = {}
        # What this context's own lease calls learned, so that the next call skips a
        # transaction (see leases.py, "what a context remembers"): the VF it last freed in
        # each pool, and the leases it acquired and has not released.
        self.freed: dict[str, FreedVf] = {}
        self.leased: dict[int, KnownLease] = {}

    @property
    def store(self) -> Store:
        if self._store is None:
            url = self.db_url
            if self.read_only and missing_sqlite_file(url):
                self._scratch = Path(tempfile.mkdtemp(prefix="vfpool-empty-"))
                url = f"sqlite:///{self._scratch / 'empty.db'}"
            self._store = open_store(url, deadline=self.lock_timeout, host=self.identity)
        return self._store

    @property
    def identity(self) -> HostIdentity:
        """This host's machine id and name: the key of its rows in a shared store."""
        if self._identity is None:
            self._identity = read_identity(self.kernel.root, simulated=self.kernel.simulated)
        return self._identity

    def require_root(self, action: str) -> None:
        """Refuse a change to a real host unless we are root; a sim belongs to its user."""
        if not self.kernel.simulated and os.geteuid() != 0:
            raise PermissionDenied(f"{action} changes this host's SR-IOV setup and needs root; "
                                   "run it as root, or pass --sim DIR to work on a simulated "
                                   "host")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_context(db: str | None = None, sim: Path | str | None = None,
                 root: Path | str = "/", *,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, read_only: bool = False) -> Context:
    """A context on a simulated host (``sim``) or on the machine under ``root``."""
    kernel: KernelPort
    if sim is not None:
        from vfpool.sim.host import SimHost  # the sim is only imported when asked for

        kernel = SimHost(Path(sim))
    else:
        kernel = RealKernel(Path(root))
    return Context(kernel, db or os.environ.get("VFPOOL_DB") or default_db_url(
        Path(sim) if sim is not None else None), lock_timeout=lock_timeout, read_only=read_only)
