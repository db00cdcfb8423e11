"""The CLI matrix of `vfpool contrib` (issue 13): the systemd units it writes.

The units' content is tested in tests/contrib/test_systemd.py (systemd-analyze verify and
security); these cases pin the command's interface. ``{tmp}`` is the test's tmp_path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_matrix import Case, check_result, invalid, valid
from tests.conftest import CliResult

CASES = [
    valid("systemd-print", "contrib", "systemd", "--prefix", "/opt/vfpool", use_sim=False,
          stdout_has=("# vfpool-autostart.service\n", "# vfpool-watch.service\n",
                      "ExecStart=/opt/vfpool/bin/vfpool pool start --autostarted\n",
                      "ExecStart=/opt/vfpool/bin/vfpool reconcile\n",
                      "ExecStart=/opt/vfpool/bin/vfpool watch\n")),
    valid("systemd-output-dir", "contrib", "systemd", "--prefix", "/usr", "--output-dir",
          "{tmp}/units", use_sim=False),
    invalid("systemd-output-dir-unwritable", 1,
            "error: cannot write /proc/vfpool-units/vfpool-autostart.service: ENOENT (No such "
            "file or directory)", "contrib", "systemd", "--output-dir",
            "/proc/vfpool-units", use_sim=False),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli(case: Case, cli: Callable[..., CliResult], tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path))

    result = cli(*[fill(arg) for arg in case.args])
    check_result(result, case, fill, golden)
    if case.name == "systemd-output-dir":
        written = sorted(path.name for path in (tmp_path / "units").iterdir())
        assert written == ["vfpool-autostart.service", "vfpool-watch.service"]
        assert "ExecStart=/usr/bin/vfpool watch" in (tmp_path / "units" /
                                                      "vfpool-watch.service").read_text()
        assert f"wrote {tmp_path}/units/vfpool-watch.service" in result.stderr
