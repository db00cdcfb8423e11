"""Opening the store: the engine, sessions, and Alembic migrations applied on open.

SQLite is the default store. pysqlite's own transaction handling is switched off, as in
SQLAlchemy's documented recipe for the driver, so that vfpool emits BEGIN itself; this is
what lets allocating writers use ``BEGIN IMMEDIATE`` (``Store.immediate()``) and take the
write lock before they read. The same code runs on PostgreSQL, without the SQLite pragmas.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import random
import re
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

import vfpool
from vfpool.errors import (
    InvalidInput,
    PermissionDenied,
    StoreBusy,
    StoreError,
    describe_oserror,
)
from vfpool.host.identity import HostIdentity
from vfpool.store.direct import Connections, Transaction, statements_for, transaction
from vfpool.store.tables import add_postgresql_options, hosts, metadata
from vfpool.store.types import utcnow

if TYPE_CHECKING:
    # Alembic costs ~100 ms to import; it is loaded only when a migration runs.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

DB_FILENAME = "vfpool.db"
# SQLite waits this long for the write lock in one attempt; Store.write() then retries, with
# jitter, until its deadline. Short attempts keep one stuck writer from lining up the others.
DEFAULT_BUSY_TIMEOUT_MS = 1_000
DEFAULT_DEADLINE = 30.0
_RETRY_FIRST, _RETRY_MAX = 0.005, 0.25
T = TypeVar("T")
# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, lock not available.
_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# The one constraint whose violation means "another transaction took that VF first".
_LIVE_LEASE_INDEX = "uq_leases_one_live_per_vf"
_HOST_KEY = "hosts.machine_id"  # SQLite names the column, PostgreSQL the constraint
_HOST_KEY_PG = "uq_hosts_machine_id"

# A host's row by machine id, and its name and last_seen updated: Core statements, which the
# open, the ORM's first write and the lease path's first write share (no mapper needed).
_TOUCH_HOST = update(hosts).where(hosts.c.id == bindparam("id_"))
_TOUCHED = ("name", "last_seen")
_HOST_BY_MACHINE = select(hosts.c.id).where(hosts.c.machine_id == bindparam("machine_id"))

# Execution option, set on the engine behind Store.immediate(), read by the "begin" hook.
_BEGIN_IMMEDIATE = "vfpool_begin_immediate"
# pg_advisory_xact_lock key that serialises migrations between hosts of a fleet.
_MIGRATION_LOCK_KEY = 0x7666706F6F6C  # "vfpool"


def default_db_url(sim_dir: Path | None = None) -> str:
    """The store used without ``--db``: under the sim, else system-wide for root, else per user."""
    if sim_dir is not None:
        return _sqlite_url(Path(sim_dir).absolute() / DB_FILENAME)
    if os.geteuid() == 0:
        return _sqlite_url(Path("/var/lib/vfpool") / DB_FILENAME)
    state_home = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore a relative XDG_STATE_HOME.
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return _sqlite_url(base / "vfpool" / DB_FILENAME)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def migrations_dir() -> Path:
    """The Alembic script directory: the installed ``vfpool.migrations`` package, or the
    top-level ``migrations/`` of a source checkout (where setup.cfg's mapping is not in force)."""
    try:
        return Path(str(importlib.resources.files("vfpool.migrations")))
    except ModuleNotFoundError:
        return Path(vfpool.__file__).parent.parent / "migrations"


@functools.cache
def _script_directory(location: Path) -> ScriptDirectory:
    # Parsing the revision files is the expensive part of Alembic; do it once per process.
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(location))


_REVISION_LINE = re.compile(r'^(down_revision|revision)\b[^=]*=\s*(?:"([^"]*)"|None)', re.M)


@functools.cache
def _head_from_files(location: Path) -> str | None:
    """The head revision read straight from the revision files, without importing Alembic;
    None when the files do not make one clear head (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (location / "versions").glob("*.py"):
        found = dict((key, value) for key, value in
                     ((m[1], m[2]) for m in _REVISION_LINE.finditer(script.read_text())))
        if "revision" not in found:
            continue
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    # Config values go through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means "busy, try again": SQLite's locked database, or
    PostgreSQL's serialization failures, deadlocks and lock timeouts."""
    if isinstance(exc, IntegrityError):
        # Another transaction took that VF, or registered this host, first: try again.
        return any(key in str(exc.orig) for key in
                                                   (_LIVE_LEASE_INDEX, _HOST_KEY, _HOST_KEY_PG))
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) carry the primary code in the low byte.
        code = getattr(orig, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)) \
            or "database is locked" in str(orig)
    return getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES


