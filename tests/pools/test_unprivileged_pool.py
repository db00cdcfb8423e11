"""Changing a real host's pools needs root: as user nobody, without --sim, `pool start`,
`pool destroy` and `pool resize` exit 6 with one clear line and no traceback.

These run the installed `vfpool` script as user nobody (65534) through setpriv, since the suite
itself runs as root in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_as_nobody


@pytest.mark.parametrize(("args", "action"), [
    (("pool", "start", "x"), "pool start x"),
    (("pool", "destroy", "x"), "pool destroy x"),
    (("pool", "resize", "x", "--vfs", "2"), "pool resize x"),
    (("pool", "start", "--autostarted"), "pool start --autostarted"),
])
def test_changing_a_real_host_needs_root(tmp_path: Path, args: tuple[str, ...],
                                         action: str) -> None:
    tmp_path.chmod(0o777)
    result = run_as_nobody("--db", f"sqlite:///{tmp_path}/x.db", *args, cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert result.stderr == (f"error: {action} changes this host's SR-IOV setup and needs "
                             "root; run it as root, or pass --sim DIR to work on a simulated "
                             "host\n")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""

