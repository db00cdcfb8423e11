"""`make bench`: measurements printed as a table, never asserted.

The machines here are noisy, so every figure that matters is a ratio between two things measured
in the same run: the API's acquire+release against its bare SQLite transactions, and a fresh
`vfpool lease acquire` process against `python3 -c pass`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import vfpool
from vfpool.sim.host import SimHost

POOL = "bench"
LOOPS = 200
PROCESS_OPS = 60  # acquire+release pairs per worker in the throughput runs
VFPOOL = Path(sys.executable).parent / "vfpool"


def build_host(root: Path) -> None:
    """A 256-VF pool: an E810 with 128 VFs on each of its two ports."""
    SimHost.create(root, ["intel-e810@0000:05:00.0:numa=0:totalvfs=128"])
    with vfpool.connect(sim=root) as host:
        host.define_pool(POOL, ["enp5s0f0", "enp5s0f1"], 128)
        host.start_pool(POOL)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def api_loop(root: Path, loops: int) -> list[float]:
    samples = []
    with vfpool.connect(sim=root) as host:
        for number in range(loops):
            started = time.perf_counter()
            lease = host.acquire(POOL, owner=f"bench-{number % 7}")
            host.release(lease)
            samples.append(time.perf_counter() - started)
    return samples


def sqlite_floor(db_path: Path, loops: int) -> list[float]:
    """The same loop reduced to its SQLite transactions: reserve, save, activate, release."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    pool_id = connection.execute("SELECT id FROM pools WHERE name=?", (POOL,)).fetchone()[0]
    samples = []
    for number in range(loops):
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        vf_id, vf_pci, pf_pci, index = connection.execute(
            "SELECT id, pci, pf_pci, \"index\" FROM vfs WHERE state='free' "
            "ORDER BY pf_pci, \"index\" LIMIT 1").fetchone()
        lease_id = connection.execute(
            "INSERT INTO leases (pool_id, vf_id, pf_pci, vf_pci, vf_index, owner, token_hash, "
            "state, mode, mac, boot_id, applied_config, created_at, updated_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, 'reserved', 'vfio', '02:00:00:00:00:01', 'b', '{}', "
            "datetime('now'), datetime('now'))",
            (pool_id, vf_id, pf_pci, vf_pci, index, f"floor-{number}", "0" * 64)).lastrowid
        connection.execute("UPDATE vfs SET state='reserved' WHERE id=?", (vf_id,))
        connection.execute("INSERT INTO events (at, action, lease_id) VALUES "
                           "(datetime('now'), 'lease.reserve', ?)", (lease_id,))
        connection.execute("COMMIT")
        for statement in ("UPDATE leases SET saved_config='{}' WHERE id=?",
                          "UPDATE leases SET state='active' WHERE id=?"):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(statement, (lease_id,))
            connection.execute("COMMIT")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE leases SET state='released' WHERE id=?", (lease_id,))
        connection.execute("UPDATE vfs SET state='free' WHERE id=?", (vf_id,))
        connection.execute("INSERT INTO events (at, action, lease_id) VALUES "
                           "(datetime('now'), 'lease.release', ?)", (lease_id,))
        connection.execute("COMMIT")
        samples.append(time.perf_counter() - started)
    connection.close()
    return samples


def _worker(root: str, ops: int, owner: str) -> None:
    with vfpool.connect(sim=root) as host:
        for _ in range(ops):
            lease = host.acquire(POOL, owner=owner)
            host.release(lease)


def throughput(root: Path, processes: int) -> float:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(str(root), PROCESS_OPS, f"w{n}"))
               for n in range(processes)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"throughput worker failed with exit code {worker.exitcode}")
    return processes * PROCESS_OPS / (time.perf_counter() - started)


def wall_times(argv: list[str], runs: int, after: Callable[[], None] | None = None) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        samples.append(time.perf_counter() - started)
        if after is not None:
            after()
    return statistics.median(samples)


