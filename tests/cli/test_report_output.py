"""`vfpool report --output FILE` beyond the matrix's cases (tests/cli/matrix/report.py): what it
writes is what stdout shows, and a directory the user may not write to is exit 6 with one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult, give_to_nobody, run_as_nobody
from vfpool.sim.host import SimHost


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


def test_output_permission_denied(nobody_dir: Path) -> None:
    """EACCES is exit 6 with one line: user nobody, on a simulated host of its own, writes the
    report into root's directory (0755), and nothing is left there."""
    root = nobody_dir / "host"
    SimHost.create(root)
    give_to_nobody(root)
    out = nobody_dir / "out"
    out.mkdir(mode=0o755)
    target = out / "vfpool.prom"
    result = run_as_nobody("--sim", str(root), "report", "--format", "prometheus", "--output",
                           str(target), cwd=nobody_dir)
    assert (result.returncode, result.stdout) == (6, "")
    assert result.stderr == f"error: cannot write {target}: permission denied\n"
    assert os.listdir(out) == []
    # The same command writes where nobody may: the failure was the directory, nothing else.
    give_to_nobody(out)
    result = run_as_nobody("--sim", str(root), "report", "--format", "prometheus", "--output",
                           str(target), cwd=nobody_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert target.read_text().startswith("# HELP ")
