"""`pool start` shows progress on stderr when it is a terminal, and nothing when it is not."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from vfpool.service import pools
from vfpool.service.context import Context

VFPOOL = Path(sys.executable).parent / "vfpool"


def _define(ctx: Context) -> None:
    pools.define(ctx, pools.parse_spec(
        "a", ["enp133s0f0"], 3, "auto", "vfio", pools.VfDefaults()))


def test_progress_goes_to_a_terminal(sim_root: Path, ctx: Context) -> None:
    _define(ctx)
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run([str(VFPOOL), "--sim", str(sim_root), "pool", "start", "a"],
                                stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=60,
                                check=False)
        os.close(terminal)
        terminal = -1
        written = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert result.returncode == 0
    assert "PF 0000:85:00.0 (enp133s0f0): 0 -> 3 VFs" in written.decode()
    assert result.stdout == "started pool a: 3 VFs, 3 free\n"


def test_no_progress_when_stderr_is_not_a_terminal(sim_root: Path, ctx: Context) -> None:
    _define(ctx)
    result = subprocess.run([str(VFPOOL), "--sim", str(sim_root), "pool", "start", "a"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stderr) == (0, "")
