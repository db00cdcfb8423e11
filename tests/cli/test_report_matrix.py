"""The CLI matrix of `vfpool report` (issue 6).

Each case runs `vfpool --sim {sim} ARGS` on a fresh default simulated host after its setup:

- ``none``: an empty store.
- ``populated``: the scenario of tests/report/test_report.py (pools ``idle``, ``net`` and
  ``v``, with live, reserved and released leases and an unusable VF).

Only the Prometheus format carries no timestamp, so it is the one compared with a golden file
here: the same file that the service-level test pins, which proves the CLI adds nothing. The
other formats are pinned at service level with a fixed ``now``. ``{sim}`` and ``{tmp}`` in
arguments, expected texts and file names are filled in.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.test_matrix import check_result
from tests.conftest import GOLDEN, CliResult
from tests.report.test_report import populate
from vfpool.service import report as report_service

SETUPS = ("none", "populated")
REPORT = ("report",)


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    setup: str = "populated"
    exit_code: int = 0
    stderr: str = ""  # exact stderr without its trailing newline
    golden: str | None = None  # tests/data/golden/<golden> holds the exact stdout
    stdout_has: tuple[str, ...] = field(default=())
    writes: tuple[str, str] | None = None  # (FILE, golden): --output wrote exactly that
    stale: bool = False  # FILE exists before the run, with other (longer) content


def valid(name: str, setup: str, *args: str, stdout_has: tuple[str, ...] = ()) -> Case:
    return Case(name, args, setup, stdout_has=stdout_has)


def invalid(name: str, setup: str, exit_code: int, stderr: str, *args: str) -> Case:
    return Case(name, args, setup, exit_code=exit_code, stderr=stderr)


def compare(name: str, setup: str, golden: str, *args: str) -> Case:
    return Case(name, args, setup, golden=golden)


def writes(name: str, setup: str, file: str, golden: str, *args: str,
           stale: bool = False) -> Case:
    return Case(name, args, setup, writes=(file, golden), stale=stale)


CASES = [
    valid("table", "populated", *REPORT,
          stdout_has=("\nPools\nPOOL  STATE     AUTOSTART  MODE    TOTAL  FREE  LEASED  "
                      "RESERVED  UNUSABLE  LEASES\n",
                      "net   active    no         netdev  2      1     1       0         0"
                      "         1\n",
                      "\nEvents (newest 20)\n", "  vm1    1      52:54:00:00:00:01  10    ")),
    valid("table-explicit", "populated", *REPORT, "--format", "table", stdout_has=("\nVFs\n",)),
    valid("table-empty", "none", *REPORT,
          stdout_has=("\nPools\nPOOL  STATE  AUTOSTART  MODE  TOTAL  FREE  LEASED  RESERVED  "
                      "UNUSABLE  LEASES\n\nPFs\n",)),
    valid("json", "populated", *REPORT, "--format", "json",
          stdout_has=('"owner": "vm1"', '"lease_age": ', '"leases": 3')),
    valid("json-flag", "populated", *REPORT, "--json", stdout_has=('"generated_at": "',)),
    valid("json-flag-and-format", "populated", *REPORT, "--json", "--format", "json",
          stdout_has=('"generated_at": "',)),
    valid("csv", "populated", *REPORT, "--format", "csv",
          stdout_has=(",".join(report_service.CSV_COLUMNS) + "\n",
                      "v,0000:85:00.1,enp133s0f1,1,0,0000:85:0a.0,,reserved,,4,reserved,vm4,")),
    compare("prometheus", "populated", "report-metrics.prom", *REPORT, "--format", "prometheus"),
    compare("prometheus-empty", "none", "report-empty.prom", *REPORT, "--format",
            "prometheus"),
    writes("output-prometheus", "populated", "{tmp}/vfpool.prom", "report-metrics.prom",
           *REPORT, "--format", "prometheus", "--output", "{tmp}/vfpool.prom"),
    writes("output-replaces", "populated", "{tmp}/old.prom", "report-metrics.prom",
           *REPORT, "--format", "prometheus", "--output", "{tmp}/old.prom", stale=True),
    valid("output-table", "populated", *REPORT, "--output", "{tmp}/report.txt"),
    invalid("format-unknown", "none", 2,
            "error: invalid --format 'x': use table, json, csv or prometheus",
            *REPORT, "--format", "x"),
    invalid("format-case", "none", 2,
            "error: invalid --format 'JSON': use table, json, csv or prometheus",
            *REPORT, "--format", "JSON"),
    invalid("json-and-csv", "none", 2, "error: give --json or --format csv, not both",
            *REPORT, "--json", "--format", "csv"),
    invalid("output-missing-directory", "populated", 1,
            "error: cannot write {tmp}/nope/vfpool.prom: directory {tmp}/nope does not exist",
            *REPORT, "--format", "prometheus", "--output", "{tmp}/nope/vfpool.prom"),
    invalid("output-is-a-directory", "none", 1, "error: cannot write {tmp}: it is a directory",
            *REPORT, "--output", "{tmp}"),
    invalid("output-missing-value", "none", 2, "error: Option '--output' requires an argument.",
            *REPORT, "--output"),
    invalid("unknown-option", "none", 2, "error: No such option: --bogus", *REPORT, "--bogus"),
]


def _fill(text: str, sim: Path, tmp: Path) -> str:
    return text.replace("{sim}", str(sim)).replace("{tmp}", str(tmp))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli(case: Case, cli: Callable[..., CliResult], sim_root: Path, tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    if case.setup == "populated":
        populate(sim_root)
    if case.stale:
        assert case.writes is not None
        Path(_fill(case.writes[0], sim_root, tmp_path)).write_text("stale\n" * 1000)
    result = cli("--sim", str(sim_root), *(_fill(arg, sim_root, tmp_path) for arg in case.args))
    check_result(result, case, lambda text: _fill(text, sim_root, tmp_path), golden)
    if case.exit_code != 0 or "--output" in case.args:
        assert result.stdout == ""
    if case.writes is not None:
        written = Path(_fill(case.writes[0], sim_root, tmp_path))
        assert written.read_text() == (GOLDEN / case.writes[1]).read_text()
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
        assert not [name for name in os.listdir(written.parent) if name.endswith(".tmp")]
    if case.exit_code == 0 and ("--json" in case.args or "json" in case.args):
        document = json.loads(result.stdout)
        assert set(document) == {"generated_at", "pools", "vfs", "events"}
    if case.exit_code == 0 and "csv" in case.args:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert len(rows) == 8 and rows[0]["owner"] == "vm1"


def test_output_table_matches_stdout(cli: Callable[..., CliResult], sim_root: Path,
                                     tmp_path: Path) -> None:
    """--output writes what stdout would show (the table ends in one newline either way)."""
    target = tmp_path / "report.txt"
    assert cli("--sim", str(sim_root), "report", "--output", str(target)).exit_code == 0
    shown = cli("--sim", str(sim_root), "report")
    assert shown.exit_code == 0
    # Only the first line (the time of the report) may differ between the two runs.
    assert target.read_text().splitlines()[1:] == shown.stdout.splitlines()[1:]
    assert target.read_text().endswith("\n") and not target.read_text().endswith("\n\n")


def test_output_permission_denied(cli: Callable[..., CliResult], sim_root: Path,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EACCES is exit 6 with one line; tests run as root, so the error is injected."""
    def denied(**kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    target = tmp_path / "vfpool.prom"
    result = cli("--sim", str(sim_root), "report", "--format", "prometheus", "--output",
                 str(target))
    assert (result.exit_code, result.stdout) == (6, "")
    assert result.stderr == f"error: cannot write {target}: permission denied\n"
    assert not target.exists()


def test_every_case_names_a_known_setup() -> None:
    assert {case.setup for case in CASES} <= set(SETUPS)
    assert len({case.name for case in CASES}) == len(CASES)
