"""In-guest side of the real-kernel tier: phase selection, outcome records, fixtures.

These tests run only inside the guest that ``tests/realkernel/harness.py`` boots (the
environment variable VFPOOL_REALKERNEL_GUEST=1 says so). On the host the same files are
collected only to learn the test ids; ``tests/realkernel/conftest.py`` replaces each test with a
proxy that reports the guest's result.

Every test starts from the same host state (``baseline``): igb and igbvf loaded without module
options, both PFs at 0 VFs with autoprobe on, vfpool's modprobe.d file absent, vfio-pci
unloaded, no macvtap, and its own empty store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_GUEST = os.environ.get("VFPOOL_REALKERNEL_GUEST") == "1"
PHASE = int(os.environ.get("VFPOOL_REALKERNEL_PHASE", "0") or 0)
RESULTS = Path(os.environ.get("VFPOOL_REALKERNEL_RESULTS", "/nonexistent"))


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _process_started() -> float:
    """When this Python process started, in seconds of uptime (/proc/self/stat field 22)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


# Where the in-guest session's time goes: Python's start, pytest's imports and collection,
# each test (setup, call, teardown), and the kinds of work realhost times; written to
# records/timing-N.json at session end (see the README's "Time" section).
_TIMING: dict[str, Any] = {}
if IN_GUEST:
    _TIMING["python started"] = _process_started()
    _TIMING["conftest imported"] = _uptime()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "boot2: runs in the second boot of the guest (reboot)")
    config.addinivalue_line("markers", "reboot_prep: leaves the store ready for boot 2; runs "
                                       "whenever a boot2 test is selected")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not IN_GUEST:
        return
    _TIMING["collected"] = _uptime()
    selection_file = RESULTS / "selection.txt"
    selected = set(selection_file.read_text().split()) if selection_file.exists() else None
    if selected is not None and any(item.get_closest_marker("boot2") and item.nodeid in selected
                                    for item in items):
        selected |= {item.nodeid for item in items if item.get_closest_marker("reboot_prep")}
    keep, drop = [], []
    for item in items:
        in_phase = (item.get_closest_marker("boot2") is not None) == (PHASE == 2)
        wanted = selected is None or item.nodeid in selected
        (keep if in_phase and wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # The reboot preparation runs last: every other test's baseline resets the host.
    keep.sort(key=lambda item: item.get_closest_marker("reboot_prep") is not None)
    items[:] = keep


_reports: dict[str, list[pytest.TestReport]] = {}


def _final(reports: list[pytest.TestReport]) -> tuple[str, str]:
    """(outcome, text) of one test from its setup, call and teardown reports."""
    for report in reports:
        if report.failed:
            when = "" if report.when == "call" else f"[{report.when}] "
            return "failed", when + report.longreprtext
    for report in reports:
        if report.skipped:
            if hasattr(report, "wasxfail"):
                return "xfailed", str(report.wasxfail)
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            return "skipped", reason.removeprefix("Skipped: ")
    for report in reports:
        if report.when == "call" and hasattr(report, "wasxfail"):
            return "xpassed", str(report.wasxfail)
    return "passed", ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append each finished test's outcome to outcomes-N.jsonl in the results share at once,
    so a guest that dies half-way still reports what it ran."""
    if not IN_GUEST:
        return
    _reports.setdefault(report.nodeid, []).append(report)
    if report.when != "teardown":
        return
    reports = _reports.pop(report.nodeid)
    outcome, text = _final(reports)
    line = json.dumps({"nodeid": report.nodeid, "outcome": outcome, "text": text,
                       "duration": sum(r.duration for r in reports),
                       "phases": {r.when: round(r.duration, 2) for r in reports}})
    with open(RESULTS / f"outcomes-{PHASE}.jsonl", "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not IN_GUEST:
        return
    from tests.realkernel.guest import realhost

    _TIMING["finished"] = _uptime()
    _TIMING["kinds"] = {kind: {"count": int(count), "seconds": round(seconds, 2)}
                        for kind, (count, seconds) in sorted(
                            realhost.TIMES.items(), key=lambda item: -item[1][1])}
    realhost.record(f"timing-{PHASE}", _TIMING)


@pytest.fixture(autouse=True)
def _only_in_guest() -> Iterator[None]:
    if not IN_GUEST:
        pytest.skip("runs only inside the real-kernel guest (tests/realkernel/harness.py)")
    yield


@pytest.fixture
def baseline() -> None:
    """Reset the guest's host to the state every test starts from (see realhost.baseline)."""
    from tests.realkernel.guest import realhost

    realhost.baseline()


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh store of this test's own."""
    return f"sqlite:///{tmp_path / 'vfpool.db'}"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def vfpool_cli(db: str) -> Callable[..., CliResult]:
    """``vfpool --db DB ARGS`` through the CLI's own entry point, in this process: a fresh
    Python process costs tens of seconds under TCG, the code path is the same."""
    from typer.testing import CliRunner

    from vfpool.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, store: str | None = None) -> CliResult:
        result = runner.invoke(app, ["--db", store or db, *args])
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke
