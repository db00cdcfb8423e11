"""Shared fixtures: simulated hosts, the CLI runner, golden files, and the store backends
(a SQLite file, or a database on a throwaway PostgreSQL server: see tests/pgserver.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.pgserver import PgServer, PgUnavailable
from vfpool.cli.main import app
from vfpool.host.sysfs import Sysfs
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost
from vfpool.store import DB_FILENAME, open_store

GOLDEN = Path(__file__).parent / "data" / "golden"
VFPOOL = Path(sys.executable).parent / "vfpool"


NOBODY = 65534


def _as_nobody(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed, so no process can drop root here")
    if os.geteuid() != 0:
        pytest.skip("the suite is not running as root, so it cannot switch to another user")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           *argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=60, check=False)


def run_as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `vfpool ARGS` as user nobody (65534): the suite itself runs as root."""
    return _as_nobody([str(VFPOOL), *args], cwd)


def python_as_nobody(source: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c SOURCE ARGS`` with this venv's interpreter, as user nobody."""
    return _as_nobody([sys.executable, "-c", source, *args], cwd)


def give_to_nobody(path: Path) -> None:
    """chown -R nobody:nogroup PATH (a simulated host belongs to whoever owns its tree)."""
    os.lchown(path, NOBODY, NOBODY)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), NOBODY, NOBODY)


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory user nobody can reach (pytest's own tmp tree is root's alone, 0700): root's,
    mode 0755, so nobody may read it but not create anything in it. Removed afterwards."""
    shared = Path(tempfile.mkdtemp(prefix="vfpool-nobody-"))
    try:
        shared.chmod(0o755)
        yield shared
    finally:
        shutil.rmtree(shared)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--regenerate-output", action="store_true",
                     help="Rewrite the golden files in tests/data/golden/ from this run.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: runs against a throwaway PostgreSQL server (deselect with "
                   "-m 'not postgresql')")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything that uses the server gets the marker, including store_url's postgresql case
    # (store_url asks for pg_url at run time, so pg_server is not among its fixture names).
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        backend = params.get("store_url", params.get("migrated_store_url",
                                                     params.get("env_store")))
        if backend == "postgresql" or "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture
def sim_root(tmp_path: Path) -> Path:
    """The default simulated host: a dual-port 82599 on NUMA 0 and a dual-port X710 on NUMA 1."""
    root = tmp_path / "host"
    SimHost.create(root)
    return root


@pytest.fixture
def sim(sim_root: Path) -> SimHost:
    return SimHost(sim_root)


@pytest.fixture
def sysfs(sim: SimHost) -> Sysfs:
    return Sysfs(sim)


@pytest.fixture
def make_ctx() -> Iterator[Callable[..., Context]]:
    """Open a service Context on any simulated host (a SimHost or its root directory), with
    that host's own store: ``make_ctx(make_sim("intel-i350"))``. Keyword arguments go to
    open_context (``lock_timeout=...``). Every context it opened is closed after the test."""
    opened: list[Context] = []

    def make(host: SimHost | Path, **kwargs: Any) -> Context:
        root = host.root if isinstance(host, SimHost) else host
        context = open_context(sim=root, **kwargs)
        opened.append(context)
        return context

    yield make
    for context in reversed(opened):
        context.close()


@pytest.fixture
def ctx(make_ctx: Callable[..., Context], sim_root: Path) -> Context:
    """The service Context of the suite: the default simulated host (sim_root), with its own
    store, closed after the test. A test on another host uses make_ctx."""
    context: Context = make_ctx(sim_root)
    return context


@pytest.fixture
def make_sim(tmp_path: Path) -> Callable[..., SimHost]:
    """Build a simulated host from NIC specs: ``make_sim("mellanox-cx3", "intel-i350")``."""
    counter = iter(range(1000))

    def make(*nics: str) -> SimHost:
        return SimHost.create(tmp_path / f"host{next(counter)}", list(nics) or None)

    return make


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``vfpool ARGS`` in-process, with no VFPOOL_* from the caller's environment."""
    monkeypatch.delenv("VFPOOL_SIM", raising=False)
    monkeypatch.delenv("VFPOOL_DB", raising=False)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        result = runner.invoke(app, list(args), env=env)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/data/golden/NAME; --regenerate-output rewrites the file."""
    regenerate = bool(request.config.getoption("--regenerate-output"))

    def compare(name: str, text: str) -> None:
        path = GOLDEN / name
        if regenerate or not path.exists():
            if not regenerate:
                pytest.fail(f"golden file {path} is missing; run pytest --regenerate-output")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), f"output differs from golden file {name}"

    return compare


# -- Store backends -------------------------------------------------------------------------------

STORE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server per pytest process (each xdist worker has its own),
    started on first use and stopped by its PID at the end of the session. Skips, with the
    reason, when PostgreSQL cannot run on this machine."""
    try:
        server = PgServer.start()
    except PgUnavailable as exc:
        pytest.skip(f"PostgreSQL is not available: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test."""
    with pg_server.database(request.node.name) as url:
        yield url


@pytest.fixture(scope="session")
def pg_head_template(pg_server: PgServer) -> str:
    """A template database migrated to the newest schema, made once per server."""
    name = pg_server.create_database("vfpool_head")
    open_store(pg_server.url(name)).close()
    pg_server.mark_template(name)
    return name


@pytest.fixture
def pg_migrated_url(pg_server: PgServer, pg_head_template: str,
                    request: pytest.FixtureRequest) -> Iterator[str]:
    """Like pg_url, but the database already has the newest schema (a copy of a template):
    for tests of what the store does, not of how it migrates."""
    with pg_server.database(request.node.name, template=pg_head_template) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_head_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated to the newest schema, made once per pytest process."""
    path = tmp_path_factory.mktemp("sqlite-head") / DB_FILENAME
    open_store(f"sqlite:///{path}").close()
    return path


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store for each backend (ids sqlite, postgresql): a SQLite file under
    tmp_path, or a new database on the PostgreSQL server (which starts only when a postgresql
    case runs). Opening it runs every migration."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / DB_FILENAME}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=STORE_BACKENDS)
def migrated_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like store_url, but the store already has the newest schema, copied from a template
    made once per process: opening it migrates nothing, which saves ~0.15 s a test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_head_template")
        path = tmp_path / DB_FILENAME
        shutil.copyfile(template, path)
        path.chmod(0o600)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_migrated_url")
    return url


# The suites that open stores the way the CLI does (open_context, `vfpool` subprocesses) get
# their backend from the environment: tests/leases, tests/races and tests/reconcile use
# env_store through an autouse fixture in their conftest.py.
NO_STORE = "nostore"
# A URL no store opens from: a test pinned to NO_STORE that reaches the store fails loudly.
UNOPENABLE_DB = "nostore://this-test-claims-not-to-use-a-store"


def only_backend(backend: str) -> pytest.MarkDecorator:
    """Pin a test of the env_store suites to one backend, or to NO_STORE."""
    return pytest.mark.parametrize("env_store", [backend], indirect=True)


@dataclass(frozen=True)
class EnvStore:
    """The backend a test's contexts and `vfpool` processes find in ``VFPOOL_DB``.

    ``url`` is the shared PostgreSQL database; None for SQLite, where each simulated host has
    its own file under its root (the CLI's default without --db) and no test-wide URL exists:
    read a host's store through ``open_context(sim=root).db_url``."""

    backend: str
    url: str | None


@pytest.fixture(params=STORE_BACKENDS)
def env_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> Iterator[EnvStore]:
    """The store backend through the environment (ids sqlite, postgresql), for code that opens
    its store with ``open_context`` and for `vfpool` subprocesses, which inherit it:

    - sqlite: ``VFPOOL_DB`` is removed, so every simulated host uses its own SQLite file;
    - postgresql: ``VFPOOL_DB`` is a fresh migrated database (pg_migrated_url), shared by
      every simulated host of the test as a fleet shares one (rows are host-scoped by each
      sim's machine id).

    A test about no store at all pins itself with ``@pytest.mark.parametrize("env_store",
    [NO_STORE], indirect=True)``: ``VFPOOL_DB`` then names a URL that cannot be opened, so
    the claim is checked. A test about one backend pins that one the same way.

    A postgresql case fails when a SQLite store appeared under tmp_path (where the tests'
    simulated hosts live): something of the test did not use the database it was given."""
    backend = str(request.param)
    if backend == "sqlite":
        monkeypatch.delenv("VFPOOL_DB", raising=False)
        yield EnvStore(backend, None)
        return
    if backend == NO_STORE:
        monkeypatch.setenv("VFPOOL_DB", UNOPENABLE_DB)
        yield EnvStore(backend, None)
        return
    assert backend == "postgresql", backend
    url: str = request.getfixturevalue("pg_migrated_url")
    monkeypatch.setenv("VFPOOL_DB", url)
    yield EnvStore(backend, url)
    strays = sorted(str(path) for path in tmp_path.rglob(DB_FILENAME))
    if strays:
        pytest.fail(f"the postgresql case left SQLite stores behind, so part of it ran on "
                    f"SQLite: {', '.join(strays)}")
