"""A simulated fleet, bulk-loaded into a PostgreSQL store with COPY, for `make bench`.

``load_fleet(connection, FleetShape(hosts=1000))`` inserts, per host: a ``hosts`` row, 8 PFs
(4 on NUMA node 0, 4 on node 1) with 32 VFs each, one active pool ``tenant`` over all 8 PFs,
a random share of its VFs leased (each with an active lease and a ``lease.acquire`` event),
and the pool's ``pool.define``/``pool.start`` events. Every host has the same PCI layout, as
identical machines do. 1,000 hosts are 8,000 PFs and 256,000 VF rows.

The column mapping is all in ``COLUMNS``: for each table, the database columns in COPY order
and the generated field each is filled from. When the schema changes, edit that table (and
the migrations).

Run it alone to measure a load: ``python tests/fleetdata.py --hosts 1000`` starts a throwaway
server (tests/pgserver.py), migrates it and loads.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import operator
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests` and `vfpool` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Row = dict[str, Any]

HOST_COLUMN = "host_id"

# table -> {database column: generated field}, in COPY order. The one place to adapt.
COLUMNS: dict[str, dict[str, str]] = {
    "hosts": {
        "id": "host_id", "machine_id": "machine_id", "name": "hostname",
        "first_seen": "now", "last_seen": "now",
    },
    "pfs": {
        HOST_COLUMN: "host_id", "pci": "pf_pci", "netdev": "pf_netdev", "driver": "driver",
        "vendor": "vendor", "device": "device", "totalvfs": "totalvfs",
        "numa_node": "numa_node", "first_seen": "now", "last_seen": "now",
    },
    "pools": {
        "id": "pool_id", HOST_COLUMN: "host_id", "name": "pool_name", "state": "pool_state",
        "autostart": "autostart", "method": "method", "mode": "mode",
        "vfs_per_pf": "vfs_per_pf", "vlan": "vlan", "created_at": "now", "updated_at": "now",
    },
    "pool_pfs": {
        "pool_id": "pool_id", HOST_COLUMN: "host_id", "pf_pci": "pf_pci", "position": "position",
        "free_vfs": "free_vfs",
    },
    "vfs": {
        "id": "vf_id", HOST_COLUMN: "host_id", "pf_pci": "pf_pci", "index": "vf_index",
        "pci": "vf_pci", "netdev": "vf_netdev", "state": "vf_state", "updated_at": "now",
    },
    "leases": {
        "id": "lease_id", HOST_COLUMN: "host_id", "pool_id": "pool_id", "vf_id": "vf_id",
        "pf_pci": "pf_pci", "vf_pci": "vf_pci", "vf_index": "vf_index", "owner": "owner",
        "token_hash": "token_hash", "state": "lease_state", "mode": "mode", "mac": "mac",
        "vlan": "vlan", "numa_node": "numa_node", "applied_config": "applied_config",
        "saved_config": "saved_config", "boot_id": "boot_id", "acquirer": "acquirer",
        "created_at": "now", "updated_at": "now",
    },
    "events": {
        HOST_COLUMN: "host_id", "at": "now", "actor": "actor", "action": "action",
        "pool": "pool_name", "pf": "pf_pci", "vf": "vf_pci", "lease_id": "lease_id",
        "detail": "detail",
    },
}
# Parents before children (foreign keys are checked row by row during COPY).
LOAD_ORDER = ("hosts", "pfs", "pools", "pool_pfs", "vfs", "leases", "events")
# Tables whose ids the loader assigns (so children can refer to them without a round trip);
# their sequences are moved past the loaded ids afterwards.
ID_TABLES = ("hosts", "pools", "vfs", "leases")



# The layout every simulated host shares: dual-port X710-like cards, alternating by pairs
# between NUMA node 0 (buses below 0x80) and node 1.
CARD_BUSES = (0x05, 0x06, 0x85, 0x86)
SAVED_CONFIG = {"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": True,
                "trust": False, "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0,
                "driver": "iavf", "driver_override": None, "mtu": 1500}
SAVED_CONFIG_JSON = json.dumps(SAVED_CONFIG)


@dataclass(frozen=True)
class FleetShape:
    hosts: int = 1000
    pfs_per_host: int = 8
    vfs_per_pf: int = 32
    pool: str = "tenant"
    vlan: int = 100
    # Each PF has between 0 and this share of its VFs leased (uniformly, per PF), so the
    # hosts differ in free VFs and in free VFs per NUMA node, as placement needs.
    max_leased_share: float = 0.75
    seed: int = 12
    name_prefix: str = "fleet-"


@dataclass
class LoadResult:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    analyze_seconds: float = 0.0

    def __str__(self) -> str:
        counts = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        return f"{counts} in {self.seconds:.2f} s (+ ANALYZE {self.analyze_seconds:.2f} s)"


@dataclass
class _Ids:
    """The next id of each table whose ids the loader assigns."""

    next: dict[str, int]

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


@functools.cache
def _pf(position: int) -> tuple[str, str, int]:
    """PCI address, netdev and NUMA node of PF ``position`` (0-7) of every host."""
    card, function = divmod(position, 2)
    bus = CARD_BUSES[card % len(CARD_BUSES)] + 0x10 * (card // len(CARD_BUSES))
    return f"0000:{bus:02x}:00.{function}", f"enp{bus}s0f{function}", 0 if bus < 0x80 else 1


@functools.cache
def _vf(pf_pci: str, index: int) -> str:
    """The VF's PCI address: X710 VFs start at devfn 0x10 after the PF, 8 functions a slot."""
    domain_bus, _, function = pf_pci.rpartition(".")
    devfn = 0x10 + int(function) * 0x40 + index
    return f"{domain_bus[:-2]}{devfn >> 3:02x}.{devfn & 7}"


