"""The inventory report as Prometheus metrics, through prometheus_client: a collector of
gauges registered in a fresh registry per render, exposed with ``generate_latest`` (stdout)
or written with ``write_to_textfile`` (``--output``), for node_exporter's textfile collector.

What the textfile collector needs, and what this gives it:

- gauges only, with a sample for every pool, PF and state even when zero, so a series never
  vanishes just because its count dropped to zero;
- no timestamps (the collector rejects them): no sample is given one;
- on ``report --fleet``, a ``host`` label on every sample; prometheus_client writes label
  names in sorted order, so ``host`` comes first, before ``pf``, ``pool`` and ``state``.

A separate module from report_render, so that the other formats never import
prometheus_client (which pulls in http.server and friends).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path

from prometheus_client.exposition import generate_latest, write_to_textfile
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from vfpool.cli.report_files import refuse_directory, sync_directory, write_error
from vfpool.service.report import VF_STATES, FleetReport, Summary

METRICS = {
    "vfpool_vfs": "VFs of each PF of a pool, by state (0 for an inactive pool).",
    "vfpool_leases": "Live (reserved or active) leases of each pool.",
    "vfpool_pool_active": "1 when the pool is active, 0 when it is inactive.",
}
# Fixes the modes of the files write_textfile makes: 0666 & ~0022 = 0644, whatever the umask.
TEXTFILE_UMASK = 0o022


class ReportCollector(Collector):
    """The gauges of one or more reports (a ``Summary`` is all they need). ``parts`` pairs
    each with the values of ``leading_labels`` for its samples: ``()`` for one host,
    ``("host",)`` and the host's name for each host of a fleet."""

    def __init__(self, parts: Sequence[tuple[Sequence[str], Summary]],
                 leading_labels: Sequence[str] = ()) -> None:
        self.parts = list(parts)
        self.leading_labels = list(leading_labels)

    @classmethod
    def of(cls, report: Summary) -> ReportCollector:
        return cls([((), report)])

    @classmethod
    def of_fleet(cls, fleet: FleetReport[Summary]) -> ReportCollector:
        return cls([((host.name,), host.report) for host in fleet.hosts], ("host",))

    def collect(self) -> Iterator[Metric]:
        lead = self.leading_labels
        vfs = GaugeMetricFamily("vfpool_vfs", METRICS["vfpool_vfs"],
                                labels=[*lead, "pool", "pf", "state"])
        leases = GaugeMetricFamily("vfpool_leases", METRICS["vfpool_leases"],
                                   labels=[*lead, "pool"])
        active = GaugeMetricFamily("vfpool_pool_active", METRICS["vfpool_pool_active"],
                                   labels=[*lead, "pool"])
        for values, report in self.parts:
            for pool in report.pools:
                for pf in pool.pfs:
                    for state in VF_STATES:
                        vfs.add_metric([*values, pool.name, pf.pci, state], pf.vfs[state])
                leases.add_metric([*values, pool.name], pool.leases)
                active.add_metric([*values, pool.name], int(pool.state == "active"))
        yield from (vfs, leases, active)


def registry_for(found: Summary | FleetReport[Summary]) -> CollectorRegistry:
    """A fresh registry holding the collector of ``found`` alone (never the process-wide
    default one, whose process and platform metrics are not vfpool's)."""
    registry = CollectorRegistry()
    registry.register(ReportCollector.of_fleet(found) if isinstance(found, FleetReport)
                      else ReportCollector.of(found))
    return registry


def render_prometheus(found: Summary | FleetReport[Summary]) -> str:
    """The text exposition format of a report, or of every host's (``report --fleet``)."""
    return generate_latest(registry_for(found)).decode("utf-8")


def write_textfile(path: Path | str, registry: CollectorRegistry) -> None:
    """Replace ``path`` with the registry's metrics through ``write_to_textfile``, which
    writes a temp file beside ``path`` (``NAME.PID.THREAD``, not ``*.prom``, so the textfile
    collector ignores it) and renames it over ``path``: a reader sees the old file or the new
    one, never half of one. Around it, what vfpool's own writes guarantee:

    - mode 0644 whatever the caller's umask (so node_exporter, another user, can read it):
      the umask is set to 022 for the call, which is why this is for the CLI's single thread;
    - a directory, a missing directory or a refusal are one-line errors (exit 1, or 6 for
      permission), and no temp file is left behind, even on an interrupt (older
      prometheus_client releases leave it);
    - the file and the rename are fsynced afterwards (write_to_textfile does neither), so the
      report is on disk when the command exits 0.
    """
    path = Path(path)
    refuse_directory(path)
    temp = Path(f"{path}.{os.getpid()}.{threading.get_ident()}")  # write_to_textfile's name
    old_umask = os.umask(TEXTFILE_UMASK)
    try:
        write_to_textfile(str(path), registry)
    except BaseException as exc:
        with suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise
    finally:
        os.umask(old_umask)
    try:
        written = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(written)
        finally:
            os.close(written)
    except OSError as exc:
        raise write_error(path, exc) from exc
    sync_directory(path)
