"""vfpool's locks: ``flock`` files in ``run/vfpool/locks`` under the host root.

flock locks die with their process, so a crash never leaves one held, and a lock that can be
taken shows that whoever held it is gone. The README's architecture section describes the
model; in short, a process takes its locks in this one order, and never waits for a lock of a
lower rank while it holds one of a higher rank:

1. its own **acquirer lock** (one per process that changes leases, named in the leases it is
   changing, so that ``reconcile`` knows exactly when that process died);
2. **PF locks**, in PCI address order: a reader/writer lock per PF. Lease acquire and release
   and reconcile take it shared; everything that changes the PF's VF count or its VFs' drivers
   wholesale (pool start, resize, destroy, a module reload) takes it exclusive, on every PF it
   touches (for a reload, every PF of the driver);
3. **VF locks**, in PCI address order: one change to one VF at a time (acquire, release,
   reconcile's repairs), each re-reading the lease once it holds the lock;
4. then, innermost and never held across host I/O, a store transaction.

Security: the directory is 0700 and the files 0600, owned by the owner of the host (root on a
real host, the simulated host's owner for a sim), so nobody else can hold a lock to block
vfpool. Every wait has a deadline; past it, ``LockTimeout`` names the lock and the PIDs that
held it (from /proc/locks).

Readers could starve a writer on a plain flock. So each PF lock is a pair of files: a gate,
which a writer holds for its whole change and a reader only while it takes its shared lock,
and the lock itself. A waiting writer therefore holds new readers back at the gate.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from vfpool.errors import LockTimeout, PermissionDenied

LOCK_DIR = "run/vfpool/locks"
DEFAULT_LOCK_TIMEOUT = 30.0
_POLL_FIRST, _POLL_MAX = 0.001, 0.05

# Ranks: a lock may only be waited for while every lock held has a lower rank (or the same
# rank and a lower name).
ACQUIRER, PF, VF = 0, 1, 2


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int
    gate_fd: int | None = None


class LockOrderError(RuntimeError):
    """A developer's bug: a lock was requested out of the one order (see the module doc)."""


def holders(path: Path) -> list[int]:
    """The PIDs holding a flock on ``path``, from /proc/locks (empty when unknown)."""
    try:
        info = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    found = []
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; waiters have "->" after the id.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted \
                and fields[4].isdigit():
            found.append(int(fields[4]))
    return sorted(set(found))


