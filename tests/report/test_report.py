"""The inventory report (issue 6): what the service counts (``build_report``, and the
``build_summary`` the metrics read), and what cli/report_render and cli/report_metrics make
of it: golden files for each format, the Prometheus text checked by prometheus_client's own
parser. Writing ``--output`` files is tested in test_output.py, ``--fleet`` in
test_fleet_report.py.

The scenario (``populate``) runs on the default simulated host (82599 at 0000:05:00.0 on NUMA
0, X710 at 0000:85:00.0 on NUMA 1):

- pool ``net``: netdev mode, enp5s0f0, 2 VFs, VLAN 10. vm1 holds VF 0 (MAC 52:54:00:00:00:01);
  vm3 leased VF 1 and released it.
- pool ``v``: vfio, enp133s0f0#4-7 and enp133s0f1, 3 VFs each. vm2 holds VFs 4 and 5 of
  enp133s0f0, whose VF 6 is unusable; vm4's lease of VF 0 of enp133s0f1 is still reserved
  (as a crash mid-acquire leaves it).
- pool ``idle``: enp5s0f1, defined, never started.

Timestamps and actors are then pinned (events one minute apart from BASE, leases ten), so
with ``now=NOW`` every format is stable enough for a golden file.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, select

from vfpool.cli import report_metrics, report_render
from vfpool.model.pool import VfDefaults
from vfpool.service import events, leases, pools
from vfpool.service import report as report_service
from vfpool.service.context import Context, open_context
from vfpool.service.report import PfSummary, PoolSummary, Report, VfRow
from vfpool.sim.host import SimHost
from vfpool.store import Event, Lease, Vf

BASE = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2025, 1, 2, 14, 3, 7, tzinfo=UTC)
IXGBE0, IXGBE1 = "0000:05:00.0", "0000:05:00.1"
I40E0, I40E1 = "0000:85:00.0", "0000:85:00.1"


def populate(sim_root: Path) -> list[str]:
    """Build the scenario of the module docstring; returns every lease token handed out."""
    tokens = []
    with open_context(sim=sim_root) as ctx:
        for name, pfs, vfs, mode, defaults in (
                ("net", ["enp5s0f0"], 2, "netdev", VfDefaults(vlan=10)),
                ("v", ["enp133s0f0#4-7", "enp133s0f1"], 3, "vfio", VfDefaults()),
                ("idle", ["enp5s0f1"], 2, "netdev", VfDefaults())):
            pools.define(ctx, pools.parse_spec(name, pfs, vfs, "auto", mode, defaults))
        pools.start(ctx, "net")
        pools.start(ctx, "v")
        tokens += [lease.token for lease in
                   leases.acquire(ctx, "net", "vm1", mac="52:54:00:00:00:01")]
        tokens += [lease.token for lease in leases.acquire(ctx, "v", "vm2", count=2)]
        with ctx.store.session() as session:
            vf = session.scalars(select(Vf).where(Vf.pf_pci == I40E0,
                                                  Vf.vf_index == 6)).one()
            vf.state, vf.reason = "unusable", "restore failed: EIO (Input/output error)"
        [stuck] = leases.acquire(ctx, "v", "vm4")
        [gone] = leases.acquire(ctx, "net", "vm3")
        tokens += [stuck.token, gone.token]
        leases.release(ctx, gone.id, token=gone.token)
        with ctx.store.session() as session:
            lease = session.get(Lease, stuck.id)
            assert lease is not None and lease.vf is not None
            lease.state = lease.vf.state = "reserved"
            for row in session.scalars(select(Event)):
                row.at, row.actor = BASE + timedelta(minutes=row.id), "tester[1]"
            for lease in session.scalars(select(Lease)):
                lease.created_at = lease.updated_at = BASE + timedelta(minutes=10 * lease.id)
                if lease.released_at is not None:
                    lease.released_at = lease.created_at + timedelta(minutes=5)
    return tokens


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("report") / "host"
    SimHost.create(root)
    return root, populate(root)


@pytest.fixture
def scenario_ctx(scenario: tuple[Path, list[str]], make_ctx: Callable[..., Context]) -> Context:
    """A Context on the scenario's host (built once per module)."""
    context: Context = make_ctx(scenario[0])
    return context


