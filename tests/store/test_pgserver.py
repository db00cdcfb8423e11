"""The throwaway PostgreSQL server of the tests (tests/pgserver.py) keeps its promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from tests.pgserver import PgServer, PgUnavailable
from vfpool.store import open_store


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_server_is_unprivileged_and_on_a_unix_socket_only(pg_server: PgServer) -> None:
    assert _uid(pg_server.pid) != 0
    with pg_server.connect("postgres") as connection:
        settings = dict(connection.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'unix_socket_directories', 'fsync')").fetchall())
    assert settings == {"listen_addresses": "", "unix_socket_directories":
                        str(pg_server.socket_dir), "fsync": "off"}


def test_each_database_is_new_and_empty_and_is_dropped(pg_server: PgServer) -> None:
    before = set(pg_server.databases())
    with pg_server.database("first") as first, pg_server.database("second") as second:
        names = {make_url(first).database, make_url(second).database}
        assert len(names) == 2
        assert set(pg_server.databases()) == before | names
        with open_store(first) as store:
            assert "pfs" in inspect(store.engine).get_table_names()
        # A store left open does not stop the drop: its connections are ended.
        left_open = open_store(second, migrate=False)
        assert inspect(left_open.engine).get_table_names() == []
    assert set(pg_server.databases()) == before
    left_open.close()


@pytest.mark.postgresql
def test_stop_ends_the_server_by_pid_and_removes_its_directory() -> None:
    try:
        server = PgServer.start()
    except PgUnavailable as exc:
        pytest.skip(f"PostgreSQL is not available: {exc}")
    process, base = server.process, server.base
    assert process is not None
    assert process.poll() is None
    server.stop()
    server.stop()  # safe twice
    assert process.returncode == 0  # a clean fast shutdown, and reaped
    assert not base.exists()
