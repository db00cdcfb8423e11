"""Running without root: a clear one-line error and exit 6, never a traceback.

These run the installed `vfpool` script as user nobody (65534) through setpriv, since the suite
itself runs as root in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VFPOOL = Path(sys.executable).parent / "vfpool"


def run_as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed, so no process can drop root here")
    if os.geteuid() != 0:
        pytest.skip("the suite is not running as root, so it cannot switch to another user")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           str(VFPOOL), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60, check=False)


def test_unwritable_database_gives_exit_6(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    tmp_path.chmod(0o755)
    result = run_as_nobody("--db", f"sqlite:///{locked}/sub/v.db", "db", "upgrade",
                           cwd=tmp_path)
    assert result.returncode == 6
    assert result.stderr == (f"error: cannot open database {locked}/sub/v.db: permission "
                             "denied (run as root, or pass --db)\n")
    assert not (locked / "sub").exists()