def generate_host(number: int, shape: FleetShape, ids: _Ids, rng: random.Random,
                  now: str) -> dict[str, list[Row]]:
    """The rows of one simulated host, by table; fields are named as in ``COLUMNS``."""
    host_id = ids.take("hosts")
    pool_id = ids.take("pools")
    boot_id = str(uuid.UUID(int=rng.getrandbits(128)))
    base: Row = {"host_id": host_id, "now": now, "pool_id": pool_id, "pool_name": shape.pool,
                 "mode": "vfio", "vlan": shape.vlan}
    rows: dict[str, list[Row]] = {table: [] for table in LOAD_ORDER}
    rows["hosts"].append({**base, "machine_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                          "hostname": f"{shape.name_prefix}{number:04d}"})
    rows["pools"].append({**base, "pool_state": "active", "autostart": True, "method": "sysfs",
                          "vfs_per_pf": shape.vfs_per_pf})
    actor = f"root[{1000 + number}]"
    # JSON text made once and filled in per lease: json.dumps per row is a third of the time.
    applied_json = json.dumps({"mac": "@MAC@", "vlan": shape.vlan, "qos": 0, "spoofchk": None,
                               "trust": None, "link_state": None, "min_tx_rate": None,
                               "max_tx_rate": None, "driver": "iavf", "mtu": None})
    for action, detail in (("pool.define", {"definition": f'name = "{shape.pool}"\n'}),
                           ("pool.start", {"was_active": False})):
        rows["events"].append({**base, "actor": actor, "action": action, "pf_pci": None,
                               "vf_pci": None, "lease_id": None, "detail": json.dumps(detail)})
    for position in range(shape.pfs_per_host):
        pf_pci, pf_netdev, numa_node = _pf(position)
        pf: Row = {**base, "pf_pci": pf_pci, "pf_netdev": pf_netdev, "driver": "i40e",
                   "vendor": "8086", "device": "1572", "totalvfs": 64, "numa_node": numa_node,
                   "position": position}
        leased = rng.randint(0, int(shape.vfs_per_pf * shape.max_leased_share))
        rows["pfs"].append(pf)
        rows["pool_pfs"].append({**pf, "free_vfs": shape.vfs_per_pf - leased})
        for index in range(shape.vfs_per_pf):
            vf: Row = {**pf, "vf_id": ids.take("vfs"), "vf_index": index,
                       "vf_pci": _vf(pf_pci, index), "vf_netdev": f"{pf_netdev}v{index}",
                       "vf_state": "leased" if index < leased else "free"}
            rows["vfs"].append(vf)
            if index < leased:
                lease_id = ids.take("leases")
                mac = (f"52:54:{host_id >> 8 & 0xff:02x}:{host_id & 0xff:02x}:"
                       f"{position:02x}:{index:02x}")
                owner = f"vm-{number}-{position}-{index // 2}"
                lease: Row = {**vf, "lease_id": lease_id, "owner": owner,
                              "token_hash": hashlib.sha256(f"{lease_id}".encode()).hexdigest(),
                              "lease_state": "active", "mac": mac,
                              "applied_config": applied_json.replace("@MAC@", mac),
                              "saved_config": SAVED_CONFIG_JSON, "boot_id": boot_id,
                              "acquirer": f"acquire-{lease_id}.lock"}
                rows["leases"].append(lease)
                rows["events"].append({**lease, "actor": actor, "action": "lease.acquire",
                                       "detail": f'{{"owner": "{owner}", "mode": "vfio", '
                                                 f'"mac": "{mac}"}}'})
    return rows


def generate_fleet(shape: FleetShape, first_ids: dict[str, int]) -> Iterator[dict[str, list[Row]]]:
    rng = random.Random(shape.seed)
    ids = _Ids(dict(first_ids))
    now = datetime.now(UTC).isoformat()
    for number in range(1, shape.hosts + 1):
        yield generate_host(number, shape, ids, rng, now)


def check_columns(connection: Any) -> None:
    """Fail with the list of mapped columns the database lacks (the schema moved on)."""
    missing = []
    for table, columns in COLUMNS.items():
        present = {row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", (table,))}
        missing += [f"{table}.{column}" for column in columns if column not in present]
    if missing:
        raise LookupError("the database has no column " + ", ".join(missing)
                          + ": adapt COLUMNS in tests/fleetdata.py")


def _first_ids(connection: Any) -> dict[str, int]:
    return {table: int(connection.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
                       .fetchone()[0]) for table in ID_TABLES}


def load_fleet(connection: Any, shape: FleetShape = FleetShape(), *, analyze: bool = True,
               progress: Callable[[str], None] | None = None) -> LoadResult:
    """Insert ``shape.hosts`` simulated hosts with COPY, in one transaction on ``connection``
    (a psycopg 3 connection, not in autocommit mode), after any rows already there."""
    result = LoadResult(rows=dict.fromkeys(LOAD_ORDER, 0))
    started = time.monotonic()
    with connection.transaction():
        check_columns(connection)
        first_ids = _first_ids(connection)
        connection.execute("SET LOCAL synchronous_commit = off")
        # Row-by-row foreign key triggers take half the load time. A superuser can switch
        # them off for this transaction; verify_foreign_keys() then checks every constraint
        # once, set-based, before the commit, and verify_free_counts() the free counts that
        # vfpool's own triggers would have kept (the rows carry them).
        fast = connection.execute("SELECT current_setting('is_superuser')").fetchone()[0] == "on"
        if fast:
            connection.execute("SET LOCAL session_replication_role = replica")
        cursor = connection.cursor()
        # A COPY holds its connection until it ends, so the tables cannot be streamed side by
        # side: generate 100 hosts at a time, then COPY each table's rows of the batch.
        batch: dict[str, list[Row]] = {table: [] for table in LOAD_ORDER}
        for number, host in enumerate(generate_fleet(shape, first_ids), start=1):
            for table, rows in host.items():
                batch[table].extend(rows)
            if number % 100 == 0 or number == shape.hosts:
                _copy_batch(cursor, batch, result)
                batch = {table: [] for table in LOAD_ORDER}
                if progress is not None:
                    progress(f"{number} hosts loaded")
        # Move each id sequence past the ids given here, or the next INSERT would collide.
        for table in ID_TABLES:
            sequence = cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')",
                                      (table,)).fetchone()[0]
            if sequence is not None and result.rows[table]:
                cursor.execute(f"SELECT setval(%s, (SELECT MAX(id) FROM {table}))", (sequence,))
        if fast:
            connection.execute("SET LOCAL session_replication_role = origin")
            verify_foreign_keys(connection)
            verify_free_counts(connection)
    result.seconds = time.monotonic() - started
    if analyze:
        started = time.monotonic()
        with connection.transaction():
            connection.execute("ANALYZE " + ", ".join(LOAD_ORDER))
        result.analyze_seconds = time.monotonic() - started
    return result


def verify_free_counts(connection: Any) -> None:
    """Check that each pool membership's ``free_vfs`` equals its free VF rows (what the
    triggers of migration 0006 keep); raise naming how many memberships are off."""
    wrong = connection.execute(
        "SELECT count(*) FROM pool_pfs m JOIN pools p ON p.id = m.pool_id "
        "WHERE m.free_vfs <> (SELECT count(*) FROM vfs v WHERE v.host_id = m.host_id "
        "  AND v.pf_pci = m.pf_pci AND v.state = 'free' "
        '  AND v."index" >= coalesce(m.range_start, 0) '
        '  AND v."index" < coalesce(m.range_start, 0) + p.vfs_per_pf)').fetchone()[0]
    if wrong:
        raise ValueError(f"the loaded rows give {wrong} pool memberships a wrong free_vfs")


def verify_foreign_keys(connection: Any) -> None:
    """Check every foreign key of the loaded tables at once (MATCH SIMPLE: a row with a NULL
    in its key refers to nothing); raise naming the constraints that rows break."""
    constraints = connection.execute(
        "SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text, "
        "  ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) "
        "        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY i), "
        "  ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i) "
        "        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY i) "
        "FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s) "
        "ORDER BY c.conname", (list(LOAD_ORDER),)).fetchall()
    broken = []
    for name, child, parent, columns, referred in constraints:
        present = " AND ".join(f'c."{column}" IS NOT NULL' for column in columns)
        join = " AND ".join(f'p."{ref}" = c."{column}"' for column, ref in zip(columns, referred,
                                                                             strict=True))
        count = connection.execute(
            f"SELECT count(*) FROM {child} c WHERE {present} "
            f"AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {join})").fetchone()[0]
        if count:
            broken.append(f"{name} ({count} rows of {child})")
    if not constraints:
        raise LookupError("found no foreign keys to check: is this a vfpool store?")
    if broken:
        raise ValueError("the loaded rows break foreign keys: " + ", ".join(broken))


def _copy_batch(cursor: Any, batch: dict[str, list[Row]], result: LoadResult) -> None:
    for table in LOAD_ORDER:
        mapping = COLUMNS[table]
        columns = ", ".join(f'"{column}"' for column in mapping)
        pick = operator.itemgetter(*mapping.values())
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in batch[table]:
                copy.write_row(pick(row))
        result.rows[table] += len(batch[table])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=FleetShape.hosts)
    args = parser.parse_args(argv)

    from tests.pgserver import PgServer
    from vfpool.store import open_store

    with PgServer.start() as server:
        name = server.create_database("fleet")
        open_store(server.url(name)).close()
        with server.connect(name) as connection:
            result = load_fleet(connection, FleetShape(hosts=args.hosts),
                                progress=lambda line: print(line, file=sys.stderr))
            size = connection.execute("SELECT pg_size_pretty(pg_database_size(%s))",
                                      (name,)).fetchone()[0]
        print(f"loaded {args.hosts:,} hosts: {result}; database {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