def describe_pid(pid: int) -> str:
    """``1234 (vfpool pool resize tenant)``, or the bare PID when its command is unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return str(pid)
    words = [word.decode(errors="replace") for word in raw.split(b"\0") if word]
    if words and os.path.basename(words[0]).startswith("python") and len(words) > 1:
        words = words[1:]
    if words:
        words[0] = os.path.basename(words[0])
    command = " ".join(words)
    return f"{pid} ({command[:80]})" if command else str(pid)


class Locks:
    """This process's vfpool locks on one host: ordered, reentrant, with deadlines.

    ``owner`` is the uid that must own the lock directory and files (root on a real host, the
    sim's owner on a simulated one). Reentrant: a lock already held is taken again at no cost
    (an exclusive PF lock also covers a shared request), so a service step that holds a PF
    exclusively may call one that asks for it shared.
    """

    def __init__(self, root: Path, *, owner: int, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.root = root
        self.directory = root / LOCK_DIR
        self._folder = str(self.directory)  # lock paths are joined as strings: pathlib's
        # joins were a fifth of taking a lock, seven times per acquire+release
        self.owner = owner
        self.timeout = timeout
        self._held: dict[str, _Held] = {}
        self._ranks: dict[str, int] = {}
        self._checked = False

    # ------------------------------------------------------------------ the directory
    def _ensure_directory(self) -> None:
        if self._checked:
            return
        euid = os.geteuid()
        if euid not in (0, self.owner):
            raise PermissionDenied(f"the vfpool locks of {self.root} belong to uid {self.owner}; "
                                   f"run as that user or as root")
        for folder in (self.root / "run", self.root / "run/vfpool", self.directory):
            try:
                folder.mkdir(mode=0o700 if folder != self.root / "run" else 0o755)
            except FileExistsError:
                pass
            except PermissionError:
                raise PermissionDenied(f"cannot create the lock directory {folder}: permission "
                                       "denied") from None
            else:
                if euid == 0 and folder != self.root / "run":
                    os.chown(folder, self.owner, self.owner)
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != self.owner:
            raise PermissionDenied(f"lock directory {self.directory} is not a directory owned "
                                   f"by uid {self.owner}; remove it so vfpool can recreate it")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)
        self._checked = True

    def _open(self, name: str) -> int:
        self._ensure_directory()
        path = f"{self._folder}/{name}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except PermissionError:
            raise PermissionDenied(f"cannot open the lock {path}: permission denied") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PermissionDenied(f"lock {path} is a symbolic link; remove it") from None
            raise
        info = os.fstat(fd)
        if info.st_uid != self.owner and os.geteuid() == 0:
            os.fchown(fd, self.owner, self.owner)
            info = os.fstat(fd)
        if info.st_uid != self.owner or not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise PermissionDenied(f"lock {path} is not a file owned by uid {self.owner}; "
                                   "remove it")
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        return fd

    # ------------------------------------------------------------------ one lock
    def _check_order(self, name: str, rank: int) -> None:
        for held, held_rank in self._ranks.items():
            if held_rank > rank or (held_rank == rank and held > name):
                raise LockOrderError(f"lock {name} requested while holding {held}")

    def _wait(self, fd: int, mode: int, name: str, label: str, deadline: float) -> None:
        pause = _POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            now = time.monotonic()
            if now >= deadline:
                # Name the lock, not its gate; its holders are those of either file.
                path = self.directory / name.removesuffix(".gate")
                pids = sorted({pid for file in (path, path.with_name(path.name + ".gate"))
                               for pid in holders(file) if pid != os.getpid()})
                held_by = (f", held by PID {', '.join(describe_pid(pid) for pid in pids)}"
                           if pids else "")
                raise LockTimeout(f"timed out after {self.timeout:g} s waiting for the lock on "
                                  f"{label} ({path}){held_by}; retry, or wait longer with "
                                  "--lock-timeout", lock=str(path), holders=pids)
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, _POLL_MAX)

    def _take(self, name: str, rank: int, label: str, *, exclusive: bool, deadline: float,
              gate: bool = False) -> None:
        held = self._held.get(name)
        if held is not None:
            if exclusive and not held.exclusive:
                raise LockOrderError(f"lock {name} is held shared and cannot be upgraded")
            held.count += 1
            return
        self._check_order(name, rank)
        gate_fd = None
        if gate:
            # Readers pass the gate; a writer keeps it (see the module doc).
            gate_fd = self._open(name + ".gate")
            try:
                self._wait(gate_fd, fcntl.LOCK_EX, name + ".gate", label, deadline)
            except BaseException:
                os.close(gate_fd)
                raise
        try:
            fd = self._open(name)
            try:
                self._wait(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, name, label,
                           deadline)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            if gate_fd is not None:
                os.close(gate_fd)
            raise
        if gate_fd is not None and not exclusive:
            os.close(gate_fd)
            gate_fd = None
        self._held[name] = _Held(fd, exclusive, 1, gate_fd)
        self._ranks[name] = rank

    def _drop(self, name: str) -> None:
        held = self._held[name]
        held.count -= 1
        if held.count:
            return
        del self._held[name]
        del self._ranks[name]
        os.close(held.fd)  # closing the last descriptor releases the flock
        if held.gate_fd is not None:
            os.close(held.gate_fd)

    @contextmanager
    def _lock(self, name: str, rank: int, label: str, *, exclusive: bool,
              deadline: float, gate: bool = False) -> Iterator[None]:
        self._take(name, rank, label, exclusive=exclusive, deadline=deadline, gate=gate)
        try:
            yield
        finally:
            self._drop(name)

    # ------------------------------------------------------------------ the public locks
    @contextmanager
    def pfs(self, pcis: Iterable[str], *, exclusive: bool) -> Iterator[None]:
        """Hold the PF locks of ``pcis`` (in address order): shared for lease changes,
        exclusive for changes of the VF count or of the VFs' drivers."""
        deadline = time.monotonic() + self.timeout
        with ExitStack() as stack:
            for pci in sorted(set(pcis)):
                stack.enter_context(self._lock(f"pf-{pci}.lock", PF, f"PF {pci}",
                                               exclusive=exclusive, deadline=deadline,
                                               gate=True))
            yield

    @contextmanager
    def vf(self, pci: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold VF ``pci``'s lock. With ``wait`` off, yields False at once when another
        process holds it (reconcile leaves such a VF for its next run)."""
        name = f"vf-{pci}.lock"
        try:
            self._take(name, VF, f"VF {pci}", exclusive=True,
                       deadline=time.monotonic() + (self.timeout if wait else 0.0))
        except LockTimeout:
            if wait:
                raise
            yield False
            return
        try:
            yield True
        finally:
            self._drop(name)

    @contextmanager
    def acquirer(self) -> Iterator[str]:
        """A lock this process holds while it reserves, sets up or releases leases; yields
        its name, which the leases record (``leases.acquirer``).

        Taken before the reservation commits, so every lease that names it names a lock held
        for as long as its process lives: ``acquirer_alive`` is then exact, with no window.
        """
        for held, rank in self._ranks.items():
            if rank == ACQUIRER:
                yield held[len("acquire-"):-len(".lock")]
                return
        name = uuid.uuid4().hex
        filename = f"acquire-{name}.lock"
        with self._lock(filename, ACQUIRER, "this process", exclusive=True,
                        deadline=time.monotonic() + self.timeout):
            try:
                yield name
            finally:
                with suppress(FileNotFoundError):
                    os.unlink(f"{self._folder}/{filename}")

    def acquirer_alive(self, name: str | None) -> bool:
        """Whether the process holding acquirer lock ``name`` still runs."""
        if not name or not name.isalnum():
            return False
        filename = f"acquire-{name}.lock"
        if filename in self._held:
            return True
        try:
            fd = os.open(self.directory / filename, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def holding(self) -> list[str]:
        """The locks this process holds now (for tests and debugging)."""
        return sorted(self._held)
