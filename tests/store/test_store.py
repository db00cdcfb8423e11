"""The store's guarantees: pragmas, constraints, locking, timestamps and error mapping.

The constraint and timestamp tests run on both backends (``store_url``: SQLite and a throwaway
PostgreSQL server); pragmas, BEGIN IMMEDIATE locking and file permissions are SQLite's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session

from vfpool.host.identity import HostIdentity
from vfpool.store import (
    DEFAULT_BUSY_TIMEOUT_MS,
    Event,
    Lease,
    Pf,
    Pool,
    PoolPf,
    Store,
    Vf,
    default_db_url,
    open_store,
)

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
PF_PCI = "0000:05:00.0"

TEST_HOST = HostIdentity("0" * 31 + "1", "test-host")


# What each backend says when a constraint stops a write: SQLite names the columns,
# PostgreSQL names the constraint (the names come from the models' naming convention).
VIOLATIONS = {
    "sqlite": {
        "one_live_lease": r"UNIQUE constraint failed: leases\.vf_id",
        "pool_pf_key": r"UNIQUE constraint failed: pool_pfs\.pool_id, pool_pfs\.pf_pci",
        "vf_pf_foreign_key": r"FOREIGN KEY constraint failed",
        "range_check": r"CHECK constraint failed: ck_pool_pfs_range",
    },
    "postgresql": {
        "one_live_lease": r'duplicate key value violates unique constraint '
                          r'"uq_leases_one_live_per_vf"',
        "pool_pf_key": r'duplicate key value violates unique constraint "pk_pool_pfs"',
        "vf_pf_foreign_key": r'insert or update on table "vfs" violates foreign key constraint '
                             r'"fk_vfs_host_id_pfs"',
        "range_check": r'new row for relation "pool_pfs" violates check constraint '
                       r'"ck_pool_pfs_range"',
    },
}


def _violation(store: Store, kind: str) -> str:
    return VIOLATIONS[store.engine.dialect.name][kind]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A SQLite store, for the tests of what only SQLite has."""
    return f"sqlite:///{tmp_path / 'vfpool.db'}"


def _open_migrated(url: str) -> Store:
    # Migrate in a store of its own: the migration resets pragmas on the connection it used,
    # which would otherwise be pooled and hide a connect hook that fails to set them.
    open_store(url, host=TEST_HOST).close()
    return open_store(url, host=TEST_HOST)


@pytest.fixture
def store(migrated_store_url: str) -> Iterator[Store]:
    """A store with the newest schema, on each backend."""
    with open_store(migrated_store_url, host=TEST_HOST) as opened:
        yield opened


@pytest.fixture
def sqlite_store(db_url: str) -> Iterator[Store]:
    with _open_migrated(db_url) as opened:
        yield opened


def _pool(name: str, *pfs: Pf) -> Pool:
    pool = Pool(name=name, method="sysfs", mode="vfio", vfs_per_pf=4)
    pool.members = [PoolPf(pf=pf, position=position) for position, pf in enumerate(pfs)]
    return pool


def _lease(pool_id: int, vf_id: int, state: str) -> Lease:
    return Lease(pool_id=pool_id, vf_id=vf_id, pf_pci=PF_PCI, vf_pci="0000:05:10.0",
                 vf_index=0, owner="vm-1", token_hash="0" * 64, state=state, mode="vfio",
                 boot_id="b" * 32)


def _seed(store: Store) -> tuple[int, int]:
    """One pool with one PF and one VF; returns (pool id, vf id)."""
    with store.session() as session:
        pf = Pf(pci=PF_PCI, netdev="enp5s0f0", totalvfs=7)
        pool = _pool("tenant-a", pf)
        vf = Vf(pf=pf, vf_index=0, pci="0000:05:10.0", netdev="enp5s0f0v0")
        session.add_all([pool, vf])
        session.flush()
        return pool.id, vf.id


