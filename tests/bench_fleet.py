"""`make bench`: placement at fleet scale on a real PostgreSQL server, measured, never asserted.

1,000 simulated hosts of 8 PFs x 32 VFs each (256,000 VF rows), bulk-loaded with COPY
(tests/fleetdata.py), plus one simulated host of our own that defines and starts a pool. Then:

- ``fleet place`` latency, the median of 25 calls (goal: at most 50 ms);
- our host's acquire plus release, against the same on a fleet of only our host (goal: a
  ratio of at most 1.25);
- ``host list`` and ``report --fleet``, each the median of 3 calls.

Run it alone with ``python -m tests.bench_fleet [--hosts N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.fleetdata import FleetShape, load_fleet
from tests.pgserver import PgServer, PgUnavailable
from vfpool.cli import report_metrics
from vfpool.model.pool import VfDefaults
from vfpool.service import fleet, leases, pools
from vfpool.service import report as report_service
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

PAIRS = 20


def _median_ms(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _our_host(ctx: Context) -> None:
    pools.define(ctx, pools.parse_spec("bench", ["enp5s0f0"], 8, "auto", "vfio",
                                       VfDefaults()))
    pools.start(ctx, "bench")


def _pair_ms(ctx: Context) -> float:
    def pair() -> None:
        [lease] = leases.acquire(ctx, "bench", "bench-vm")
        leases.release(ctx, lease.id, token=lease.token)

    pair()  # warm: the first call registers the host and fills the caches
    return _median_ms(pair, PAIRS)


def _fleet_reads(ctx: Context) -> list[tuple[str, str, str]]:
    place = _median_ms(lambda: fleet.place(ctx, "tenant", 4, numa_node=0), 25)
    listed = _median_ms(lambda: fleet.host_list(ctx), 3)
    fleet_report = _median_ms(lambda: report_metrics.render_prometheus(
        report_service.build_fleet_summary(ctx)), 3)
    return [("fleet place K=4 NUMA 0 (median of 25)", f"{place:.1f} ms",
             f"goal <= 50 ms: {'met' if place <= 50 else 'NOT met'}"),
            ("host list (median of 3)", f"{listed:.0f} ms", ""),
            ("report --fleet, prometheus (median of 3)", f"{fleet_report:.0f} ms", "")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    options = parser.parse_args(argv)
    try:
        server = PgServer.start()
    except PgUnavailable as exc:
        print(f"fleet bench skipped: {exc}")
        return 0
    rows: list[tuple[str, str, str]] = []
    with server, tempfile.TemporaryDirectory(prefix="vfpool-fleet-") as scratch:
        big, empty = server.create_database("fleet"), server.create_database("alone")
        for name in (big, empty):
            open_context(db=server.url(name), sim=SimHost.create(
                Path(scratch) / f"migrate-{name}").root).store.close()
        started = time.perf_counter()
        with server.connect(big) as connection:
            result = load_fleet(connection, FleetShape(hosts=options.hosts))
        rows.append(("load (COPY)", f"{time.perf_counter() - started:.1f} s",
                     f"{result.rows['vfs']:,} VF rows"))
        times = {}
        for name in (big, empty):
            sim = SimHost.create(Path(scratch) / f"host-{name}")
            with open_context(db=server.url(name), sim=sim.root) as ctx:
                _our_host(ctx)
                times[name] = _pair_ms(ctx)
                if name == big:
                    rows += _fleet_reads(ctx)
        ratio = times[big] / times[empty]
        rows.append((f"acquire+release, {options.hosts} hosts / 1 host",
                     f"{times[big]:.1f} / {times[empty]:.1f} ms = {ratio:.2f}",
                     f"goal <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'}"))
    width = max(len(row[0]) for row in rows)
    print(f"\nFleet on PostgreSQL ({options.hosts:,} hosts x 8 PFs x 32 VFs)")
    for what, value, note in rows:
        print(f"  {what.ljust(width)}  {value:>24}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