# Every open store, for the fork hook below.
_OPEN_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def _forget_pooled_connections() -> None:
    """In a forked child: leave the parent's pooled connections to the parent. A SQLite
    connection must not cross a fork, and a PostgreSQL one shared by two processes mixes
    their messages on one socket. ``dispose(close=False)`` gives each engine a new, empty
    pool without closing the parent's connections under it."""
    for store in list(_OPEN_STORES):
        store._connections.forget()
        store.engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pooled_connections)


class Store:
    """An open vfpool database. Use ``open_store()`` to make one.

    Service code reads with ``read()`` and writes with ``write()``. Both take a function of a
    session, run it in one transaction, and run it again when the database says "busy", with
    a jittered backoff, until ``deadline`` seconds have passed; then ``StoreBusy``. The
    function must therefore do nothing but database work: no host I/O, ever, inside a
    transaction.
    """

    def __init__(self, url: str, engine: Engine, *, deadline: float = DEFAULT_DEADLINE,
                 host: HostIdentity | None = None) -> None:
        self.url = url
        self.engine = engine
        self.deadline = deadline
        # The host whose rows this store's read()/write() see (None: every row, unscoped).
        self.host = host
        self.host_id: int | None = None
        self._host_seen = False
        self._display_url = engine.url.render_as_string(hide_password=True)
        self._is_sqlite = engine.dialect.name == "sqlite"
        # An engine that shares the pool and hooks, but whose transactions BEGIN IMMEDIATE.
        self._immediate_engine = engine.execution_options(**{_BEGIN_IMMEDIATE: True})
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._immediate_sessions = sessionmaker(self._immediate_engine, expire_on_commit=False)
        self._write_engine = self._immediate_engine if self._is_sqlite else \
            engine.execution_options(isolation_level="SERIALIZABLE")
        # A read made of several queries (a report, an inventory) sees one snapshot: SQLite's
        # read transaction does; PostgreSQL's default READ COMMITTED takes one per statement.
        self._read_engine = engine if self._is_sqlite else engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._write_sessions = self._immediate_sessions if self._is_sqlite else sessionmaker(
            self._write_engine, expire_on_commit=False)
        self._read_sessions = self._sessions if self._is_sqlite else sessionmaker(
            self._read_engine, expire_on_commit=False)
        # What a Core read sees before this host has written (see _scope).
        self._read_scope: int | None = None
        self._statements = statements_for(engine.dialect)
        self._connections = Connections(engine)  # the direct transactions'
        _OPEN_STORES.add(self)

    def __repr__(self) -> str:
        return f"Store({self._display_url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close all pooled connections. Safe to call twice."""
        self._connections.close()
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises.

        Objects stay loaded after the commit (``expire_on_commit=False``), so a caller can
        render what it wrote; lazy relationships still need the session.
        """
        with _transaction(self._sessions, begin_now=False) as session:
            # No last_seen update here: a plain session is not retried when SQLite is busy.
            host_id = self._scope(session, write=True, touch=False)
            yield session
        self._remember_host(host_id, write=True)

    @contextmanager
    def immediate(self) -> Iterator[Session]:
        """Like ``session()``, but the transaction starts at once with ``BEGIN IMMEDIATE`` on
        SQLite, holding the write lock from the first read. Allocating writers use this, so two
        of them can never pick the same free VF. Elsewhere it is a plain transaction.

        Raises ``sqlalchemy.exc.OperationalError`` ("database is locked") when another writer
        holds the lock for longer than the busy timeout.
        """
        with _transaction(self._immediate_sessions, begin_now=True) as session:
            host_id = self._scope(session, write=True)
            yield session
        self._remember_host(host_id, write=True)

    def read(self, work: Callable[[Session], T], *, operation: str = "reading the store") -> T:
        """Run ``work`` in a read transaction (retried while the database is busy)."""
        return self._retry(work, operation, write=False)

    def write(self, work: Callable[[Session], T], *, operation: str) -> T:
        """Run ``work`` in one write transaction that commits when it returns: ``BEGIN
        IMMEDIATE`` on SQLite, so it holds the write lock from its first read;
        ``SERIALIZABLE`` on PostgreSQL. Retried from the start while the database is busy;
        ``StoreBusy`` (exit 4) names ``operation`` once the deadline has passed, and then
        nothing of it was written."""
        return self._retry(work, operation, write=True)

    def read_rows(self, work: Callable[[Transaction, int | None], T], *,
                  operation: str = "reading the store") -> T:
        """Like ``read()``, for Core statements run directly on the DBAPI connection
        (store/direct.py): ``work`` gets the transaction and the host id that every
        statement must name (None: an unscoped store, every host's rows). The ORM's host
        scoping (store/scope.py) does not reach these statements; store/leasing.py writes
        the host into each of them."""
        return self._retry_core(work, operation, write=False)

    def write_rows(self, work: Callable[[Transaction, int | None], T], *,
                   operation: str) -> T:
        """Like ``write()`` (``BEGIN IMMEDIATE``, ``SERIALIZABLE``, retried while busy), for
        Core statements run directly; see ``read_rows()``."""
        return self._retry_core(work, operation, write=True)

    def _retry_core(self, work: Callable[[Transaction, int | None], T], operation: str, *,
                    write: bool) -> T:
        host_id = self._core_scope(operation, write=write)

        def attempt() -> T:
            with transaction(self._connections, self._statements, write=write) as rows:
                return work(rows, host_id)

        return self._retrying(attempt, operation)

    def _core_scope(self, operation: str, *, write: bool) -> int | None:
        """The host id a direct transaction filters on. The first write of a process updates
        the host's name and ``last_seen`` in a transaction of its own; a host the store does
        not know yet (or a read before this host has any row) goes through ``_scope`` once
        instead, which registers it and claims an upgraded store's unclaimed host row."""
        if self.host is None:
            return None
        if self.host_id is not None and write and not self._host_seen:
            host_id = self.host_id

            def touch() -> None:
                with transaction(self._connections, self._statements, write=True) as rows:
                    rows.run(_TOUCH_HOST, self._touch(host_id), _TOUCHED)

            self._retrying(touch, operation)
            self._host_seen = True
        elif self.host_id is None:
            self._retry(lambda session: None, operation, write=write)
        return self.host_id if self.host_id is not None else self._read_scope

    def _touch(self, host_id: int) -> dict[str, object]:
        """The parameters of ``_TOUCH_HOST``: this host's name, seen now."""
        assert self.host is not None
        return {"id_": host_id, "name": self.host.name, "last_seen": utcnow()}

    def _retry(self, work: Callable[[Session], T], operation: str, *, write: bool,
               scoped: bool = True) -> T:
        sessions = self._write_sessions if write else self._read_sessions

        def attempt() -> T:
            with _transaction(sessions, begin_now=write) as session:
                host_id = self._scope(session, write=write) if scoped else None
                result = work(session)
            self._remember_host(host_id, write=write)
            return result

        return self._retrying(attempt, operation)

    def _retrying(self, attempt: Callable[[], T], operation: str) -> T:
        """Run one transaction, ``attempt``, again while the database says busy, with a
        jittered backoff, until the deadline; then ``StoreBusy``."""
        deadline = time.monotonic() + self.deadline
        pause = _RETRY_FIRST
        attempts = 0
        while True:
            attempts += 1
            try:
                return attempt()
            except DBAPIError as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                if now >= deadline:
                    raise StoreBusy(
                        f"the store is busy: {operation} waited {self.deadline:g} s for "
                        f"{self._display_url} ({attempts} attempts; another process keeps it "
                        "locked); nothing was changed by this step, retry it",
                        operation=operation, attempts=attempts) from exc
                time.sleep(min(pause * random.uniform(0.5, 1.5), deadline - now))
                pause = min(pause * 2, _RETRY_MAX)

    def _remember_host(self, host_id: int | None, *, write: bool) -> None:
        """After a commit: the host's row exists (and, after a write, is up to date)."""
        if host_id is not None:
            self.host_id = host_id
            self._host_seen = self._host_seen or write

    def _scope(self, session: Session, *, write: bool, touch: bool = True) -> int | None:
        """Tag the session with this store's host (see store/scope.py); a write registers the
        host on first use, claiming the host row an upgrade left without a machine id."""
        if self.host is None:
            return None
        from vfpool.store.scope import NO_HOST, set_host

        host_id = self.host_id
        if host_id is None:
            host_id = session.connection().scalar(_HOST_BY_MACHINE,
                                                  {"machine_id": self.host.machine_id})
        if host_id is None and write:
            host_id = _register_host(session, self.host)
        elif host_id is None:
            # A read before this host has written: an upgraded store's rows are on the host
            # row no machine has claimed yet, which the first write here will claim.
            unclaimed = _unclaimed_host(session)
            self._read_scope = NO_HOST if unclaimed is None else unclaimed
            set_host(session, self._read_scope)
            return None
        elif host_id is not None and write and touch and not self._host_seen:
            session.connection().execute(_TOUCH_HOST, self._touch(host_id))
        set_host(session, NO_HOST if host_id is None else host_id)
        return host_id

    def current_revision(self) -> str | None:
        """The schema revision of the database; None when it has no vfpool schema."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            return str(rows[0][0]) if rows else None

    def head_revision(self) -> str:
        """The newest schema revision that this vfpool knows."""
        location = migrations_dir()
        quick = _head_from_files(location)
        if quick is not None:
            return quick
        from alembic.util import CommandError

        try:
            head = _script_directory(location).get_current_head()
        except CommandError as exc:
            raise StoreError(f"migrations in {location} are broken: {exc}") from exc
        if head is None:
            raise StoreError(f"no migrations found in {location}")
        return head

    def _refuse_foreign(self) -> None:
        foreign = self.foreign_tables()
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise InvalidInput(f"database {self._display_url} holds tables of another "
                               f"application ({shown}); give vfpool a database of its own",
                               tables=foreign)

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up to ``revision``; refused on another application's database."""
        from alembic import command

        self._refuse_foreign()

        self._run_alembic(lambda config: command.upgrade(config, revision))

    def downgrade(self, revision: str) -> None:
        """Migrate the schema down to ``revision`` ("base" drops every vfpool table)."""
        from alembic import command

        self._run_alembic(lambda config: command.downgrade(config, revision))

    def _open_retrying(self, migrate: bool) -> None:
        """Check (and bring up to date) the schema, waiting while another process holds the
        database, as when many processes open a new store at once."""
        def check(session: Session) -> None:
            if migrate:
                self._migrate_if_needed()
                if self.host is not None:
                    # Known hosts are known from the start: no lookup in their first command.
                    # A Core select: the ORM's mappers are set up only when a command uses
                    # them (45 ms, which a lease command never needs).
                    self.host_id = session.connection().scalar(
                        _HOST_BY_MACHINE, {"machine_id": self.host.machine_id})
            else:
                with self.engine.connect():
                    pass

        self._retry(check, "opening the store", write=False, scoped=False)

    def foreign_tables(self) -> list[str]:
        """Tables that are not vfpool's: a database of another application."""
        with self.engine.connect() as connection:
            names = set(inspect(connection).get_table_names())
        return sorted(names - set(metadata.tables) - {"alembic_version"})

    def _migrate_if_needed(self) -> None:
        head = self.head_revision()
        current = self.current_revision()
        if current == head:
            return
        self._refuse_foreign()
        if current is not None:
            known = {script.revision for script in _script_directory(migrations_dir())
                     .walk_revisions()}
            if current not in known:
                raise StoreError(
                    f"database {self._display_url} has schema revision {current}, which "
                    f"vfpool {vfpool.__version__} does not know: it was written by a newer vfpool",
                    revision=current,
                )
        self.upgrade()

    def _run_alembic(self, run: Callable[[Config], None]) -> None:
        from alembic.util import CommandError

        # BEGIN IMMEDIATE: two processes opening a new database at once migrate one after the
        # other, and the second finds the schema at head inside its own transaction.
        with self._immediate_engine.connect() as connection:
            if self._is_sqlite:
                # Batch migrations copy and drop tables; with foreign keys on, dropping a parent
                # would cascade. The pragma is a no-op inside a transaction, so set it first.
                _set_sqlite_foreign_keys(connection, enabled=False)
            try:
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                           {"key": _MIGRATION_LOCK_KEY})
                    try:
                        run(_alembic_config(connection))
                    except CommandError as exc:
                        raise StoreError(f"cannot migrate {self._display_url}: {exc}") from exc
                    if self._is_sqlite:
                        _check_sqlite_foreign_keys(connection)
            finally:
                if self._is_sqlite:
                    _set_sqlite_foreign_keys(connection, enabled=True)


