"""Core statements run directly on the DBAPI connection (vfpool/store/direct.py): the same
values, errors, retries and transactions as through SQLAlchemy's Connection, on each
backend."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, delete, event, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.store.test_store import TEST_HOST, _count, _seed
from vfpool.errors import StoreBusy
from vfpool.store import Lease, Store, Vf, open_store
from vfpool.store.direct import Compiled, Statements, Transaction
from vfpool.store.engine import is_transient
from vfpool.store.leasing import LeaseRows, leases, vfs
from vfpool.store.states import LeaseState, Mode, VfState

CREATED = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)


def postgresql_only() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("migrated_store_url", ["postgresql"], indirect=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'vfpool.db'}"


@pytest.fixture
def store(migrated_store_url: str) -> Iterator[Store]:
    with open_store(migrated_store_url, host=TEST_HOST) as opened:
        yield opened


def _lease_values(pool_id: int, vf_id: int, host_id: int, **values: Any) -> dict[str, Any]:
    return {"host_id": host_id, "pool_id": pool_id, "vf_id": vf_id, "pf_pci": "0000:05:00.0",
            "vf_pci": "0000:05:10.0", "vf_index": 0, "owner": "vm-1", "owner_pid": None,
            "acquirer": None, "token_hash": "0" * 64, "state": LeaseState.ACTIVE,
            "mode": Mode.VFIO, "mac": "02:00:00:00:00:01", "vlan": None, "numa_node": 1,
            "boot_id": "b" * 32, **values}


def _seeded(store: Store) -> tuple[int, int, int]:
    pool_id, vf_id = _seed(store)
    store.write(lambda session: None, operation="registering")
    assert store.host_id is not None
    return pool_id, vf_id, store.host_id


def test_values_go_in_and_come_back_as_the_orm_has_them(store: Store) -> None:
    """Aware timestamps, JSON, StrEnums and NULLs go through the column types' processors
    both ways: what a direct read returns is what the ORM reads of the same row."""
    pool_id, vf_id, host_id = _seeded(store)
    applied = {"mac": "02:00:00:00:00:01", "vlan": 0, "spoofchk": True, "driver": "vfio-pci",
               "nested": {"list": [1, None, "é"]}}

    def add(transaction: Transaction, host: int | None) -> int:
        return LeaseRows(transaction, host).add_lease(_lease_values(
            pool_id, vf_id, host_id, applied_config=applied, saved_config=None))

    lease_id = store.write_rows(add, operation="adding a lease")
    store.write_rows(lambda transaction, host: LeaseRows(transaction, host).change_lease(
        lease_id, None, released_at=CREATED), operation="changing it")
    row = store.read_rows(lambda transaction, host: LeaseRows(transaction, host).lease(lease_id))
    assert row.applied_config == applied
    assert row.saved_config is None
    assert row.state is LeaseState.ACTIVE and row.mode is Mode.VFIO
    assert row.released_at == CREATED and row.released_at.tzinfo is not None
    assert row.created_at.tzinfo is not None
    orm = store.read(lambda session: session.get(Lease, lease_id))
    assert orm is not None
    assert (orm.applied_config, orm.saved_config, orm.created_at, orm.released_at,
            orm.state, orm.numa_node) == (row.applied_config, row.saved_config,
                                          row.created_at, row.released_at, row.state,
                                          row.numa_node)
    # A JSON NULL is SQL NULL (none_as_null), not the text 'null'.
    assert store.read(lambda session: session.scalar(
        select(Lease.id).where(Lease.saved_config.is_(None)))) == lease_id


def test_a_work_that_raises_leaves_nothing_and_the_connection_serves_again(
        store: Store) -> None:
    pool_id, vf_id, host_id = _seeded(store)

    def add_then_fail(transaction: Transaction, host: int | None) -> None:
        LeaseRows(transaction, host).add_lease(_lease_values(pool_id, vf_id, host_id))
        raise RuntimeError("after the insert")

    with pytest.raises(RuntimeError, match="after the insert"):
        store.write_rows(add_then_fail, operation="a failing write")
    assert store.read(lambda session: _count(session, Lease)) == 0
    lease_id = store.write_rows(lambda transaction, host: LeaseRows(transaction, host).add_lease(
        _lease_values(pool_id, vf_id, host_id)), operation="a write after it")
    assert store.read(lambda session: _count(session, Lease)) == 1
    assert lease_id > 0


def test_a_second_live_lease_is_sqlalchemys_integrity_error(store: Store) -> None:
    """A DBAPI error comes out as SQLAlchemy makes it, so the store's retry judges it as any
    other. On PostgreSQL the one-live-lease index means "another acquire took that VF first"
    and is retried (here, where it never clears, until StoreBusy); on SQLite, where BEGIN
    IMMEDIATE serialises writers, it can only be a bug, and it is raised at once."""
    pool_id, vf_id, host_id = _seeded(store)
    store.write_rows(lambda transaction, host: LeaseRows(transaction, host).add_lease(
        _lease_values(pool_id, vf_id, host_id)), operation="the first lease")
    raised: list[BaseException] = []

    def second(transaction: Transaction, host: int | None) -> None:
        try:
            LeaseRows(transaction, host).add_lease(_lease_values(pool_id, vf_id, host_id))
        except BaseException as exc:
            raised.append(exc)
            raise

    store.deadline = 0.2
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(StoreBusy) as busy:
            store.write_rows(second, operation="a second live lease")
        assert len(raised) >= 2, "the violation was not retried"
        assert busy.value.fields["operation"] == "a second live lease"
        assert "uq_leases_one_live_per_vf" in str(raised[0])
    else:
        with pytest.raises(IntegrityError):
            store.write_rows(second, operation="a second live lease")
        assert len(raised) == 1
        assert "UNIQUE constraint failed: leases.vf_id" in str(raised[0])
    assert all(isinstance(exc, IntegrityError) for exc in raised)
    assert is_transient(raised[0]) == (store.engine.dialect.name == "postgresql")
    assert store.read(lambda session: _count(session, Lease)) == 1


def test_a_foreign_key_violation_is_raised_at_once(store: Store) -> None:
    _, vf_id, host_id = _seeded(store)
    calls: list[int] = []

    def no_such_pool(transaction: Transaction, host: int | None) -> None:
        calls.append(1)
        LeaseRows(transaction, host).add_lease(_lease_values(9999, vf_id, host_id))

    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        store.write_rows(no_such_pool, operation="a lease of no pool")
    assert calls == [1]
    assert store.read(lambda session: _count(session, Lease)) == 0


def test_a_held_write_lock_makes_a_direct_write_busy_before_its_work_runs(
        sqlite_url: str) -> None:
    with open_store(sqlite_url, deadline=0.3, busy_timeout_ms=50, host=TEST_HOST) as store:
        store.write(lambda session: None, operation="registering")
        blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        ran: list[int] = []
        try:
            with pytest.raises(StoreBusy) as caught:
                store.write_rows(lambda transaction, host: ran.append(1),
                                 operation="a direct write")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert caught.value.exit_code == 4 and caught.value.fields["attempts"] >= 2
        assert ran == []  # BEGIN IMMEDIATE never got the lock
        assert store.write_rows(lambda transaction, host: 7, operation="after") == 7


def test_a_direct_write_holds_the_write_lock_from_its_begin(sqlite_url: str) -> None:
    with open_store(sqlite_url, host=TEST_HOST) as store, \
            open_store(sqlite_url, busy_timeout_ms=0, host=TEST_HOST) as other:
        store.write(lambda session: None, operation="registering")
        inside = threading.Event()
        leave = threading.Event()
        seen: list[BaseException] = []

        def hold(transaction: Transaction, host: int | None) -> None:
            inside.set()
            assert leave.wait(10)

        writer = threading.Thread(target=store.write_rows, args=(hold,),
                                  kwargs={"operation": "holding"})
        writer.start()
        try:
            assert inside.wait(10)
            raw = other.engine.raw_connection()
            try:
                raw.dbapi_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            except sqlite3.OperationalError as exc:
                seen.append(exc)
            finally:
                raw.close()
        finally:
            leave.set()
            writer.join(10)
        assert [str(exc) for exc in seen] == ["database is locked"]


def _mark_connection(transaction: Transaction, host: int | None) -> None:
    """A temporary table: it lives on the one connection that made it."""
    transaction.run(text("CREATE TEMP TABLE marked (x INTEGER)"), {})


def _on_marked(transaction: Transaction, host: int | None) -> bool:
    if transaction.dialect.name == "postgresql":
        return bool(transaction.scalars(text(
            "SELECT to_regclass('pg_temp.marked') IS NOT NULL"), {})[0])
    return bool(transaction.scalars(text(
        "SELECT count(*) FROM sqlite_temp_master WHERE name = 'marked'"), {})[0])


def test_direct_transactions_run_on_one_held_connection(sqlite_url: str) -> None:
    """On SQLite a store keeps its connection between direct transactions: no pool checkout
    after the first, the same connection each time, and no lock held between them."""
    with open_store(sqlite_url, host=TEST_HOST) as store:
        store.write(lambda session: None, operation="registering")
        checkouts: list[object] = []
        closed: list[object] = []
        event.listen(store.engine.pool, "checkout",
                     lambda dbapi_connection, *args: checkouts.append(dbapi_connection))
        event.listen(store.engine.pool, "close",
                     lambda dbapi_connection, *args: closed.append(dbapi_connection))
        store.write_rows(_mark_connection, operation="marking")
        [held] = checkouts
        checkouts.clear()
        for _ in range(5):
            assert store.read_rows(_on_marked) is True
            assert store.write_rows(_on_marked, operation="a write") is True
        assert checkouts == []
        assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        # Held, it holds no lock: another connection takes the write lock at once.
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None,
                                timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
    # Closing the store gave it back to the pool before the pool closed its connections.
    assert held in closed


def test_threads_that_come_and_go_keep_no_connection_out(sqlite_url: str) -> None:
    """One connection is held per store, for the thread that first ran a direct transaction:
    more threads than the pool has connections (fifteen), one after the other, each run their
    transactions on a connection they give back, and none is left out when they end."""
    with open_store(sqlite_url, host=TEST_HOST) as store:
        store.write(lambda session: None, operation="registering")
        store.write_rows(_mark_connection, operation="marking")
        seen: list[object] = []

        def work() -> None:
            try:
                seen.append((store.read_rows(_on_marked),
                             store.write_rows(_on_marked, operation="a thread's write")))
            except BaseException as exc:
                seen.append(exc)

        for _ in range(20):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join(60)
        assert seen == [(False, False)] * 20
        assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert store.read_rows(_on_marked) is True


def test_a_direct_transaction_inside_another_runs_on_another_connection(
        sqlite_url: str) -> None:
    with open_store(sqlite_url, host=TEST_HOST) as store:
        store.write(lambda session: None, operation="registering")
        store.write_rows(_mark_connection, operation="marking")

        def outer(transaction: Transaction, host: int | None) -> tuple[bool, bool]:
            return _on_marked(transaction, host), store.read_rows(_on_marked)

        assert store.write_rows(outer, operation="outer") == (True, False)
        # The inner one went back to the pool; the outer one is still this thread's.
        assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert store.read_rows(_on_marked) is True


def test_a_held_connection_that_broke_is_replaced(sqlite_url: str) -> None:
    with open_store(sqlite_url, host=TEST_HOST) as store:
        store.write(lambda session: None, operation="registering")
        store.write_rows(_mark_connection, operation="marking")

        def close_under_it(transaction: Transaction, host: int | None) -> None:
            transaction._cursor.connection.close()
            transaction.scalars(text("SELECT 1"), {})

        with pytest.raises(DBAPIError, match="closed database"):
            store.read_rows(close_under_it)
        assert store.read_rows(_on_marked) is False  # a new connection
        assert store.write_rows(lambda transaction, host: 7, operation="after") == 7
        assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]


@postgresql_only()
def test_a_direct_postgresql_read_is_read_only(store: Store) -> None:
    _seeded(store)
    with pytest.raises(DBAPIError, match="read-only transaction"):
        store.read_rows(lambda transaction, host: transaction.run(delete(vfs), {}))
    assert store.read(lambda session: _count(session, Vf)) == 1


@postgresql_only()
def test_a_direct_postgresql_write_is_serializable(store: Store) -> None:
    _seeded(store)
    shown = store.write_rows(lambda transaction, host: transaction.scalars(
        text("SHOW transaction_isolation"), {}), operation="asking")
    assert shown == ["serializable"]


@postgresql_only()
def test_a_postgresql_connection_killed_between_transactions_is_replaced(store: Store) -> None:
    pool_id, vf_id, host_id = _seeded(store)
    pid = store.read_rows(lambda transaction, host: transaction.scalars(
        select(text("pg_backend_pid()")), {}))[0]
    with open_store(store.url) as admin, admin.engine.connect() as connection:
        assert connection.scalar(text(f"SELECT pg_terminate_backend({int(pid)})")) is True
    lease_id = store.write_rows(lambda transaction, host: LeaseRows(transaction, host).add_lease(
        _lease_values(pool_id, vf_id, host_id)), operation="after the kill")
    assert store.read(lambda session: session.get(Lease, lease_id)) is not None


@postgresql_only()
def test_a_postgresql_connection_killed_inside_a_transaction_is_thrown_out_of_the_pool(
        store: Store) -> None:
    _seeded(store)
    killed: list[int] = []
    invalidated: list[object] = []
    event.listen(store.engine.pool, "invalidate",
                 lambda dbapi_connection, record, exc: invalidated.append(exc))

    def kill_own_backend(transaction: Transaction, host: int | None) -> None:
        killed.append(transaction.scalars(select(text("pg_backend_pid()")), {})[0])
        with open_store(store.url) as admin, admin.engine.connect() as connection:
            connection.scalar(text(f"SELECT pg_terminate_backend({killed[-1]})"))
        transaction.scalars(select(text("1")), {})

    with pytest.raises(DBAPIError, match="terminat"):
        store.write_rows(kill_own_backend, operation="a killed write")
    assert len(invalidated) == 1, invalidated
    # The next transaction runs on a new server process.
    assert store.read_rows(lambda transaction, host: transaction.scalars(
        select(text("pg_backend_pid()")), {}))[0] != killed[0]


def test_an_expanding_parameter_is_refused(store: Store) -> None:
    statement = select(leases.c.id).where(leases.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="post-compile"):
        Compiled(statement, store.engine.dialect)


def test_a_missing_parameter_names_itself(store: Store) -> None:
    _seeded(store)
    with pytest.raises(ValueError, match="no value for parameter 'lease_id'"):
        store.read_rows(lambda transaction, host: transaction.rows(
            select(leases.c.id).where(leases.c.id == bindparam("lease_id")), {}))


def test_statements_are_compiled_once_per_statement_and_columns(store: Store) -> None:
    statements = Statements(store.engine.dialect)
    one = select(leases.c.id).where(leases.c.owner == bindparam("owner"))
    other = select(leases.c.id).where(leases.c.owner == bindparam("owner"))
    assert statements.get(one) is statements.get(one)
    assert statements.get(other) is not statements.get(one)
    write = insert(leases)
    assert statements.get(write, ["owner"]) is not statements.get(write, ["owner", "mac"])
    assert "mac" in statements.get(write, ["owner", "mac"]).sql
    assert "mac" not in statements.get(write, ["owner"]).sql


def test_the_statement_cache_keeps_the_most_recently_used(store: Store) -> None:
    """A long-lived process that builds statements of many shapes (IN lists of every length,
    say) keeps a bounded cache."""
    statements = Statements(store.engine.dialect)
    built = [select(leases.c.id).where(leases.c.id == index)
             for index in range(Statements.LIMIT + 10)]
    first = statements.get(built[0])
    for statement in built[1:]:
        statements.get(statement)
    assert len(statements) == Statements.LIMIT
    assert statements.get(built[-1]) is statements.get(built[-1])
    assert statements.get(built[0]) is not first  # evicted, compiled again


def test_the_lease_path_statements_write_what_they_say(store: Store) -> None:
    """set_vfs with and without a reason, on lists of more than one VF."""
    _, vf_id, _ = _seeded(store)

    def mark(transaction: Transaction, host: int | None) -> None:
        rows = LeaseRows(transaction, host)
        rows.set_vfs([vf_id], VfState.UNUSABLE, reason="restore failed: x")
        rows.set_vfs([vf_id, vf_id + 1000], VfState.RESERVED)

    store.write_rows(mark, operation="marking")
    vf = store.read(lambda session: session.get(Vf, vf_id))
    assert vf is not None
    assert (vf.state, vf.reason) == (VfState.RESERVED, "restore failed: x")


def test_a_forked_child_opens_its_own_connections(store: Store) -> None:
    """A process that forks with an open store (the Python API under multiprocessing's
    fork) must not use the parent's pooled connections in the child: SQLite's may not cross
    a fork, and on PostgreSQL both processes would talk on one socket."""
    pool_id, vf_id, host_id = _seeded(store)
    store.write_rows(_mark_connection, operation="marking")  # the parent's direct one
    pooled = store.engine.raw_connection()
    pooled.info["opened by"] = os.getpid()
    pooled.close()  # back to the pool, idle, where the child would find it
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            mine = store.engine.raw_connection()
            seen = mine.info.get("opened by")
            mine.close()
            if store.read_rows(_on_marked):
                seen = "the parent's direct connection"
            lease_id = store.write_rows(
                lambda transaction, host: LeaseRows(transaction, host).add_lease(
                    _lease_values(pool_id, vf_id, host_id)), operation="the child's write")
            os.write(write, f"{seen} {lease_id}".encode())
        except BaseException as exc:
            os.write(write, f"failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        said = os.read(read, 4096).decode()
    finally:
        os.close(read)
        os.waitpid(child, 0)
    seen, new_id = said.split(" ", 1)
    assert seen == "None", f"the child was handed the parent's connection: {said}"
    # The parent's own connection still serves it, and sees the child's commit.
    row = store.read_rows(lambda transaction, host: LeaseRows(transaction, host).lease(
        int(new_id)))
    assert row.owner == "vm-1"
    if store.engine.dialect.name == "sqlite":  # held by this thread, as before the fork
        assert store.read_rows(_on_marked) is True
    again = store.engine.raw_connection()
    try:
        assert again.info.get("opened by") == os.getpid()
    finally:
        again.close()


def test_a_bulk_insert_processes_shared_and_distinct_values_alike(store: Store) -> None:
    """run_many runs a column's processor once for rows that hold the same object: rows that
    share one timestamp and one state, and rows with a timestamp each, come back as the ORM
    reads them, each with its own value."""
    _seeded(store)
    assert store.host_id is not None
    host_id = store.host_id
    shared = CREATED
    rows = [{"host_id": host_id, "pf_pci": "0000:05:00.0", "index": 10 + index,
             "pci": f"0000:05:1{index}.1", "netdev": None, "state": VfState.FREE,
             "reason": None, "updated_at": shared} for index in range(3)]
    own = [CREATED.replace(second=index) for index in range(3)]
    rows += [{**row, "index": 20 + index, "pci": f"0000:05:2{index}.1",
              "state": state, "reason": "why" if state is VfState.UNUSABLE else None,
              "updated_at": at}
             for index, (row, at, state) in enumerate(zip(
                 rows, own, [VfState.UNUSABLE, VfState.FREE, VfState.UNUSABLE], strict=True))]
    store.write_rows(lambda transaction, host: transaction.run_many(
        insert(vfs), rows, list(rows[0])), operation="a bulk insert")
    found = store.read(lambda session: {
        vf.vf_index: (vf.updated_at, vf.state, vf.reason)
        for vf in session.scalars(select(Vf).where(Vf.vf_index >= 10))})
    assert found == {row["index"]: (row["updated_at"], row["state"], row["reason"])
                     for row in rows}
    assert all(at.tzinfo is not None for at, _, _ in found.values())


def test_a_bulk_insert_missing_a_value_names_it(store: Store) -> None:
    _seeded(store)
    assert store.host_id is not None
    rows = [{"host_id": store.host_id, "pf_pci": "0000:05:00.0", "index": 30 + index,
             "pci": f"0000:05:3{index}.1", "netdev": None, "state": VfState.FREE,
             "reason": None, "updated_at": CREATED} for index in range(2)]
    del rows[1]["pci"]
    with pytest.raises(ValueError, match="no value for parameter 'pci'"):
        store.write_rows(lambda transaction, host: transaction.run_many(
            insert(vfs), rows, list(rows[0])), operation="a bulk insert")
    assert store.read(lambda session: list(session.scalars(
        select(Vf.vf_index).where(Vf.vf_index >= 30)))) == []


def test_a_bulk_insert_of_tuples_takes_its_columns_in_the_order_given(store: Store) -> None:
    """run_values: each row a tuple in the order its columns are named, whatever order the
    compiled INSERT has."""
    _seeded(store)
    assert store.host_id is not None
    columns = ["updated_at", "state", "reason", "netdev", "pci", "index", "pf_pci", "host_id"]
    rows = [(CREATED.replace(second=index), state, reason, None, f"0000:05:4{index}.1",
             40 + index, "0000:05:00.0", store.host_id)
            for index, (state, reason) in enumerate([(VfState.FREE, None),
                                                     (VfState.UNUSABLE, "why")])]
    store.write_rows(lambda transaction, host: transaction.run_values(
        insert(vfs), columns, rows), operation="a bulk insert")
    found = store.read(lambda session: [
        (vf.updated_at, vf.state, vf.reason, vf.netdev, vf.pci, vf.vf_index, vf.pf_pci,
         vf.host_id) for vf in session.scalars(
            select(Vf).where(Vf.vf_index >= 40).order_by(Vf.vf_index))])
    assert found == rows
