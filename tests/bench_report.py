"""`make bench`: the inventory report on a large store, measured and printed, never asserted.

The store is built straight with SQL in a fresh database (its schema from vfpool's own
migrations): 8 E810 PFs of 256 VFs each in 4 pools of 2 PFs, 2000 live leases and 100,000
events. Then ``build_report`` and each renderer are timed, the median of 5 runs each, and
the whole `vfpool report` command in a new process (imports and opening the store included),
beside a process that only imports the report's service module. Each step shows its median
wall time and its median CPU time (a shared machine's other load inflates the first only).
The target (issue 6) is under 1 s for building the report plus rendering it.

Run it alone with ``python tests/bench_report.py``.
"""

from __future__ import annotations

import functools
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vfpool.cli import report_metrics, report_render
from vfpool.host.identity import read_identity
from vfpool.model.vfconfig import generated_mac
from vfpool.service import report as report_service
from vfpool.service.context import open_context
from vfpool.store import open_store

PFS = 8
VFS_PER_PF = 256
PFS_PER_POOL = 2
LEASES = 2000
EVENTS = 100_000
RUNS = 5
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
# SQLAlchemy's SQLite DATETIME text format: what UtcDateTime reads back.
SQL_TIME = "%Y-%m-%d %H:%M:%S.%f"
VFPOOL = Path(sys.executable).parent / "vfpool"
# The report runs on this machine (no --sim), so the store's rows are this machine's.
BENCH_HOST = read_identity(Path("/"), simulated=False)


def _at(offset_seconds: float) -> str:
    return (NOW - timedelta(seconds=offset_seconds)).strftime(SQL_TIME)


def pf_pci(number: int) -> str:
    return f"0000:{0x10 + number:02x}:00.0"


def vf_pci(pf_number: int, index: int) -> str:
    # VF routing ids after the PF's bus, as an E810 lays them out: 8 functions per slot.
    bus = 0x10 + pf_number
    return f"0000:{bus:02x}:{1 + index // 8:02x}.{index % 8}"