def _unclaimed_host(session: Session) -> int | None:
    """The host row an upgrade left without a machine id (it owns the rows the store had)."""
    found: int | None = session.scalar(
        select(func.min(hosts.c.id)).where(hosts.c.machine_id.is_(None)))
    return found


def _register_host(session: Session, host: HostIdentity) -> int:
    """Claim the host row that an upgrade left without a machine id (it owns the rows the
    store had), or add a new one."""
    placeholder = _unclaimed_host(session)
    if placeholder is not None:
        session.execute(update(hosts).where(hosts.c.id == placeholder).values(
            machine_id=host.machine_id, name=host.name, first_seen=utcnow(),
            last_seen=utcnow()))
        return int(placeholder)
    added = cast(CursorResult[Any], session.execute(
        insert(hosts).values(machine_id=host.machine_id, name=host.name)))
    assert added.inserted_primary_key is not None
    return int(added.inserted_primary_key[0])


@contextmanager
def _transaction(sessions: sessionmaker[Session], *, begin_now: bool) -> Iterator[Session]:
    session = sessions()
    try:
        if begin_now:
            session.connection()  # emits BEGIN now rather than at the first statement
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _raw_sqlite(connection: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, connection.connection.dbapi_connection)


def _set_sqlite_foreign_keys(connection: Connection, *, enabled: bool) -> None:
    _raw_sqlite(connection).execute(f"PRAGMA foreign_keys={'ON' if enabled else 'OFF'}").close()


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise StoreError(f"migration would leave {len(broken)} rows with a dangling foreign key, "
                         f"first: {tuple(broken[0])}")


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    # busy_timeout first: switching to WAL needs a lock that another process may hold.
    pragmas = (
        f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
        "PRAGMA journal_mode=WAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA synchronous=NORMAL",  # safe with WAL: a power cut loses at most the last commits
    )

    def on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        connection = cast(sqlite3.Connection, dbapi_connection)
        # Stop pysqlite from issuing BEGIN on its own; on_begin() does it instead.
        connection.isolation_level = None
        for pragma in pragmas:
            connection.execute(pragma).close()

    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_BEGIN_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def _install_postgresql_hooks(engine: Engine, lock_timeout_ms: int) -> None:
    """A statement that waits for another transaction's row or table lock gives up after
    ``lock_timeout_ms`` (SQLSTATE 55P03), as SQLite's busy_timeout does; ``Store._retry``
    then tries again until the store's deadline, and ``StoreBusy`` (exit 4) ends it. Without
    it a lock wait on PostgreSQL lasts until the holder ends, whatever the deadline says.
    Set per connection with SET (not a startup option, which poolers may refuse)."""

    def on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        finally:
            cursor.close()
            dbapi_connection.autocommit = autocommit

    event.listen(engine, "connect", on_connect)


