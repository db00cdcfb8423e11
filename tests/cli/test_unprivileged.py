"""Running without root: a clear one-line error and exit 6, never a traceback.

These run the installed `vfpool` script as user nobody (65534) through setpriv, since the suite
itself runs as root in CI.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_as_nobody


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