def _count(session: Session, model: type[Lease] | type[PoolPf] | type[Vf]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_pragmas_are_in_force_on_a_session_connection(sqlite_store: Store) -> None:
    with sqlite_store.session() as session:
        connection = session.connection()
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == \
            DEFAULT_BUSY_TIMEOUT_MS
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


@pytest.mark.parametrize(("first", "second"), [
    ("active", "active"),
    ("reserved", "active"),
    ("active", "reserved"),
    ("reserved", "reserved"),
])
def test_two_live_leases_on_one_vf_are_impossible(store: Store, first: str, second: str) -> None:
    pool_id, vf_id = _seed(store)
    with store.session() as session:
        session.add(_lease(pool_id, vf_id, first))
    with (
        pytest.raises(IntegrityError, match=_violation(store, "one_live_lease")),
        store.session() as session,
    ):
        session.add(_lease(pool_id, vf_id, second))
    with store.session() as session:
        assert session.scalars(select(Lease.state)).all() == [first]


def test_finished_leases_do_not_block_a_live_one(store: Store) -> None:
    pool_id, vf_id = _seed(store)
    with store.session() as session:
        session.add_all([_lease(pool_id, vf_id, state)
                         for state in ("released", "released", "stale", "lost", "active")])
    with store.session() as session:
        assert _count(session, Lease) == 5


def test_lease_ids_are_never_reused(store: Store) -> None:
    pool_id, vf_id = _seed(store)
    with store.session() as session:
        lease = _lease(pool_id, vf_id, "active")
        session.add(lease)
        session.flush()
        old_id = lease.id
        session.delete(lease)
    with store.session() as session:
        lease = _lease(pool_id, vf_id, "active")
        session.add(lease)
        session.flush()
        assert lease.id > old_id


def test_a_pf_is_listed_once_per_pool(store: Store) -> None:
    _seed(store)
    with (
        pytest.raises(IntegrityError, match=_violation(store, "pool_pf_key")),
        store.session() as session,
    ):
        pool = session.scalars(select(Pool)).one()
        session.add(PoolPf(pool_id=pool.id, pf_pci=PF_PCI, position=1))
    with store.session() as session:
        assert _count(session, PoolPf) == 1


def test_deleting_a_vf_keeps_its_lease_history(store: Store) -> None:
    pool_id, vf_id = _seed(store)
    with store.session() as session:
        session.add(_lease(pool_id, vf_id, "released"))
    with store.session() as session:
        session.delete(session.get_one(Vf, vf_id))
    with store.session() as session:
        lease = session.scalars(select(Lease)).one()
        assert (lease.vf_id, lease.vf_pci) == (None, "0000:05:10.0")


def test_deleting_a_pool_cascades_its_memberships_in_the_database(store: Store) -> None:
    _seed(store)
    with store.session() as session:
        assert _count(session, PoolPf) == 1
        # Core DELETE: the ORM does not see the children, only ON DELETE CASCADE removes them.
        session.execute(delete(Pool).where(Pool.name == "tenant-a"))
    with store.session() as session:
        assert _count(session, PoolPf) == 0
        assert _pf(session) is not None


def test_foreign_keys_are_enforced(store: Store) -> None:
    with (
        pytest.raises(IntegrityError, match=_violation(store, "vf_pf_foreign_key")),
        store.session() as session,
    ):
        session.add(Vf(pf_pci="0000:99:00.0", vf_index=0, pci="0000:99:10.0"))
    with store.session() as session:
        assert _count(session, Vf) == 0


@pytest.mark.parametrize(("start", "end", "valid"), [
    (None, None, True),
    (0, 0, True),
    (2, 5, True),
    (5, 2, False),
    (3, None, False),
    (None, 3, False),
])
def test_vf_range_check(store: Store, start: int | None, end: int | None, valid: bool) -> None:
    def add() -> None:
        with store.session() as session:
            pool = _pool("tenant-a", Pf(pci=PF_PCI))
            pool.members[0].range_start = start
            pool.members[0].range_end = end
            session.add(pool)

    if valid:
        add()
    else:
        with pytest.raises(IntegrityError, match=_violation(store, "range_check")):
            add()


def _pf(session: Session) -> Pf | None:
    return session.scalars(select(Pf).where(Pf.pci == PF_PCI)).one_or_none()


def test_immediate_takes_the_write_lock(db_url: str) -> None:
    with open_store(db_url, host=TEST_HOST) as holder, \
            open_store(db_url, busy_timeout_ms=0, host=TEST_HOST) as other:
        # (Registering the host in the store is a write of its own.)
        holder.write(lambda session: None, operation="registering the host")
        # A plain session that has only read holds no write lock...
        with holder.session() as session:
            session.scalars(select(Pool)).all()
            with other.immediate():
                pass
        # ...but an immediate() one holds it from the start, before any write.
        with holder.immediate() as session:
            with pytest.raises(OperationalError, match="database is locked"), other.immediate():
                pass
            with other.session() as reader:  # WAL readers are not blocked
                assert _pf(reader) is None
            session.add(Pf(pci=PF_PCI))
        with other.immediate() as session:
            assert _pf(session) is not None


def test_timestamps_are_stored_in_utc_and_read_back_aware(store: Store) -> None:
    at = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with store.session() as session:
        session.add(Event(at=at, action="lease.acquire", detail=None))
        session.add(Pf(pci=PF_PCI))
    with store.session() as session:
        event = session.scalars(select(Event)).one()
        assert event.at == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
        assert event.at.utcoffset() == timedelta(0)
        pf = _pf(session)
        assert pf is not None and pf.first_seen.tzinfo is UTC
        stored = session.execute(text("SELECT at, detail IS NULL FROM events")).one()
        if store.engine.dialect.name == "sqlite":
            # SQLite has no timestamp type: the text is UTC, with no offset.
            assert stored == ("2024-05-01 10:30:00.000000", 1)
        else:
            # A timestamptz: the driver reads the instant back, with an offset.
            assert stored == (datetime(2024, 5, 1, 10, 30, tzinfo=UTC), True)
            assert stored[0].utcoffset() is not None
            column_type = session.execute(text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'events' AND column_name = 'at'")).scalar_one()
            assert column_type == "timestamp with time zone"


def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.session() as session:
        session.add(Event(at=datetime(2024, 5, 1, 12, 30), action="lease.acquire"))


def test_default_db_url_under_a_sim(tmp_path: Path) -> None:
    assert default_db_url(tmp_path) == f"sqlite:///{tmp_path}/vfpool.db"


def test_default_db_url_for_this_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("the root default needs root")
    assert default_db_url() == "sqlite:////var/lib/vfpool/vfpool.db"


# Tests that need an unprivileged process: as root, run the child as nobody via setpriv.

def _run_unprivileged(
    code: str, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop root for this test")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), **env},
        cwd="/", capture_output=True, text=True, check=False,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that nobody can traverse (tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="vfpool-store-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize("relative", ["vfpool.db", "state/vfpool.db"])
def test_unwritable_directory_is_permission_denied(shared_dir: Path, relative: str) -> None:
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o500)
    path = locked / relative
    code = (
        "import sys\n"
        "from vfpool.errors import PermissionDenied\n"
        "from vfpool.store import open_store\n"
        "try:\n"
        "    open_store(sys.argv[1])\n"
        "except PermissionDenied as exc:\n"
        "    print(exc)\n"
        "    sys.exit(exc.exit_code)\n"
    )
    result = _run_unprivileged(code, f"sqlite:///{path}", env={})
    assert result.stderr == ""
    assert result.stdout == (f"cannot open database {path}: permission denied "
                             "(run as root, or pass --db)\n")
    assert result.returncode == 6
    assert not path.exists()


@pytest.mark.parametrize(("xdg_state_home", "expected"), [
    ("/srv/state", "sqlite:////srv/state/vfpool/vfpool.db"),
    ("", "sqlite:////home/test/.local/state/vfpool/vfpool.db"),
    ("relative/state", "sqlite:////home/test/.local/state/vfpool/vfpool.db"),
])
def test_default_db_url_for_a_user(xdg_state_home: str, expected: str) -> None:
    code = "from vfpool.store import default_db_url\nprint(default_db_url())\n"
    result = _run_unprivileged(code, env={"XDG_STATE_HOME": xdg_state_home, "HOME": "/home/test"})
    assert result.stderr == ""
    assert result.stdout == expected + "\n"


def test_a_read_of_several_queries_sees_one_snapshot(store: Store) -> None:
    """A report or an inventory is several queries in one ``read()``: a commit that lands
    between them must not show in the later ones (PostgreSQL's READ COMMITTED would show it;
    reads are REPEATABLE READ there, as SQLite's read transaction is anyway)."""
    _seed(store)
    with store.session() as session:
        session.scalars(select(Pool)).one()  # registers the host before the read below

    def between(session: Session) -> tuple[int, int]:
        before = _count(session, Vf)
        # Another writer commits a VF while this read is between its two queries.
        with open_store(store.url, host=TEST_HOST) as other, other.session() as writer:
            pf = writer.scalars(select(Pf).where(Pf.pci == PF_PCI)).one()
            writer.add(Vf(pf=pf, vf_index=1, pci="0000:05:10.2", netdev="enp5s0f0v1"))
        return before, _count(session, Vf)

    assert store.read(between) == (1, 1)
    assert store.read(lambda session: _count(session, Vf)) == 2


def test_a_postgresql_read_transaction_writes_nothing(pg_migrated_url: str) -> None:
    """``read()`` is for reads: on PostgreSQL its transaction is READ ONLY, so work that
    writes there fails at once instead of committing through a path with no write retry.
    (SQLite's read transaction has no such mode.)"""
    with open_store(pg_migrated_url, host=TEST_HOST) as store:
        _seed(store)
        with pytest.raises(DBAPIError, match="read-only transaction"):
            store.read(lambda session: session.execute(delete(Vf)))
        assert store.read(lambda session: _count(session, Vf)) == 1
