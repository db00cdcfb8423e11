"""The lease path's statements do not read the store's history.

A store keeps every lease and event it ever had. An acquire plus release must cost the same
on a store with a long history as on a new one, so no statement it makes may read the leases
or events of the past: none may scan those tables, or search them by the host's id alone
(every lease of the host, ever). SQLite's own EXPLAIN QUERY PLAN says which index each uses.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

import vfpool
from vfpool.sim.host import SimHost

HISTORY_TABLES = ("leases", "events")


def _plans(db: Path, statements: list[str]) -> dict[str, str]:
    connection = sqlite3.connect(db)
    try:
        plans = {}
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans[sql] = " | ".join(str(row[-1]) for row in rows)
        return plans
    finally:
        connection.close()


def test_no_statement_of_an_acquire_and_release_reads_the_history(tmp_path: Path) -> None:
    root = tmp_path / "host"
    SimHost.create(root)
    with vfpool.connect(sim=root) as host:
        host.define_pool("p", ["enp133s0f0"], 4, mode="netdev")
        host.start_pool("p")
        for _ in range(30):  # some history, so the planner has leases to avoid
            host.release(host.acquire("p", owner="old", mac="52:54:00:00:00:01"))
    # Every statement that reaches SQLite, with its values in (the lease path runs its
    # statements on the DBAPI connection, past SQLAlchemy's execution events), on every
    # connection of a host opened afresh (a thread holds its connection between transactions).
    statements: list[str] = []

    def trace(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    event.listen(Pool, "connect", trace)
    try:
        with vfpool.connect(sim=root) as host:
            statements.clear()  # opening the store
            host.release(host.acquire("p", owner="vm", mac="52:54:00:00:00:02"))
            host.release(host.acquire("p", owner="vm"))  # a MAC of vfpool's choice
    finally:
        event.remove(Pool, "connect", trace)
    plans = _plans(root / "vfpool.db", statements)
    touching = {sql: plan for sql, plan in plans.items()
                if any(f" {table} " in f" {plan} " for table in HISTORY_TABLES)}
    # Both MAC checks were seen: of a MAC asked for, and of the MACs vfpool may choose.
    assert any("WHERE leases.mac = '52:54:00:00:00:02'" in sql for sql in touching), plans
    assert any("WHERE leases.mac IN ('" in sql for sql in touching), plans
    # The free-VF choice in pool order walks the members by position and their VFs by index
    # (migration 0008), and stops at the first free ones: no sort of every free VF.
    [choice] = {plan for sql, plan in plans.items() if "FROM vfs JOIN pool_pfs" in sql}
    assert "uq_pool_pfs_position" in choice and "TEMP B-TREE" not in choice, choice
    bad = {sql: plan for sql, plan in touching.items()
           if any(f"SCAN {table}" in plan for table in HISTORY_TABLES)
           or "ix_leases_host_id" in plan or "ix_events_host_id" in plan}
    assert not bad, "\n".join(f"{plan}\n    {sql}" for sql, plan in bad.items())
