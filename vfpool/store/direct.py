"""Core statements compiled once per dialect and run on the DBAPI connection itself.

The lease path makes about twenty statements per acquire and release, all day. Through
SQLAlchemy's ``Connection`` each one costs about 0.18 ms of Python besides the database's
own 0.05 ms: the execution context, the result object and the compiled-cache lookup, and a
transaction adds 0.17 ms for the pool checkout and the ``begin`` hook. Here a statement is
compiled once per dialect (``Compiled``); at run time its parameters go through the column
types' bind processors, its rows through their result processors, and nothing else runs
between the caller and the DBAPI cursor.

What it keeps from SQLAlchemy: the SQL (statements are still built with Core, so the
dialects' differences are SQLAlchemy's business), the column types (an aware ``datetime``, a
``StrEnum``, JSON come back as the ORM gives them), the engine's pool and its ``connect``
hooks, and its exceptions: a DBAPI error comes out as ``sqlalchemy.exc.DBAPIError.instance``
makes it, so ``is_transient`` and the store's retries treat it as any other.

On SQLite a store holds one pooled connection from one transaction to the next
(``Connections``): a checkout and a check-in of SQLAlchemy's pool cost 50 us together, and
an acquire+release makes four to six transactions. On PostgreSQL every transaction checks one
out, so that the pool's pre-ping still finds a connection the server dropped.

What a statement may not use: expanding ``IN`` parameters (build one statement per list
length instead) and anything compiled to a post-compile parameter; ``Compiled`` refuses them.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, bindparam
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.expression import ClauseElement

Processor = Callable[[Any], Any]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


_UNSET = object()  # no value seen yet


def here(table: Any, scoped: bool) -> tuple[ColumnElement[bool], ...]:
    """``table.host_id = :host`` on a scoped store; nothing otherwise (statements run here
    name their host themselves: the ORM's scoping does not reach them)."""
    return (table.c.host_id == bindparam("host"),) if scoped else ()


def listed(name: str, count: int) -> list[Any]:
    """``count`` parameters ``name0``, ``name1``, ...: an IN list of fixed length (an
    expanding parameter cannot run here)."""
    return [bindparam(f"{name}{index}") for index in range(count)]


def listed_values(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of ``listed(name, len(values))``."""
    return {f"{name}{index}": value for index, value in enumerate(values)}


class Compiled:
    """One statement compiled for one dialect: its SQL, its parameters in order, and the
    bind and result processors of their types."""

    __slots__ = ("binders", "defaults", "names", "positional", "readers", "sql", "statement")

    def __init__(self, statement: ClauseElement, dialect: Dialect,
                 columns: Sequence[str] | None = None) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=columns))
        sql = compiled.string
        if "POSTCOMPILE" in sql:
            raise ValueError(f"a post-compile parameter cannot run directly: {sql}")
        # The name each parameter has in the SQL (an anonymous one gets one at compile time).
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        names: tuple[str, ...] = tuple(compiled.positiontup or ()) if dialect.positional \
            else tuple(binds)
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"parameter name {name!r} needs escaping: {sql}")
        self.statement = statement
        self.sql = sql
        self.positional = dialect.positional
        self.names = names
        # Values the statement carries itself (a literal NULL in a SET clause, say).
        self.defaults = {name: bind.effective_value for name, bind in binds.items()
                         if not bind.required}
        self.binders: dict[str, Processor] = {}
        for name, bind in binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.binders[name] = processor
        self.readers: tuple[Processor | None, ...] = tuple(
            type_.dialect_impl(dialect).result_processor(dialect, None)
            for type_ in _result_types(statement))

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The DBAPI parameters for one execution with ``params``."""
        values = {**self.defaults, **params} if self.defaults else params
        binders = self.binders
        try:
            if self.positional:
                return tuple(binders[name](values[name]) if name in binders else values[name]
                             for name in self.names)
            return {name: binders[name](values[name]) if name in binders else values[name]
                    for name in self.names}
        except KeyError as exc:
            raise ValueError(f"no value for parameter {exc.args[0]!r} of: {self.sql}") from None

    def parameters_many(self, rows: Iterable[Mapping[str, Any]]
                        ) -> list[Sequence[Any]] | list[dict[str, Any]]:
        """``parameters`` for many executions; see ``values_many``."""
        names = self.names
        # One call per row takes its values (for one name itemgetter gives a bare value).
        getter = itemgetter(*names) if len(names) > 1 else None
        values: list[Sequence[Any]] = []
        try:
            for row in rows:
                full = {**self.defaults, **row} if self.defaults else row
                values.append(getter(full) if getter else tuple(full[name] for name in names))
        except KeyError as exc:
            raise ValueError(f"no value for parameter {exc.args[0]!r} of: {self.sql}") from None
        return self.values_many(names, values)

    def values_many(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]
                    ) -> list[Sequence[Any]] | list[dict[str, Any]]:
        """The DBAPI parameters for many executions, each row's values given in ``columns``
        order (which must name every parameter). A column's processor runs once for a run
        of rows that hold the same object (the one timestamp or state of a bulk insert): for
        1,024 VF rows, a call per column and row was a third of the Python around SQLite's
        work, and a dict per row another sixth."""
        names = self.names
        if tuple(columns) != names:
            given = {column: position for position, column in enumerate(columns)}
            for name in names:
                if name not in given and name not in self.defaults:
                    raise ValueError(f"no value for parameter {name!r} of: {self.sql}")
            rows = [tuple(row[given[name]] if name in given else self.defaults[name]
                          for name in names) for row in rows]
        bound = [(position, binder, [_UNSET, None]) for position, name in enumerate(names)
                 if (binder := self.binders.get(name)) is not None]
        batch: list[Any] = []
        for row in rows:
            values = list(row)
            for position, binder, last in bound:
                value = values[position]
                if last[0] is not value:
                    last[0], last[1] = value, binder(value)
                values[position] = last[1]
            batch.append(tuple(values) if self.positional
                         else dict(zip(names, values, strict=True)))
        return batch

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(value if reader is None or value is None else reader(value)
                     for reader, value in zip(self.readers, raw, strict=True))


def _result_types(statement: ClauseElement) -> list[Any]:
    if isinstance(statement, Select):
        return [column.type for column in statement.selected_columns]
    if isinstance(statement, UpdateBase):
        return [column["type"] for column in statement.returning_column_descriptions]
    return []


class Statements:
    """The compiled statements of one dialect, by statement, the most recently used
    ``LIMIT`` of them. The cache keys on a statement's identity: give it statements built
    once (as store/leasing.py's are), not one per call."""

    LIMIT = 512

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: OrderedDict[tuple[int, tuple[str, ...] | None], Compiled] = \
            OrderedDict()

    def get(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> Compiled:
        key = (id(statement), None if columns is None else tuple(columns))
        found = self._compiled.get(key)
        if found is not None and found.statement is statement:
            self._compiled.move_to_end(key)
            return found
        found = self._compiled[key] = Compiled(statement, self.dialect, columns)
        self._compiled.move_to_end(key)
        if len(self._compiled) > self.LIMIT:
            self._compiled.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._compiled)


_STATEMENTS: weakref.WeakKeyDictionary[Dialect, Statements] = weakref.WeakKeyDictionary()


def statements_for(dialect: Dialect) -> Statements:
    """The compiled statements of ``dialect`` (an engine's: each engine has its own, which
    knows the server it talks to)."""
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = Statements(dialect)
    return found


@contextmanager
def in_connection(connection: Connection) -> Iterator[Transaction]:
    """Direct statements inside the transaction of a SQLAlchemy ``connection`` (an ORM
    session's, say), on its DBAPI connection: they see what it wrote, and commit or roll
    back with it."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    dialect = connection.dialect
    cursor = dbapi_connection.cursor()
    try:
        yield Transaction(cursor, statements_for(dialect), dialect.loaded_dbapi.Error)
    finally:
        cursor.close()


class Transaction:
    """One transaction on a DBAPI connection: statements in, plain tuples out."""

    def __init__(self, cursor: Any, statements: Statements, error: type[Exception]) -> None:
        self._cursor = cursor
        self._statements = statements
        self._error = error
        self.dialect = statements.dialect

    def _execute(self, compiled: Compiled, params: Mapping[str, Any]) -> Any:
        parameters = compiled.parameters(params)
        try:
            self._cursor.execute(compiled.sql, parameters)
        except self._error as exc:
            raise _wrapped(compiled.sql, parameters, exc, self._error, self.dialect) from exc
        return self._cursor

    def rows(self, statement: ClauseElement, params: Mapping[str, Any],
             columns: Sequence[str] | None = None) -> list[tuple[Any, ...]]:
        """Every row of a select, or of a write's RETURNING (``columns``: see ``run``)."""
        compiled = self._statements.get(statement, columns)
        cursor = self._execute(compiled, params)
        try:
            raw = cursor.fetchall()
        except self._error as exc:
            raise _wrapped(compiled.sql, params, exc, self._error, self.dialect) from exc
        if not any(compiled.readers):
            return [tuple(row) for row in raw]
        return [compiled.row(row) for row in raw]

    def first(self, statement: ClauseElement, params: Mapping[str, Any]
              ) -> tuple[Any, ...] | None:
        rows = self.rows(statement, params)
        return rows[0] if rows else None

    def scalars(self, statement: ClauseElement, params: Mapping[str, Any]) -> list[Any]:
        return [row[0] for row in self.rows(statement, params)]

    def run(self, statement: ClauseElement, params: Mapping[str, Any],
            columns: Sequence[str] | None = None) -> int:
        """Run a write; the number of rows it changed. ``columns``: the columns an INSERT
        or UPDATE sets from ``params`` (compiled in that order)."""
        return int(self._execute(self._statements.get(statement, columns), params).rowcount)

    def insert(self, statement: ClauseElement, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Run an ``INSERT ... RETURNING`` of the columns named by ``params``; the row it
        returned."""
        [row] = self.rows(statement, params, sorted(params))
        return row

    def run_many(self, statement: ClauseElement, rows: Iterable[Mapping[str, Any]],
                 columns: Sequence[str]) -> None:
        """Run a write once per row (an INSERT of ``columns``), in one DBAPI call."""
        compiled = self._statements.get(statement, columns)
        self._run_batch(compiled, compiled.parameters_many(rows))

    def run_values(self, statement: ClauseElement, columns: Sequence[str],
                   rows: Iterable[Sequence[Any]]) -> None:
        """``run_many`` with each row's values as a tuple in ``columns`` order: for a bulk
        insert, no dict per row."""
        compiled = self._statements.get(statement, columns)
        self._run_batch(compiled, compiled.values_many(columns, rows))

    def _run_batch(self, compiled: Compiled, batch: list[Any]) -> None:
        try:
            self._cursor.executemany(compiled.sql, batch)
        except self._error as exc:
            raise _wrapped(compiled.sql, batch, exc, self._error, self.dialect) from exc


def _wrapped(sql: str, params: Any, exc: Exception, error: type[Exception],
             dialect: Dialect) -> DBAPIError:
    wrapped = DBAPIError.instance(sql, params, exc, error, dialect=dialect)
    assert isinstance(wrapped, DBAPIError)
    return wrapped


class Connections:
    """Where direct transactions get their DBAPI connection: ``engine``'s pool. On SQLite the
    first thread to run one keeps that connection and uses it again for its next ones, until
    ``close()``. A transaction opened while it is in use (inside another), on another thread,
    or on PostgreSQL (where the pool's pre-ping must see each checkout) checks one out and
    gives it back, and a held connection that broke is given back and replaced. One held
    connection per store, not one per thread: threads that come and go, or outnumber the
    pool, would otherwise keep its connections out. A held SQLite connection holds no lock
    between transactions: the transaction's BEGIN takes them, its COMMIT or ROLLBACK gives
    them back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._hold = engine.dialect.name == "sqlite"
        self._guard = threading.Lock()
        self._held: Any = None
        self._owner = 0  # the thread the held connection serves
        self._busy = False

    def take(self) -> Any:
        """A pooled connection for one transaction; ``give_back()`` it when the transaction
        has ended."""
        if self._hold:
            me = threading.get_ident()
            with self._guard:
                if self._held is None:
                    self._held = self.engine.raw_connection()
                    self._owner, self._busy = me, True
                    return self._held
                if self._owner == me and not self._busy:
                    self._busy = True
                    return self._held
        return self.engine.raw_connection()

    def give_back(self, pooled: Any) -> None:
        with self._guard:
            if pooled is self._held:
                self._busy = False
                if pooled.is_valid:
                    return  # held for the next transaction
                self._held = None
        pooled.close()

    def close(self) -> None:
        """Give the held connection back to the pool (which the store then disposes of)."""
        with self._guard:
            held, self._held, self._busy = self._held, None, False
        if held is not None:
            held.close()

    def forget(self) -> None:
        """In a forked child: let go of the parent's connection without closing it, as
        ``Engine.dispose(close=False)`` does for the pool's."""
        self._guard = threading.Lock()  # another thread of the parent may have held it
        self._held, self._busy = None, False


@contextmanager
def transaction(connections: Connections, statements: Statements, *, write: bool
                ) -> Iterator[Transaction]:
    """A transaction on a connection from ``connections`` that commits when the block returns
    and rolls back when it raises. A write holds SQLite's write lock from its first statement
    (``BEGIN IMMEDIATE``) or runs ``SERIALIZABLE`` on PostgreSQL; a read on PostgreSQL is one
    ``REPEATABLE READ`` snapshot, read-only."""
    dialect = connections.engine.dialect
    error: type[Exception] = dialect.loaded_dbapi.Error
    pooled = connections.take()
    connection = pooled.dbapi_connection
    assert connection is not None
    cursor = connection.cursor()
    try:
        try:
            if dialect.name == "sqlite":
                # The store's connect hook turned pysqlite's own BEGIN off.
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            else:
                # psycopg opens the transaction with this first statement.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE" if write else
                               "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        except error as exc:
            raise _wrapped("BEGIN", (), exc, error, dialect) from exc
        yield Transaction(cursor, statements, error)
        try:
            connection.commit()
        except error as exc:
            raise _wrapped("COMMIT", (), exc, error, dialect) from exc
    except BaseException as exc:
        _roll_back(pooled, connection, cursor, exc, error, dialect)
        raise
    finally:
        with contextlib.suppress(error):  # a connection that broke under it has no cursor left
            cursor.close()
        connections.give_back(pooled)


def _roll_back(pooled: Any, connection: Any, cursor: Any, exc: BaseException,
               error: type[Exception], dialect: Dialect) -> None:
    """Roll back after ``exc``; a connection the server dropped is thrown out of the pool
    instead of going back to it."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(original, error) and \
            dialect.is_disconnect(cast(Any, original), connection, cursor):
        pooled.invalidate(original)
        return
    try:
        connection.rollback()
    except error as failed:
        pooled.invalidate(failed)


class HostRows:
    """Reads and writes of direct statements in one transaction, on one host's rows: each
    statement names the host itself (``here()``), and ``_params`` gives it the host's id
    (``host_id`` None: an unscoped store, every host's rows)."""

    def __init__(self, transaction: Transaction, host_id: int | None) -> None:
        self.transaction = transaction
        self.host_id = host_id
        self.scoped = host_id is not None

    def _params(self, **params: Any) -> dict[str, Any]:
        if self.scoped:
            params["host"] = self.host_id
        return params
