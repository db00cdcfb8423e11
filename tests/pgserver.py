"""A throwaway PostgreSQL server for the tests and the benchmarks.

``PgServer.start()`` runs ``initdb`` and ``postgres`` from the Debian server packages
(``mk/postgres.mk`` installs them) in a new temporary directory. The server:

- runs as an unprivileged user: initdb and postgres refuse to run as root, so as root they run
  as nobody (65534) through ``setpriv``, on a directory chowned to nobody;
- listens on a unix socket in that directory only (``listen_addresses=''``), never on TCP;
- trades durability for speed (``fsync=off`` and friends): its data is thrown away;
- gets the parent-death signal, so it shuts down even when the process that started it is
  killed, and ``stop()`` ends it by its PID (SIGINT, then SIGQUIT, then SIGKILL).

Nothing here imports pytest: ``tests/conftest.py`` wraps it in fixtures, and ``make bench``
can start a server of its own. When PostgreSQL cannot run here, ``start()`` raises
``PgUnavailable`` saying why, and the fixtures skip with that reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import psycopg

# The Debian layout: /usr/lib/postgresql/MAJOR/bin. PostgreSQL 15 is what bookworm ships.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
PREFERRED_MAJOR = 15
NOBODY = 65534
SUPERUSER = "postgres"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): there is no TCP listener

# Settings for a server whose data nobody will ever need again.
TEST_SETTINGS: Mapping[str, str] = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_connections": "200",  # storms of CLI processes, each with a connection or two
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",  # no checkpoints in the middle of a bulk load
    "jit": "off",  # compiling a plan costs more than these queries take
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",  # expected errors (constraint tests) stay out of the log
    "timezone": "UTC",
}

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot run on this machine; the message says why."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    Prefers /usr/lib/postgresql/15/bin, then the newest other Debian major version, then
    wherever an ``initdb`` on PATH really lives (a /usr/local/bin symlink resolves there).
    """
    candidates: list[Path] = [DEBIAN_ROOT / str(PREFERRED_MAJOR) / "bin"]
    majors = sorted((int(path.name) for path in DEBIAN_ROOT.glob("*") if path.name.isdigit()),
                    reverse=True)
    candidates += [DEBIAN_ROOT / str(major) / "bin" for major in majors]
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bindir
    raise PgUnavailable(
        f"no PostgreSQL server binaries (initdb, postgres) in {DEBIAN_ROOT}/*/bin or on PATH; "
        f"`make deps` installs postgresql-{PREFERRED_MAJOR} (needs root)"
    )


