"""`report --fleet` at service level, on SQLite and on a real PostgreSQL server: every host's
part is exactly that host's own report, built with a fixed number of queries however many
hosts share the store; and its Prometheus form labels every sample with its host.

Three simulated hosts share one store, with identical PCI layouts and one pool name in
common (so a join that forgot the host would mix them up):

- ``a``: pools ``tenant`` (enp5s0f0, 3 VFs; vm1 holds one) and ``other`` (enp5s0f1, defined
  only), and 30 extra events, more than a report shows;
- ``b``: pool ``tenant`` (enp5s0f0, 2 VFs; vm2 and vm3 hold both);
- ``c``: pool ``tenant`` defined only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from vfpool.cli import report_metrics, report_render
from vfpool.model.pool import VfDefaults
from vfpool.service import events, leases, pools
from vfpool.service import report as report_service
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

NOW = datetime(2025, 1, 2, 14, 3, 7, tzinfo=UTC)
STATES = ("free", "leased", "reserved", "unusable")


def define(ctx: Context, name: str, pf: str, vfs: int) -> None:
    pools.define(ctx, pools.parse_spec(name, [pf], vfs, "auto", "netdev", VfDefaults(vlan=5)))


def host_a(ctx: Context) -> None:
    define(ctx, "tenant", "enp5s0f0", 3)
    define(ctx, "other", "enp5s0f1", 2)
    pools.start(ctx, "tenant")
    leases.acquire(ctx, "tenant", "vm1")
    with ctx.store.session() as session:
        for number in range(30):
            events.record(session, "test.event", pool="tenant", number=number)


def host_b(ctx: Context) -> None:
    define(ctx, "tenant", "enp5s0f0", 2)
    pools.start(ctx, "tenant")
    leases.acquire(ctx, "tenant", "vm2")
    leases.acquire(ctx, "tenant", "vm3")


def host_c(ctx: Context) -> None:
    define(ctx, "tenant", "enp5s0f0", 2)


SCENARIO = {"a": host_a, "b": host_b, "c": host_c}


@pytest.fixture
def fleet(tmp_path_factory: pytest.TempPathFactory, migrated_store_url: str
          ) -> Iterator[dict[str, Context]]:
    """Each host's Context on the shared store, by host name (their build order: a, b, c)."""
    contexts: dict[str, Context] = {}
    base = tmp_path_factory.mktemp("fleet")
    for name, build in SCENARIO.items():
        sim = SimHost.create(base / name)
        contexts[name] = open_context(db=migrated_store_url, sim=sim.root)
        build(contexts[name])
    yield contexts
    for context in contexts.values():
        context.close()


def selects_during(ctx: Context, work: Callable[[], object]) -> list[str]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(ctx.store.engine, "before_cursor_execute", count)
    try:
        work()
    finally:
        event.remove(ctx.store.engine, "before_cursor_execute", count)
    return [text for text in statements if text.lstrip().upper().startswith(("SELECT", "WITH"))]


def test_each_host_part_is_that_hosts_own_report(fleet: dict[str, Context]) -> None:
    found = report_service.build_fleet_report(fleet["b"], now=NOW)
    assert found.generated_at == NOW
    assert [host.name for host in found.hosts] == ["a", "b", "c"]
    for host in found.hosts:
        assert host.report == report_service.build_report(fleet[host.name], now=NOW), host.name
        identity = fleet[host.name].store.host
        assert identity is not None and host.machine_id == identity.machine_id
    a, b, c = (host.report for host in found.hosts)
    # What the scenario made, so the equality above is not one of empty reports.
    assert [(pool.name, pool.leases, pool.vfs["leased"]) for pool in a.pools] == [
        ("other", 0, 0), ("tenant", 1, 1)]
    assert [(vf.index, vf.owner) for vf in b.vfs] == [(0, "vm2"), (1, "vm3")]
    assert (c.vfs, [pool.state for pool in c.pools]) == ([], ["inactive"])
    assert len(a.events) == report_service.EVENT_LIMIT
    assert a.events[0].detail == {"number": 29}
    assert [event.action for event in b.events][:2] == ["lease.acquire", "lease.reserve"]
    assert {event.pool for event in c.events} == {"tenant"}
    # The summary (what the metrics read) is the same pools, without VF rows or events.
    summary = report_service.build_fleet_summary(fleet["c"], now=NOW)
    assert summary.generated_at == NOW
    assert [(host.name, host.machine_id, host.report) for host in summary.hosts] == [
        (host.name, host.machine_id, report_service.Summary(NOW, host.report.pools))
        for host in found.hosts]


def test_the_number_of_queries_does_not_grow_with_the_hosts(
        tmp_path_factory: pytest.TempPathFactory, migrated_store_url: str) -> None:
    base = tmp_path_factory.mktemp("growing")
    counts: dict[str, list[int]] = {"report": [], "summary": []}
    contexts: list[Context] = []
    found: list[report_service.FleetReport[report_service.Summary]] = []

    def report() -> None:
        found.append(report_service.build_fleet_report(contexts[0], now=NOW))

    def summary() -> None:
        found.append(report_service.build_fleet_summary(contexts[0], now=NOW))

    try:
        for name in ("a", "b", "c", "d"):
            contexts.append(open_context(db=migrated_store_url,
                                         sim=SimHost.create(base / name).root))
            host_b(contexts[-1])
            for kind, build in (("report", report), ("summary", summary)):
                counts[kind].append(len(selects_during(contexts[0], build)))
                assert len(found[-1].hosts) == len(contexts)
                assert found[-1].hosts[-1].report.pools[0].leases == 2
    finally:
        for context in contexts:
            context.close()
    assert counts["report"] == [counts["report"][0]] * 4, counts
    assert counts["summary"] == [counts["summary"][0]] * 4, counts
    assert counts["summary"][0] < counts["report"][0]


def test_the_fleet_exposition_has_every_sample_with_its_host_first(
        fleet: dict[str, Context]) -> None:
    found = report_service.build_fleet_summary(fleet["a"], now=NOW)
    text = report_metrics.render_prometheus(found)
    assert text == report_render.render(report_service.build_fleet_report(fleet["a"], now=NOW),
                                        "prometheus")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for sample in family.samples:
            assert sample.timestamp is None
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    members = {("a", "tenant"): {"free": 2, "leased": 1}, ("a", "other"): {},
               ("b", "tenant"): {"leased": 2}, ("c", "tenant"): {}}
    for (host, pool), by_state in members.items():
        for state in STATES:
            pf = "0000:05:00.1" if pool == "other" else "0000:05:00.0"
            expected[("vfpool_vfs", (("host", host), ("pf", pf), ("pool", pool),
                                     ("state", state)))] = by_state.get(state, 0)
    for host, pool, live, active in (("a", "other", 0, 0), ("a", "tenant", 1, 1),
                                     ("b", "tenant", 2, 1), ("c", "tenant", 0, 0)):
        expected[("vfpool_leases", (("host", host), ("pool", pool)))] = live
        expected[("vfpool_pool_active", (("host", host), ("pool", pool)))] = active
    assert samples == expected
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == len(expected)
    assert all(line.split("{", 1)[1].startswith('host="') for line in lines)
    assert all(len(line.rsplit("} ", 1)[1].split()) == 1 for line in lines)  # no timestamp
