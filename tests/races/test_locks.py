"""The locks themselves: who may open them, how long a wait lasts, what a timeout says, the
one order, reentrancy, writers not starved by readers; and the store's busy deadline.

The lock tests that never open a store run once, pinned to NO_STORE (a store opened there
fails). The busy store is a test per backend: on SQLite another connection holds the write
lock (BEGIN IMMEDIATE), as another vfpool writer would; PostgreSQL has no database-wide write
lock, so its counterpart is a transaction holding the tables a lease changes in EXCLUSIVE mode
(reads go on, every write waits) that never lets go. The contract is the same: exit 4 and one
line once the deadline has passed, and nothing changed."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from tests.conftest import NO_STORE, EnvStore, only_backend, run_as_nobody
from tests.races import (
    CALL_TIMEOUT,
    Call,
    background,
    holds,
    pf_lock,
    start_pool,
    vfpool,
    wait_until,
)
from vfpool.errors import LockTimeout, PermissionDenied, StoreBusy
from vfpool.host.lock import LOCK_DIR, LockOrderError, Locks, describe_pid, holders
from vfpool.service import leases, pools
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost
from vfpool.store import Vf, open_store

X710_0 = "0000:85:00.0"
# How long a wait on a busy store may last before the test calls its deadline missed: far
# beyond the 1 s (or 0.3 s) deadline, for a loaded machine; it bounds the test, it is no timing.
BUSY_BOUND = 15.0


def _pool(root: Path) -> None:
    start_pool(root, "p", "enp133s0f0", vfs=2, mode="vfio")


def test_lock_files_are_0600_in_a_0700_directory_of_the_hosts_owner(sim: SimHost) -> None:
    _pool(sim.root)
    folder = sim.root / LOCK_DIR
    info = folder.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, sim.root.stat().st_uid)
    files = sorted(folder.iterdir())
    assert [path.name for path in files] == [f"pf-{X710_0}.lock", f"pf-{X710_0}.lock.gate"]
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600}


def test_nobody_cannot_open_a_lock_and_a_held_lock_makes_root_exit_4_in_time() -> None:
    shared = Path(tempfile.mkdtemp(prefix="vfpool-locks-"))
    try:
        shared.chmod(0o755)
        root = shared / "host"
        SimHost.create(root)
        _pool(root)
        lock = pf_lock(root, X710_0)
        # nobody can neither open the lock nor create one of its own in the directory.
        probe = ("import sys\n"
                 "for path in sys.argv[1:]:\n"
                 "    try:\n"
                 "        open(path, 'a')\n"
                 "    except PermissionError:\n"
                 "        print('denied')\n")
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", probe, str(lock), str(lock.parent / "pf-evil.lock")],
            capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})
        assert result.stdout == "denied\ndenied\n", result.stderr
        assert not (lock.parent / "pf-evil.lock").exists()
        refused = run_as_nobody("--sim", str(root), "lease", "acquire", "p", "--owner", "x",
                                cwd=shared)
        assert refused.returncode == 6
        assert refused.stderr == (f"error: the vfpool locks of {root} belong to uid 0; run "
                                  "as that user or as root\n")
        # A lock held (by this test, through vfpool's own code) past the deadline: exit 4.
        with open_context(sim=root) as ctx, ctx.locks.pfs([X710_0], exclusive=True):
            started = time.monotonic()
            call = vfpool(root, "--lock-timeout", "1", "pool", "resize", "p", "--vfs", "3")
            waited = time.monotonic() - started
        assert call.returncode == 4, call.describe()
        assert call.stderr == (
            f"error: timed out after 1 s waiting for the lock on PF {X710_0} ({lock}), held by "
            f"PID {describe_pid(os.getpid())}; retry, or wait longer with --lock-timeout\n")
        assert waited < 30, "the deadline was not kept"
        assert vfpool(root, "pool", "info", "p", "--json").json()["vfs_per_pf"] == 2
    finally:
        shutil.rmtree(shared)


def test_a_lock_wait_ends_at_its_deadline_naming_the_holder(sim: SimHost) -> None:
    _pool(sim.root)
    sim.inject_fault(f"sys/bus/pci/devices/{X710_0}/sriov_numvfs", kind="hang")
    with background(sim.root, "pool", "resize", "p", "--vfs", "3") as resize:
        wait_until("resize holding the PF", lambda: holds(resize, pf_lock(sim.root, X710_0)),
                   resize)
        with open_context(sim=sim.root, lock_timeout=0.2) as ctx, \
                pytest.raises(LockTimeout) as caught, ctx.locks.pfs([X710_0], exclusive=False):
            pass
        assert caught.value.exit_code == 4
        assert caught.value.fields["holders"] == [resize.pid]
        assert f"held by PID {resize.pid} (vfpool --sim" in str(caught.value)
        sim.clear_faults()
        assert resize.finish().returncode == 0


@only_backend(NO_STORE)
def test_locks_are_reentrant_and_ordered(sim: SimHost) -> None:
    locks = Locks(sim.root, owner=os.geteuid(), timeout=1)
    with locks.acquirer() as name, locks.pfs(["0000:85:00.1", X710_0], exclusive=True):
        assert locks.acquirer_alive(name)
        with locks.acquirer() as same:
            assert same == name
        # A shared request is covered by the exclusive lock already held.
        with locks.pfs([X710_0], exclusive=False), locks.vf("0000:85:02.0"):
            with pytest.raises(LockOrderError), locks.pfs(["0000:86:00.0"], exclusive=False):
                pass
            with pytest.raises(LockOrderError), locks.vf("0000:85:01.0"):
                pass
        assert locks.holding() == [f"acquire-{name}.lock", f"pf-{X710_0}.lock",
                                   "pf-0000:85:00.1.lock"]
    assert locks.holding() == []
    assert not locks.acquirer_alive(name)
    # No upgrades from shared to exclusive: two processes doing it would deadlock.
    with locks.pfs([X710_0], exclusive=False), pytest.raises(LockOrderError), \
            locks.pfs([X710_0], exclusive=True):
        pass


@only_backend(NO_STORE)
def test_a_waiting_writer_holds_new_readers_back(sim: SimHost) -> None:
    """Readers (acquires) that keep coming must not starve a writer (a resize): once it
    waits, new readers queue behind it."""
    reader = Locks(sim.root, owner=os.geteuid(), timeout=0.3)
    with reader.pfs([X710_0], exclusive=False):
        script = (f"from vfpool.host.lock import Locks\nimport pathlib, os, time\n"
                  f"locks = Locks(pathlib.Path({str(sim.root)!r}), owner=os.geteuid(), "
                  "timeout=60)\n"
                  f"with locks.pfs([{X710_0!r}], exclusive=True):\n    print('got it', "
                  "flush=True)\n")
        writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  text=True)
        gate = sim.root / LOCK_DIR / f"pf-{X710_0}.lock.gate"
        deadline = time.monotonic() + 60
        while writer.pid not in holders(gate):
            assert time.monotonic() < deadline, "the writer never reached the gate"
            time.sleep(0.01)
        late = Locks(sim.root, owner=os.geteuid(), timeout=0.3)
        with pytest.raises(LockTimeout), late.pfs([X710_0], exclusive=False):
            pass
    assert writer.stdout is not None
    assert writer.stdout.readline() == "got it\n"
    assert writer.wait(timeout=60) == 0


@contextmanager
def _postgresql_writer_that_never_lets_go(url: str) -> Iterator[None]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.begin()
            connection.execute(text("LOCK TABLE leases, vfs IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                connection.rollback()
    finally:
        engine.dispose()


def _assert_nothing_was_leased(root: Path) -> None:
    with open_context(sim=root) as ctx:
        assert leases.list_leases(ctx, include_finished=True) == []
        assert pools.info(ctx, "p").vfs.free == 2


def _assert_busy_and_nothing_leased(call: Call, shown_url: str, root: Path) -> None:
    """`lease acquire --lock-timeout 1` against a store another writer holds: exit 4, one
    line naming the operation and the store, and no lease."""
    assert call.returncode == 4, call.describe()
    assert call.stderr.count("\n") == 1
    assert call.stderr.startswith("error: the store is busy: lease acquire from pool p waited "
                                  f"1 s for {shown_url} (")
    assert call.stderr.endswith("another process keeps it locked); nothing was changed by this "
                                "step, retry it\n")
    _assert_nothing_was_leased(root)


@only_backend("sqlite")
def test_a_busy_store_gives_one_line_and_exit_4_with_nothing_done(sim: SimHost) -> None:
    _pool(sim.root)
    blocker = sqlite3.connect(sim.root / "vfpool.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer that never lets go
    try:
        call = vfpool(sim.root, "--lock-timeout", "1", "lease", "acquire", "p", "--owner", "x")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _assert_busy_and_nothing_leased(call, f"sqlite:///{sim.root}/vfpool.db", sim.root)


@only_backend("postgresql")
def test_a_busy_postgresql_store_gives_one_line_and_exit_4_with_nothing_done(
        sim: SimHost, env_store: EnvStore) -> None:
    assert env_store.url is not None
    _pool(sim.root)
    with _postgresql_writer_that_never_lets_go(env_store.url):
        try:
            call = vfpool(sim.root, "--lock-timeout", "1", "lease", "acquire", "p", "--owner",
                          "x", timeout=BUSY_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`lease acquire --lock-timeout 1` still waited for the store after "
                        f"{BUSY_BOUND:g} s (killed)")
    _assert_busy_and_nothing_leased(
        call, make_url(env_store.url).render_as_string(hide_password=True), sim.root)


@only_backend("sqlite")
def test_store_busy_is_raised_from_write_after_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with open_store(f"sqlite:///{path}", deadline=0.3) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        attempts: list[int] = []
        try:
            with pytest.raises(StoreBusy) as caught:
                store.write(lambda session: attempts.append(1), operation="a test write")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert caught.value.exit_code == 4
        assert caught.value.fields["operation"] == "a test write"
        assert attempts == []  # BEGIN IMMEDIATE never got the lock: the work never ran
        assert store.write(lambda session: 7, operation="after") == 7


@only_backend("postgresql")
def test_store_busy_is_raised_from_a_postgresql_write_after_its_deadline(
        env_store: EnvStore) -> None:
    # The transaction begins without a lock here: the work runs, and its first write waits.
    url = env_store.url
    assert url is not None
    outcome: list[BaseException | int] = []

    def write() -> None:
        try:
            outcome.append(store.write(lambda session: session.execute(delete(Vf)).rowcount,
                                       operation="a test write"))
        except BaseException as exc:  # handed over to the test's thread
            outcome.append(exc)

    with open_store(url, deadline=0.3) as store:
        with _postgresql_writer_that_never_lets_go(url):
            writer = threading.Thread(target=write)
            writer.start()
            writer.join(BUSY_BOUND / 3)
            overran = writer.is_alive()
        writer.join(CALL_TIMEOUT)  # the blocker is gone: the write goes through now
        assert not overran, (f"a write with a 0.3 s deadline still waited after "
                             f"{BUSY_BOUND / 3:g} s; once the blocker let go it ended with "
                             f"{outcome}")
        [caught] = outcome
        assert isinstance(caught, StoreBusy), caught
        assert caught.exit_code == 4
        assert caught.fields["operation"] == "a test write"
        assert store.write(lambda session: 7, operation="after") == 7


@only_backend(NO_STORE)
def test_permission_denied_for_a_lock_file_that_is_a_symlink(sim: SimHost) -> None:
    locks = Locks(sim.root, owner=os.geteuid(), timeout=1)
    with locks.pfs([X710_0], exclusive=False):
        pass
    target = sim.root / "elsewhere"
    target.write_text("")
    evil = sim.root / LOCK_DIR / "pf-0000:85:00.1.lock"
    evil.symlink_to(target)
    with pytest.raises(PermissionDenied, match="is a symbolic link"), \
            locks.pfs(["0000:85:00.1"], exclusive=True):
        pass