@pytest.fixture
def report(scenario_ctx: Context) -> Report:
    return report_service.build_report(scenario_ctx, now=NOW)


# ---------------------------------------------------------------- what it reports

def test_pool_and_pf_counts(report: Report) -> None:
    assert [(pool.name, pool.state, pool.mode, pool.leases) for pool in report.pools] == [
        ("idle", "inactive", "netdev", 0), ("net", "active", "netdev", 1),
        ("v", "active", "vfio", 3)]
    counts = {(pool.name, pf.pci): (pf.vfs, pf.numa_node, pf.driver, pf.range)
              for pool in report.pools for pf in pool.pfs}
    zero = {"total": 0, "free": 0, "leased": 0, "reserved": 0, "unusable": 0}
    assert counts == {
        ("idle", IXGBE1): (zero, 0, "ixgbe", None),
        ("net", IXGBE0): ({**zero, "total": 2, "free": 1, "leased": 1}, 0, "ixgbe", None),
        ("v", I40E0): ({**zero, "total": 3, "leased": 2, "unusable": 1}, 1, "i40e", "4-7"),
        ("v", I40E1): ({**zero, "total": 3, "free": 2, "reserved": 1}, 1, "i40e", None),
    }


def test_counts_agree_with_pool_info(scenario_ctx: Context, report: Report) -> None:
    for pool in report.pools:
        assert pool.vfs == pools.info(scenario_ctx, pool.name).vfs.as_dict()


def test_vf_rows_carry_their_live_lease(report: Report) -> None:
    rows = {(vf.pool, vf.pf, vf.index): vf for vf in report.vfs}
    assert list(rows) == [("net", IXGBE0, 0), ("net", IXGBE0, 1), ("v", I40E0, 4),
                          ("v", I40E0, 5), ("v", I40E0, 6), ("v", I40E1, 0), ("v", I40E1, 1),
                          ("v", I40E1, 2)]
    vm1 = rows[("net", IXGBE0, 0)]
    assert (vm1.pci, vm1.netdev, vm1.state, vm1.owner, vm1.lease_id, vm1.mac, vm1.vlan) == (
        "0000:05:10.0", "enp5s0f0v0", "leased", "vm1", 1, "52:54:00:00:00:01", 10)
    # Lease 1 was made at BASE + 10 min; NOW is BASE + 1 d 2 h 3 min 7 s.
    assert vm1.lease_created_at == BASE + timedelta(minutes=10)
    assert vm1.lease_age == 93_187
    # The released lease of vm3 is history: its VF is free and shows no owner.
    free = rows[("net", IXGBE0, 1)]
    assert (free.state, free.owner, free.lease_id, free.mac, free.lease_age) == (
        "free", None, None, None, None)
    assert rows[("v", I40E0, 6)].reason == "restore failed: EIO (Input/output error)"
    stuck = rows[("v", I40E1, 0)]
    assert (stuck.state, stuck.lease_state, stuck.owner) == ("reserved", "reserved", "vm4")


def test_events_are_the_newest_twenty_newest_first(ctx: Context) -> None:
    pools.define(ctx, pools.parse_spec("a", ["enp5s0f0"], 2, "auto", "vfio", VfDefaults()))
    with ctx.store.session() as session:
        for number in range(30):
            events.record(session, "test.event", pool="a", number=number)
    report = report_service.build_report(ctx, now=NOW)
    assert [event.id for event in report.events] == list(range(31, 11, -1))
    assert report.events[0].action == "test.event"
    assert report.events[0].detail == {"number": 29}


def test_empty_store(ctx: Context) -> None:
    report = report_service.build_report(ctx, now=NOW)
    assert (report.pools, report.vfs, report.events) == ([], [], [])
    assert report_render.render_csv(report) == ",".join(report_render.CSV_COLUMNS) + "\n"
    assert "vfpool_vfs{" not in report_metrics.render_prometheus(report)