def _launcher() -> tuple[list[str], int | None]:
    """The argv prefix for initdb and postgres, and the uid they run as (None: ours).

    As root, setpriv runs them as nobody. setpriv also sets the parent-death signal (after
    the uid change, which would clear it), so it is used when it exists, even without root.
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        return ([setpriv] if setpriv else []), None
    if setpriv is None:
        raise PgUnavailable("running as root, and setpriv (util-linux) is missing, so initdb "
                            "cannot be run as an unprivileged user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"], NOBODY


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise PgUnavailable("psycopg is not installed: pip install 'vfpool[postgresql]' "
                            f"({exc})") from exc
    return psycopg


class PgServer:
    """A running throwaway server. Make one with ``PgServer.start()``; ``stop()`` is safe to
    call twice and removes the directory."""

    def __init__(self, base: Path, bindir: Path, process: subprocess.Popen[bytes]) -> None:
        self.base = base
        self.bindir = bindir
        self.process: subprocess.Popen[bytes] | None = process
        self.pid = process.pid
        self.socket_dir = base / "socket"
        self.log_path = base / "postgres.log"
        self._admin: psycopg.Connection[Any] | None = None
        self._names = itertools.count(1)

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, *, settings: Mapping[str, str] | None = None,
              parent_dir: str | None = None) -> PgServer:
        """initdb a new cluster in a temporary directory and start postgres on it.

        ``parent_dir`` must be short: a unix socket path has at most 107 bytes.
        """
        bindir = find_bindir()
        _import_psycopg()
        prefix, uid = _launcher()
        base = Path(tempfile.mkdtemp(prefix="vfpool-pg-", dir=parent_dir))
        try:
            data, socket_dir = base / "data", base / "socket"
            socket_dir.mkdir()
            if uid is not None:
                for path in (base, socket_dir):
                    os.chown(path, uid, uid)
            # --no-sync: the files are thrown away; -A trust: only the socket, in a dir of ours.
            initdb = subprocess.run(
                [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                 "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                capture_output=True, text=True, timeout=120, check=False, cwd=base,
                env=_server_env(),
            )
            if initdb.returncode != 0:
                raise PgUnavailable(f"initdb failed (exit {initdb.returncode}): "
                                    f"{initdb.stderr.strip() or initdb.stdout.strip()}")
            options = {**TEST_SETTINGS, **(settings or {}),
                       "unix_socket_directories": str(socket_dir), "port": str(PORT)}
            argv = [*prefix]
            if prefix:
                # Pass our death on: the server must not outlive a worker that was killed.
                argv.append("--pdeathsig=SIGINT")
            argv += [str(bindir / "postgres"), "-D", str(data)]
            for name, value in options.items():
                argv += ["-c", f"{name}={value}"]
            with open(base / "postgres.log", "wb") as log:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, cwd=base, env=_server_env())
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        server = cls(base, bindir, process)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        psycopg = _import_psycopg()
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error = "the socket never appeared"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PgUnavailable(f"postgres exited with {self.process.returncode} at start; "
                                    f"its log ({self.log_path}):\n{_tail(self.log_path)}")
            if (self.socket_dir / f".s.PGSQL.{PORT}").exists():
                try:
                    self._admin = psycopg.connect(**self.conninfo("postgres"), autocommit=True)
                    return
                except psycopg.OperationalError as exc:  # still starting up
                    last_error = str(exc).strip()
            time.sleep(0.02)
        raise PgUnavailable(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s "
                            f"({last_error}); its log:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Shut the server down by its PID and remove its directory. Safe to call twice."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # Fast shutdown, then immediate, then kill: each gets its timeout.
            for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------

    def conninfo(self, dbname: str) -> dict[str, str]:
        """Keyword arguments for ``psycopg.connect``."""
        return {"host": str(self.socket_dir), "port": str(PORT), "user": SUPERUSER,
                "dbname": dbname}

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of database ``dbname``: psycopg 3 over the unix socket."""
        return (f"postgresql+psycopg://{SUPERUSER}@/{quote(dbname)}"
                f"?host={quote(str(self.socket_dir))}&port={PORT}")

    def connect(self, dbname: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        psycopg = _import_psycopg()
        connection: psycopg.Connection[Any] = psycopg.connect(**self.conninfo(dbname),
                                                              autocommit=autocommit)
        return connection

    # -- databases ----------------------------------------------------------------------------

    def create_database(self, hint: str = "test", *, template: str = "template0") -> str:
        """Create a new, empty database and return its name (``hint`` makes it readable)."""
        name = f"{re.sub(r'[^a-z0-9_]+', '_', hint.lower())[:40]}_{next(self._names)}"
        # FILE_COPY: with fsync off, copying the template's files is 4x faster than the
        # default WAL_LOG strategy (30 ms against 120 ms here).
        self._admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return name

    def mark_template(self, name: str) -> None:
        """Make a database a template: no one may connect to it or drop it by mistake."""
        self._admin_execute(
            f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any connection a test left open to it."""
        self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def databases(self) -> list[str]:
        assert self._admin is not None, "the server is stopped"
        rows = self._admin.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' "
            "ORDER BY datname").fetchall()
        return [str(row[0]) for row in rows]

    def _admin_execute(self, sql: str) -> None:
        assert self._admin is not None, "the server is stopped"
        self._admin.execute(sql)

    @contextlib.contextmanager
    def database(self, hint: str = "test", *, template: str = "template0") -> Iterator[str]:
        """A fresh database for the duration of the block; yields its SQLAlchemy URL."""
        name = self.create_database(hint, template=template)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


def _server_env() -> dict[str, str]:
    # No PG* variables from the caller: they would redirect initdb or postgres.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.setdefault("LANG", "C.UTF-8")
    return env