def storm_rows(workdir: Path) -> list[tuple[str, str]]:
    """The storm of tests/races/test_storm.py, timed: 1, 16 and 32 processes acquiring and
    releasing while reconcile, report, pool info and pool resize loop beside them."""
    from tests.races.storm import storm

    rows = []
    for workers, rounds in ((1, 8), (16, 2), (32, 2)):
        root = workdir / f"storm-{workers}"
        SimHost.create(root, ["intel-x710@0000:85:00.0:numa=1"])
        with vfpool.connect(sim=root) as host:
            host.define_pool("storm", ["enp133s0f0", "enp133s0f1"], 16, mode="netdev",
                             vlan=42)
            host.start_pool("storm")
        result = storm(root, "storm", workers=workers, rounds=rounds)
        figures = result.figures()
        codes = sorted({call.returncode for call in result.calls})
        rows.append((f"storm, {workers} process(es): acquire+release calls/s, p50, p99",
                     f"{figures['ops_per_s']:.1f}/s, {figures['p50'] * 1e3:.0f} ms, "
                     f"{figures['p99'] * 1e3:.0f} ms"))
        rows.append((f"storm, {workers} process(es): errors (exit codes seen)",
                     f"{len(result.unexpected)} ({', '.join(map(str, codes))}; "
                     f"{len(result.calls)} calls)"))
    return rows


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vfpool-bench-"))
    try:
        root = workdir / "host"
        build_host(root)
        rows: list[tuple[str, str]] = []
        api_loop(root, 20)  # warm caches, migrations, imports
        api = api_loop(root, LOOPS)
        floor_db = workdir / "floor.db"
        shutil.copy(root / "vfpool.db", floor_db)
        floor = sqlite_floor(floor_db, LOOPS)
        api_median, floor_median = statistics.median(api), statistics.median(floor)
        rows += [
            ("acquire+release, Python API, 256-VF pool: median", f"{api_median * 1e3:.2f} ms"),
            ("acquire+release, Python API, 256-VF pool: p99",
             f"{percentile(api, 0.99) * 1e3:.2f} ms"),
            ("same loop, bare SQLite transactions: median", f"{floor_median * 1e3:.2f} ms"),
            ("same loop, bare SQLite transactions: p99",
             f"{percentile(floor, 0.99) * 1e3:.2f} ms"),
            ("ratio API / SQLite floor (medians)", f"{api_median / floor_median:.1f}x"),
        ]
        for processes in (1, 4, 16):
            rows.append((f"throughput, {processes} process(es)",
                         f"{throughput(root, processes):.0f} acquire+release/s"))
        env_root = str(root)

        def release_all() -> None:
            subprocess.run([str(VFPOOL), "--sim", env_root, "lease", "release", "--owner",
                            "cold"], check=True, capture_output=True, timeout=60)

        cold = wall_times([str(VFPOOL), "--sim", env_root, "lease", "acquire", POOL, "--owner",
                           "cold", "--json"], 7, after=release_all)
        bare = wall_times([sys.executable, "-c", "pass"], 7)
        rows += [
            ("`vfpool lease acquire` as a fresh process: median", f"{cold * 1e3:.0f} ms"),
            ("`python3 -c pass` beside it: median", f"{bare * 1e3:.0f} ms"),
            ("ratio fresh vfpool / bare python", f"{cold / bare:.1f}x"),
        ]
        rows += storm_rows(workdir)
        width = max(len(name) for name, _ in rows)
        print(f"{'measurement'.ljust(width)}  value")
        print(f"{'-' * width}  {'-' * 24}")
        for name, value in rows:
            print(f"{name.ljust(width)}  {value}")
        print(f"\n{os.cpu_count()} CPUs; {LOOPS} loops; {PROCESS_OPS} pairs per process; "
              f"{json.dumps({'python': sys.version.split()[0]})}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