def missing_sqlite_file(url: str) -> bool:
    """Whether ``url`` names a SQLite database file that does not exist (yet)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite":
        return False
    path = _sqlite_file(parsed)
    return path is not None and not path.exists()


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for in-memory and ``file:`` URI databases."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("uri") or database.startswith("file:"):
        return None
    return Path(database)


def _create_sqlite_file(path: Path) -> None:
    """Create the parent directory (0700) and an empty database file (0600) if missing.

    No umask juggling: a umask can only clear mode bits, never add them.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError as exc:
        raise PermissionDenied(
            f"cannot open database {path}: permission denied (run as root, or pass --db)",
            path=str(path), errno=exc.errno,
        ) from exc
    except OSError as exc:
        raise StoreError(f"cannot open database {path}: {describe_oserror(exc)}",
                         path=str(path), errno=exc.errno) from exc
    os.close(fd)


def _postgresql_driver(url: URL) -> URL:
    """``postgresql://`` means psycopg 3, the driver the ``postgresql`` extra installs; without
    it, say which extra to install (exit 2) instead of naming a missing module."""
    if "+" not in url.drivername:  # SQLAlchemy before 2.1 would pick psycopg2
        url = url.set(drivername="postgresql+psycopg")
    if url.get_driver_name() == "psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise InvalidInput(
                f"{url.render_as_string(hide_password=True)} needs the PostgreSQL driver, "
                "which is not installed: pip install 'vfpool[postgresql]'") from exc
    return url


