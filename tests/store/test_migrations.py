"""Alembic migrations: one head, a schema that matches the models, up and down again.

Each test that opens a store runs on both backends (``store_url``: SQLite and a throwaway
PostgreSQL server), except the checks of SQLite's file and file modes.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from vfpool.errors import StoreError
from vfpool.host.identity import HostIdentity
from vfpool.store import Base, Pf, Store, migrations_dir, open_store

TABLES = {"hosts", "pfs", "pools", "pool_pfs", "vfs", "leases", "events"}

TEST_HOST = HostIdentity("0" * 31 + "1", "test-host")


def _tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names()) - {"alembic_version"}


@pytest.fixture
def db_url(store_url: str) -> str:
    """A fresh, empty database on each backend."""
    return store_url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url, host=TEST_HOST) as opened:
        yield opened


HEAD = "0008"  # the newest migration in migrations/versions


def test_exactly_one_head_and_it_is_the_newest_revision() -> None:
    script = ScriptDirectory(str(migrations_dir()))
    assert script.get_heads() == [HEAD]


def test_upgrade_from_empty_creates_all_tables(store: Store) -> None:
    assert _tables(store) == TABLES
    assert store.current_revision() == store.head_revision() == HEAD


def test_open_without_migrate_leaves_an_empty_database_alone(db_url: str) -> None:
    with open_store(db_url, migrate=False) as store:
        assert store.current_revision() is None
        assert _tables(store) == set()


def test_opening_twice_is_idempotent_and_keeps_data(db_url: str) -> None:
    with open_store(db_url, host=TEST_HOST) as first, first.session() as session:
        session.add(Pf(pci="0000:05:00.0", totalvfs=7))
    with open_store(db_url, host=TEST_HOST) as second:
        assert second.current_revision() == HEAD
        assert _tables(second) == TABLES
        with second.session() as session:
            assert session.scalars(select(Pf.pci)).all() == ["0000:05:00.0"]


def test_models_match_the_migrated_schema(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_partial_unique_index_is_migrated(store: Store) -> None:
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "sqlite":
            sql = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'uq_leases_one_live_per_vf'")
            ).scalar_one()
            assert "UNIQUE" in sql
            assert "WHERE state IN ('reserved', 'active')" in sql
        else:
            sql = connection.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_leases_one_live_per_vf'"
            )).scalar_one()
            # PostgreSQL prints the predicate back in its own normal form.
            assert sql.startswith("CREATE UNIQUE INDEX uq_leases_one_live_per_vf ON public.leases")
            assert re.search(r"WHERE \(\(state\)::text = ANY \(.*'reserved'.*'active'", sql), sql


def test_member_positions_are_renumbered_in_order_before_they_become_unique(
        store: Store) -> None:
    """0008 makes (pool_id, position) unique; a store whose positions were changed by hand
    keeps its pool order, ties broken by PCI address."""
    store.downgrade("0007")
    with store.engine.begin() as connection:
        connection.execute(text("INSERT INTO hosts (id, machine_id, name, first_seen, "
                                "last_seen) VALUES (1, 'm', 'h', '2026-01-01', '2026-01-01')"))
        for pci in ("0000:05:00.0", "0000:05:00.1", "0000:06:00.0", "0000:07:00.0"):
            connection.execute(text("INSERT INTO pfs (host_id, pci, totalvfs, first_seen, "
                                    "last_seen) VALUES (1, :pci, 8, '2026-01-01', "
                                    "'2026-01-01')"), {"pci": pci})
        for pool_id, name in ((1, "a"), (2, "b")):
            connection.execute(text(
                "INSERT INTO pools (id, host_id, name, state, autostart, method, mode, "
                "vfs_per_pf, created_at, updated_at) VALUES (:id, 1, :name, 'inactive', "
                "false, 'sysfs', 'vfio', 1, '2026-01-01', '2026-01-01')"),
                {"id": pool_id, "name": name})
        for pool_id, pci, position in ((1, "0000:06:00.0", 7), (1, "0000:05:00.1", 7),
                                       (1, "0000:05:00.0", 9), (1, "0000:07:00.0", -1),
                                       (2, "0000:05:00.0", 0)):
            connection.execute(text(
                "INSERT INTO pool_pfs (pool_id, pf_pci, host_id, position, free_vfs) "
                "VALUES (:pool, :pci, 1, :position, 0)"),
                {"pool": pool_id, "pci": pci, "position": position})
    store.upgrade()
    with store.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT pool_id, position, pf_pci FROM pool_pfs ORDER BY pool_id, position")).all()
    assert [tuple(row) for row in rows] == [
        (1, 0, "0000:07:00.0"), (1, 1, "0000:05:00.1"), (1, 2, "0000:06:00.0"),
        (1, 3, "0000:05:00.0"), (2, 0, "0000:05:00.0")]


def test_downgrade_to_base_then_upgrade_again(store: Store) -> None:
    store.downgrade("base")
    assert _tables(store) == set()
    assert store.current_revision() is None
    store.upgrade()
    assert _tables(store) == TABLES
    assert store.current_revision() == HEAD


# SQLite only: the database file.

def test_database_file_is_0600_and_missing_parent_is_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "state" / "vfpool.db"
    with open_store(f"sqlite:///{path}"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_unknown_newer_revision_is_refused(db_url: str) -> None:
    with open_store(db_url) as store, store.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"schema revision 9999, .* written by a newer vfpool"):
        open_store(db_url)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "vfpool.db"
    path.write_bytes(b"this is not a SQLite database, it is a text file of some length" * 20)
    expected = f"cannot open database sqlite:///{path}: file is not a database"
    with pytest.raises(StoreError, match=re.escape(expected)):
        open_store(f"sqlite:///{path}")


def test_missing_driver_is_a_store_error_that_hides_the_password() -> None:
    with pytest.raises(StoreError, match="cannot open database") as caught:
        open_store("postgresql+nosuchdriver://vfpool:secret@db.example/vfpool")
    assert "db.example" in str(caught.value)
    assert "secret" not in str(caught.value)
