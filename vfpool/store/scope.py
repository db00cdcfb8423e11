"""Host scoping, enforced here rather than by each caller.

A store opened for a host (``open_store(url, host=...)``) tags each of its sessions with that
host's id. Every ORM statement on a host-scoped table (``HostScoped``: pools, PFs, pool
members, VFs, leases, events) then gets ``host_id = <this host>`` added to it, in every FROM,
join and relationship load, and every new row is stamped with the host before it is flushed.
So ``reconcile``, ``watch`` and every command see and change their own host's rows only. The
fleet-wide reads (``host list``, ``fleet place``, ``report --fleet``) ask for all hosts with
``all_hosts(session)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.orm.util import LoaderCriteriaOption

from vfpool.store.direct import Transaction, in_connection
from vfpool.store.models import Event, HostScoped, Lease, Pf, Pool, PoolPf, Vf

R = TypeVar("R")

HOST_ID = "vfpool_host_id"
ALL_HOSTS = "vfpool_all_hosts"
SCOPED: tuple[type[HostScoped], ...] = (Pool, Pf, PoolPf, Vf, Lease, Event)
NO_HOST = 0  # a read before the host has a row: it owns nothing yet


def set_host(session: Session, host_id: int) -> None:
    session.info[HOST_ID] = host_id


def writing_host(session: Session) -> int | None:
    """The host that new rows of the session belong to (None: an unscoped store); refused
    for a session that may only read (its host has no row yet)."""
    host_id: int | None = session.info.get(HOST_ID)
    if host_id == NO_HOST:
        raise RuntimeError("a read-only session tried to write")
    return host_id


@contextmanager
def rows_in(session: Session, kind: Callable[[Transaction, int | None], R]) -> Iterator[R]:
    """Direct statements (``kind``: ``LeaseRows``, ``PoolWrites``, ...) inside an ORM write
    transaction, on its connection and its host: the session is flushed first, so they see its
    changes so far, and they commit or roll back with it."""
    session.flush()
    with in_connection(session.connection()) as transaction:
        yield kind(transaction, writing_host(session))


def all_hosts(session: Session) -> Session:
    """Let this session read every host's rows (fleet-wide reports); returns it."""
    session.info[ALL_HOSTS] = True
    return session


@event.listens_for(Session, "do_orm_execute")
def _only_this_host(state: ORMExecuteState) -> None:
    info = state.session.info
    host_id = info.get(HOST_ID)
    if host_id is None or info.get(ALL_HOSTS):
        return
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(*_criteria(host_id))


@functools.lru_cache(maxsize=64)
def _criteria(host_id: int) -> tuple[LoaderCriteriaOption, ...]:
    """The options that scope a statement to ``host_id``, built once per host: building them
    for every statement was a seventh of the lease path's CPU."""
    return tuple(with_loader_criteria(table, table.host_id == host_id, include_aliases=True)
                 for table in SCOPED)


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, flush_context: Any, instances: Any) -> None:
    host_id = writing_host(session)
    if host_id is None:
        return
    for row in session.new:
        if isinstance(row, HostScoped) and getattr(row, "host_id", None) is None:
            row.host_id = host_id
