"""The fleet bulk loader (tests/fleetdata.py) on a small fleet: what it writes is consistent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.fleetdata import (
    FleetShape,
    check_columns,
    load_fleet,
    verify_foreign_keys,
    verify_free_counts,
)
from tests.pgserver import PgServer

SHAPE = FleetShape(hosts=3, pfs_per_host=8, vfs_per_pf=32)


@pytest.fixture
def connection(pg_server: PgServer, pg_migrated_url: str) -> Iterator[Any]:
    """A psycopg connection to a store with the newest schema."""
    with pg_server.connect(str(make_url(pg_migrated_url).database)) as connection:
        yield connection


def _scalar(connection: Any, sql: str) -> Any:
    return connection.execute(sql).fetchone()[0]


def test_a_small_fleet_is_loaded_consistently(connection: Any) -> None:
    result = load_fleet(connection, SHAPE)
    leases = _scalar(connection, "SELECT count(*) FROM leases")
    assert result.rows == {"hosts": 3, "pfs": 24, "pools": 3, "pool_pfs": 24, "vfs": 768,
                           "leases": leases, "events": 2 * 3 + leases}
    assert 0 < leases < 768
    # Every host has the same PCI layout: 4 PFs on each NUMA node, 32 VFs each.
    layouts = connection.execute(
        "SELECT host_id, array_agg(pci ORDER BY pci), "
        "       count(*) FILTER (WHERE numa_node = 0), count(*) FILTER (WHERE numa_node = 1) "
        "FROM pfs GROUP BY host_id ORDER BY host_id").fetchall()
    assert len(layouts) == 3
    assert len({tuple(pcis) for _, pcis, _, _ in layouts}) == 1
    assert {(numa0, numa1) for _, _, numa0, numa1 in layouts} == {(4, 4)}
    assert _scalar(connection, "SELECT count(DISTINCT (host_id, pci)) FROM vfs") == 768
    assert _scalar(connection, "SELECT count(DISTINCT pci) FROM vfs") == 256
    # A VF is leased exactly when it has an active lease of its own host's pool.
    mismatched = _scalar(connection, """
        SELECT count(*) FROM vfs v
        LEFT JOIN leases l ON l.vf_id = v.id AND l.state = 'active'
        LEFT JOIN pools p ON p.id = l.pool_id
        WHERE (v.state = 'leased') <> (l.id IS NOT NULL)
           OR (l.id IS NOT NULL AND (l.host_id <> v.host_id OR p.host_id <> v.host_id
                                     OR l.vf_pci <> v.pci))""")
    assert mismatched == 0
    assert _scalar(connection, "SELECT count(*) FROM events WHERE action = 'lease.acquire'") \
        == leases
    # Each membership carries its free count, as vfpool's triggers would have kept it.
    assert _scalar(connection, "SELECT sum(free_vfs) FROM pool_pfs") == 768 - leases
    verify_free_counts(connection)


def test_a_wrong_free_count_is_found(connection: Any) -> None:
    load_fleet(connection, SHAPE)
    with connection.transaction():
        connection.execute("UPDATE pool_pfs SET free_vfs = free_vfs + 1 WHERE position = 3")
        with pytest.raises(ValueError, match="3 pool memberships a wrong free_vfs"):
            verify_free_counts(connection)
        raise psycopg.Rollback()
    verify_free_counts(connection)


def test_a_second_load_appends_and_the_sequences_follow(connection: Any) -> None:
    load_fleet(connection, SHAPE)
    second = load_fleet(connection, FleetShape(hosts=2, seed=99, name_prefix="more-"))
    assert second.rows["hosts"] == 2
    assert _scalar(connection, "SELECT count(*) FROM hosts") == 5
    assert _scalar(connection, "SELECT count(*) FROM vfs") == 5 * 256
    with connection.transaction():
        new_host = _scalar(connection, "INSERT INTO hosts (machine_id, name, first_seen, "
                                       "last_seen) VALUES ('x', 'x', now(), now()) RETURNING id")
        connection.execute(f"INSERT INTO pfs (host_id, pci, totalvfs, first_seen, last_seen) "
                           f"VALUES ({new_host}, '0000:05:00.0', 64, now(), now())")
        new_vf = _scalar(connection, f"INSERT INTO vfs (host_id, pf_pci, index, pci, updated_at) "
                                     f"VALUES ({new_host}, '0000:05:00.0', 99, '0000:05:ff.0', "
                                     f"now()) RETURNING id")
    assert new_host == 6
    assert new_vf == 5 * 256 + 1


def test_broken_foreign_keys_are_found(connection: Any) -> None:
    load_fleet(connection, SHAPE)
    with connection.transaction():
        connection.execute("SET LOCAL session_replication_role = replica")
        connection.execute("UPDATE leases SET vf_id = 1000000 WHERE id = (SELECT min(id) "
                           "FROM leases)")
        with pytest.raises(ValueError, match=r"fk_leases_vf_id_vfs \(1 rows of leases\)"):
            verify_foreign_keys(connection)
        raise psycopg.Rollback()
    verify_foreign_keys(connection)


def test_the_newest_schema_has_every_column_and_a_missing_one_is_named(
        pg_server: PgServer, pg_migrated_url: str) -> None:
    with pg_server.connect(str(make_url(pg_migrated_url).database)) as connection:
        check_columns(connection)  # the migrations made every column the loader fills
        connection.execute("ALTER TABLE pools DROP COLUMN host_id CASCADE")
        with pytest.raises(LookupError, match=r"no column pools\.host_id"):
            check_columns(connection)


