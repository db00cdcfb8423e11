"""`vfpool events` (issue 13): the audit log with every filter, both orders, JSON with the
report's event keys, --follow against a live writer, and only this host's rows."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from vfpool.service import leases, pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

Cli = Callable[..., CliResult]


def _history(ctx: Context) -> None:
    """Two pools on two PFs, leases of two owners, one released."""
    for name, pf in (("a", "enp5s0f0"), ("b", "enp133s0f0")):
        pools.define(ctx, pools.parse_spec(name, [pf], 2, "auto", "vfio", pools.VfDefaults()))
        pools.start(ctx, name)
    first = leases.acquire(ctx, "a", "vm1")[0]
    leases.acquire(ctx, "b", "vm2")
    leases.release(ctx, first.id, token=first.token)


@pytest.fixture
def logged(ctx: Context, sim_root: Path) -> Path:
    _history(ctx)
    return sim_root


def events(cli: Cli, root: Path, *args: str) -> list[dict[str, Any]]:
    result = cli("--sim", str(root), "events", "--limit", "0", *args, "--json")
    assert result.exit_code == 0, result.stderr
    document: list[dict[str, Any]] = json.loads(result.stdout)
    return document


def test_the_log_is_newest_first_with_the_report_keys(cli: Cli, logged: Path) -> None:
    everything = events(cli, logged)
    ids = [event["id"] for event in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 9
    report = json.loads(cli("--sim", str(logged), "report", "--json").stdout)
    assert report["events"] == everything[:len(report["events"])]
    assert [event["id"] for event in events(cli, logged, "--reverse")] == ids[::-1]
    assert events(cli, logged, "--limit", "3") == everything[:3]
    assert [e["id"] for e in events(cli, logged, "--limit", "3", "--reverse")] == ids[:3][::-1]


@pytest.mark.parametrize(("option", "value", "keep"), [
    ("--pool", "a", lambda e, leases_of: e["pool"] == "a"),
    ("--pf", "0000:85:00.0", lambda e, leases_of: e["pf"] == "0000:85:00.0"),
    ("--pf", "enp5s0f0", lambda e, leases_of: e["pf"] == "0000:05:00.0"),
    ("--lease", "1", lambda e, leases_of: e["lease_id"] == 1),
    ("--owner", "vm2", lambda e, leases_of: e["lease_id"] in leases_of["vm2"]),
    ("--action", "lease.release", lambda e, leases_of: e["action"] == "lease.release"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_each_filter_keeps_exactly_the_matching_events(
        option: str, value: str, keep: Callable[[dict[str, Any], dict[str, set[int]]], bool],
        cli: Cli, logged: Path) -> None:
    everything = events(cli, logged)
    leases_of: dict[str, set[int]] = {}
    for lease in json.loads(cli("--sim", str(logged), "lease", "list", "--all",
                                "--json").stdout):
        leases_of.setdefault(lease["owner"], set()).add(lease["id"])
    wanted = [event for event in everything if keep(event, leases_of)]
    assert wanted and len(wanted) < len(everything)
    assert events(cli, logged, option, value) == wanted


def test_since_takes_an_age_or_a_time(cli: Cli, logged: Path) -> None:
    everything = events(cli, logged)
    assert events(cli, logged, "--since", "1h") == everything
    newest = datetime.fromisoformat(everything[0]["at"])
    later = (newest + timedelta(seconds=1)).astimezone(UTC).replace(tzinfo=None)
    assert events(cli, logged, "--since", later.isoformat()) == []  # naive means UTC
    at = everything[1]["at"]
    assert events(cli, logged, "--since", at) == [
        event for event in everything if event["at"] >= at]
    bad = cli("--sim", str(logged), "events", "--since", "yesterday")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: invalid --since 'yesterday'")
    assert len(bad.stderr.splitlines()) == 1


def test_the_table_and_its_empty_hints(cli: Cli, logged: Path, tmp_path: Path) -> None:
    table = cli("--sim", str(logged), "events", "--action", "pool.define")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "AT", "ACTOR", "ACTION", "POOL", "PF", "VF", "LEASE",
                                "DETAIL"]
    assert len(lines) == 3 and all("pool.define" in line for line in lines[1:])
    assert "definition=(" in lines[1]  # a TOML text is counted, not spilled over lines
    nothing = cli("--sim", str(logged), "events", "--owner", "nobody")
    assert nothing.exit_code == 0 and "no events match" in nothing.stderr
    fresh = tmp_path / "fresh"
    SimHost.create(fresh)
    empty = cli("--sim", str(fresh), "events")
    assert "no events yet" in empty.stderr
    assert not (fresh / "vfpool.db").exists()  # a read creates nothing


def test_only_this_hosts_events(cli: Cli, logged: Path, tmp_path: Path) -> None:
    """Two sims on one store: each sees its own log only."""
    url = f"sqlite:///{tmp_path}/shared.db"
    other = tmp_path / "other"
    SimHost.create(other)
    with open_context(db=url, sim=logged) as ctx:
        _history(ctx)
    with open_context(db=url, sim=other) as ctx:
        pools.define(ctx, pools.parse_spec("mine", ["enp5s0f1"], 2, "auto", "vfio",
                                           pools.VfDefaults()))
    seen = cli("--db", url, "--sim", str(other), "events", "--limit", "0", "--json")
    assert [event["pool"] for event in json.loads(seen.stdout)] == ["mine"]
    first = json.loads(cli("--db", url, "--sim", str(logged), "events", "--limit", "0",
                           "--json").stdout)
    assert {event["pool"] for event in first} == {"a", "b"}
    assert [event["action"] for event in first].count("lease.acquire") == 2


class Lines:
    """The lines of a pipe, read by a thread, each waited for with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.queue.put(line)

    def next(self, deadline: float) -> str:
        try:
            return self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail("vfpool events --follow printed nothing in time")


def test_follow_prints_new_events_as_they_are_written(ctx: Context, logged: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VFPOOL_")}
    follower = subprocess.Popen(
        [sys.executable, "-m", "vfpool", "--sim", str(logged), "events", "--follow", "--json",
         "--pool", "a", "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = Lines(follower.stdout)
        deadline = time.monotonic() + 60
        first = json.loads(lines.next(deadline))
        assert first["action"] == "pool.define" and first["pool"] == "a"  # oldest first
        history = [first]
        while history[-1]["action"] != "lease.release":
            history.append(json.loads(lines.next(deadline)))
        lease = leases.acquire(ctx, "a", "vm3")[0]
        leases.acquire(ctx, "b", "vm3")  # another pool: filtered out
        fresh = [json.loads(lines.next(deadline)) for _ in range(2)]
        assert [(e["action"], e["lease_id"]) for e in fresh] == [
            ("lease.reserve", lease.id), ("lease.acquire", lease.id)]
        assert fresh[0]["id"] > history[-1]["id"]
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=30) == 0
        lines.thread.join(timeout=10)
        assert lines.queue.empty()  # nothing more was printed
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()


def test_follow_stops_at_its_timeout(cli: Cli, logged: Path) -> None:
    started = time.monotonic()
    result = cli("--sim", str(logged), "events", "--follow", "--timeout", "1", "--action",
                 "pool.start")
    assert result.exit_code == 0
    assert [line.split()[3] for line in result.stdout.splitlines()] == ["pool.start"] * 2
    assert time.monotonic() - started >= 1