def test_a_constant_number_of_queries(scenario_ctx: Context) -> None:
    """Set-based: the query count does not grow with the VFs (never one query per VF)."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = scenario_ctx.store.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        report = report_service.build_report(scenario_ctx, now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    selects = [text for text in statements if text.lstrip().upper().startswith("SELECT")]
    assert len(report.vfs) == 8
    assert len(selects) == 5, selects
    # The summary (the metrics') reads the counts only: no VF rows, no events.
    statements.clear()
    event.listen(engine, "before_cursor_execute", count)
    try:
        summary = report_service.build_summary(scenario_ctx, now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert summary == report_service.Summary(NOW, report.pools)
    selects = [text for text in statements if text.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, selects


def test_now_must_be_aware(scenario_ctx: Context) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        report_service.build_report(scenario_ctx, now=datetime(2025, 1, 1))


def test_default_now_is_the_current_time(scenario_ctx: Context) -> None:
    before = datetime.now(UTC)
    report = report_service.build_report(scenario_ctx)
    assert before <= report.generated_at <= datetime.now(UTC)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (60, "1m00s"), (307, "5m07s"), (3600, "1h00m"), (11_040, "3h04m"),
    (86_400, "1d00h"), (93_187, "1d01h"), (None, None)])
def test_format_age(seconds: int | None, text: str | None) -> None:
    assert report_render.format_age(seconds) == text


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize(("output_format", "golden_name"), [
    ("table", "report-table.txt"), ("json", "report-full.json"), ("csv", "report-vfs.csv"),
    ("prometheus", "report-metrics.prom")])
def test_golden(report: Report, scenario: tuple[Path, list[str]],
                golden: Callable[[str, str], None], output_format: str,
                golden_name: str) -> None:
    text = report_render.render(report, output_format)
    golden(golden_name, text)
    tokens = scenario[1]
    assert len(tokens) == 5
    for token in tokens:
        assert token not in text
        assert leases.hash_token(token) not in text
    assert "token" not in text


def test_json_document(report: Report) -> None:
    document = report_render.report_document(report)
    assert set(document) == {"generated_at", "pools", "vfs", "events"}
    assert document["generated_at"] == "2025-01-02T14:03:07+00:00"
    net = document["pools"][1]
    assert net["vfs"] == {"total": 2, "free": 1, "leased": 1, "reserved": 0, "unusable": 0}
    assert set(net["pfs"][0]) == {"pci", "netdev", "driver", "numa_node", "range", "vfs"}
    assert document["vfs"][0]["lease_created_at"] == "2025-01-01T12:10:00+00:00"
    assert all(event["at"].endswith("+00:00") for event in document["events"])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_prometheus_parses_to_the_exact_samples(report: Report) -> None:
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    counts = {("idle", IXGBE1): {}, ("net", IXGBE0): {"free": 1, "leased": 1},
              ("v", I40E0): {"leased": 2, "unusable": 1}, ("v", I40E1): {"free": 2,
                                                                           "reserved": 1}}
    for (pool, pf), by_state in counts.items():
        for state in ("free", "leased", "reserved", "unusable"):
            labels = (("pf", pf), ("pool", pool), ("state", state))
            expected[("vfpool_vfs", labels)] = by_state.get(state, 0)
    for pool, live, active in (("idle", 0, 0), ("net", 1, 1), ("v", 3, 1)):
        expected[("vfpool_leases", (("pool", pool),))] = live
        expected[("vfpool_pool_active", (("pool", pool),))] = active
    assert _samples(report_metrics.render_prometheus(report)) == expected


def test_prometheus_escapes_label_values() -> None:
    name = 'odd"pool\\with\nnewline'
    report = Report(NOW, [PoolSummary(name, "active", False, "vfio", 2,
                                      [PfSummary(IXGBE0, None, None, None, None)])], [], [])
    text = report_metrics.render_prometheus(report)
    assert 'pool="odd\\"pool\\\\with\\nnewline"' in text
    samples = _samples(text)
    assert samples[("vfpool_leases", (("pool", name),))] == 2
    assert samples[("vfpool_vfs", (("pf", IXGBE0), ("pool", name), ("state", "free")))] == 0


def test_csv_quotes_what_needs_it() -> None:
    row = VfRow("p", IXGBE0, "enp5s0f0", 0, 3, "0000:05:10.6", None,
                               "unusable", 'gone, "really"', None, None, None, None, None,
                               None, None)
    text = report_render.render_csv(Report(NOW, [], [row], []))
    assert text.splitlines()[1] == ('p,0000:05:00.0,enp5s0f0,0,3,0000:05:10.6,,unusable,'
                                    '"gone, ""really""",,,,,,,')