def open_store(
    url: str, *, migrate: bool = True, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    deadline: float = DEFAULT_DEADLINE, host: HostIdentity | None = None,
) -> Store:
    """Open the database at ``url``, creating it and migrating it to the newest schema.

    Raises ``PermissionDenied`` when the SQLite file or its directory cannot be created or
    opened, and ``StoreError`` for any other failure to open.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.get_driver_name() != "pysqlite":
                raise StoreError(f"unsupported SQLite driver in {shown}: use sqlite:// "
                                 "(pysqlite)")
            path = _sqlite_file(parsed)
            if path is not None:
                _create_sqlite_file(path)
            engine = create_engine(parsed)
            _install_sqlite_hooks(engine, busy_timeout_ms)
        else:
            if parsed.get_backend_name() == "postgresql":
                parsed = _postgresql_driver(parsed)
            engine = create_engine(parsed, pool_pre_ping=True)
            if engine.dialect.name == "postgresql":
                add_postgresql_options()
                _install_postgresql_hooks(engine, busy_timeout_ms)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot open database {shown}: {exc}") from exc

    store = Store(url, engine, deadline=deadline, host=host)
    try:
        store._open_retrying(migrate)
    except DBAPIError as exc:
        store.close()
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else str(exc)
        raise StoreError(f"cannot open database {shown}: {reason}") from exc
    except BaseException:
        store.close()
        raise
    return store