def build_store(db_path: Path) -> None:
    """The large store, consistent with the models: every lease's VF is leased (or
    reserved, for the few leases still being set up) and lies in its pool's used indices."""
    open_store(f"sqlite:///{db_path}").close()  # the schema, from the migrations
    connection = sqlite3.connect(db_path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    created = _at(86_400)
    connection.execute("BEGIN")
    # One host owns it all: the store is opened below for a host with this machine id.
    connection.execute("INSERT INTO hosts (id, machine_id, name, first_seen, last_seen) "
                       "VALUES (1, ?, 'bench', ?, ?)", (BENCH_HOST.machine_id, created, created))
    connection.executemany(
        "INSERT INTO pfs (host_id, pci, netdev, driver, vendor, device, totalvfs, numa_node, "
        "first_seen, last_seen) VALUES (1, ?, ?, 'ice', '8086', '1592', ?, ?, ?, ?)",
        [(pf_pci(n), f"enp{0x10 + n}s0f0np0", VFS_PER_PF, n * 2 // PFS, created, created)
         for n in range(PFS)])
    pools = PFS // PFS_PER_POOL
    connection.executemany(
        "INSERT INTO pools (id, host_id, name, state, autostart, method, mode, vfs_per_pf, "
        "vlan, created_at, updated_at) VALUES (?, 1, ?, 'active', 0, 'auto', 'vfio', ?, ?, ?, "
        "?)",
        [(p + 1, f"tenant-{p}", VFS_PER_PF, 100 + p, created, created) for p in range(pools)])
    connection.executemany(
        "INSERT INTO pool_pfs (pool_id, host_id, pf_pci, position) VALUES (?, 1, ?, ?)",
        [(n // PFS_PER_POOL + 1, pf_pci(n), n % PFS_PER_POOL) for n in range(PFS)])
    vfs = [(n * VFS_PER_PF + i + 1, n, i) for n in range(PFS) for i in range(VFS_PER_PF)]
    leased = vfs[:LEASES]
    reserved_every = 50  # a few leases caught mid-acquire
    states = {vf_id: ("reserved" if k % reserved_every == 0 else "leased")
              for k, (vf_id, _, _) in enumerate(leased)}
    connection.executemany(
        'INSERT INTO vfs (id, host_id, pf_pci, "index", pci, netdev, state, updated_at) '
        "VALUES (?, 1, ?, ?, ?, NULL, ?, ?)",
        [(vf_id, pf_pci(n), i, vf_pci(n, i), states.get(vf_id, "free"), created)
         for vf_id, n, i in vfs])
    lease_rows = []
    for k, (vf_id, n, i) in enumerate(leased):
        pool = f"tenant-{n // PFS_PER_POOL}"
        owner = f"vm-{k // 4}"
        lease_rows.append((
            k + 1, n // PFS_PER_POOL + 1, vf_id, pf_pci(n), vf_pci(n, i), i, owner,
            "0" * 64, "reserved" if states[vf_id] == "reserved" else "active",
            generated_mac(pool, owner, i), 100 + n // PFS_PER_POOL, n * 2 // PFS,
            json.dumps({"driver": "vfio-pci"}), _at(60 * (LEASES - k)), _at(60 * (LEASES - k))))
    connection.executemany(
        "INSERT INTO leases (id, host_id, pool_id, vf_id, pf_pci, vf_pci, vf_index, owner, "
        "token_hash, state, mode, mac, vlan, numa_node, applied_config, boot_id, created_at, "
        "updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, 'vfio', ?, ?, ?, ?, 'bench-boot', ?, "
        "?)",
        lease_rows)
    actions = ("lease.reserve", "lease.acquire", "lease.release", "pool.start")
    connection.executemany(
        "INSERT INTO events (host_id, at, actor, action, pool, pf, vf, lease_id, detail) "
        "VALUES (1, ?, 'bench[1]', ?, ?, ?, ?, ?, ?)",
        ((_at(EVENTS - e), actions[e % 4], f"tenant-{e % pools}", pf_pci(e % PFS),
          vf_pci(e % PFS, e % VFS_PER_PF), e % LEASES + 1, json.dumps({"owner": f"vm-{e}"}))
         for e in range(EVENTS)))
    connection.execute("COMMIT")
    connection.close()


@dataclass(frozen=True)
class Timing:
    """Medians of RUNS runs: wall seconds, and CPU seconds (this process's, or for a child
    process its own), which the other load on a shared machine does not inflate."""

    wall: float
    cpu: float


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def median(action: Callable[[], object], *, child: bool = False) -> Timing:
    who = resource.RUSAGE_CHILDREN if child else resource.RUSAGE_SELF
    walls, cpus = [], []
    for _ in range(RUNS):
        started, cpu_started = time.perf_counter(), _cpu(who)
        action()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu(who) - cpu_started)
    return Timing(statistics.median(walls), statistics.median(cpus))


def measure(db_path: Path) -> list[tuple[str, Timing]]:
    with open_context(db=f"sqlite:///{db_path}") as ctx:
        started, cpu_started = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        report = report_service.build_report(ctx, now=NOW)  # opens the store, warms the cache
        first = Timing(time.perf_counter() - started, _cpu(resource.RUSAGE_SELF) - cpu_started)
        results = [("build_report, first (opens the store)", first),
                   ("build_report", median(lambda: report_service.build_report(ctx, now=NOW)))]
        assert len(report.vfs) == PFS * VFS_PER_PF, len(report.vfs)
        assert sum(pool.leases for pool in report.pools) == LEASES
        for name in report_render.FORMATS:
            results.append((f"render {name}", median(
                functools.partial(report_render.render, report, name))))
        results.append(("build_report + render table", median(
            lambda: report_render.render_table(report_service.build_report(ctx, now=NOW)))))
        # What `report --format prometheus` does: the summary, without VF rows and events.
        results.append(("build_summary + render prometheus", median(
            lambda: report_metrics.render_prometheus(
                report_service.build_summary(ctx, now=NOW)))))
    if VFPOOL.exists():
        for output_format in ("table", "prometheus"):
            argv = [str(VFPOOL), "--db", f"sqlite:///{db_path}", "report", "--format",
                    output_format]
            results.append((f"`vfpool report --format {output_format}` (a new process)",
                            median(functools.partial(subprocess.run, argv, check=True,
                                                     stdout=subprocess.DEVNULL), child=True)))
        argv = [sys.executable, "-c", "import vfpool.service.report"]
        results.append(("a new process importing vfpool.service.report", median(
            functools.partial(subprocess.run, argv, check=True), child=True)))
    return results


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vfpool-bench-report-") as directory:
        db_path = Path(directory) / "vfpool.db"
        started = time.perf_counter()
        build_store(db_path)
        built = time.perf_counter() - started
        results = measure(db_path)
    print(f"report: {PFS} PFs x {VFS_PER_PF} VFs, {LEASES} leases, {EVENTS} events "
          f"(store built in {built:.1f} s); median of {RUNS} runs")
    width = max(len(name) for name, _ in results)
    print(f"{'step'.ljust(width)}  {'wall ms':>8}  {'CPU ms':>8}")
    for name, timing in results:
        print(f"{name.ljust(width)}  {timing.wall * 1000:8.2f}  {timing.cpu * 1000:8.2f}")
    print("target: the report (build_report + rendering) under 1000 ms")


if __name__ == "__main__":
    main()
