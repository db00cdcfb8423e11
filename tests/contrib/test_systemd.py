"""contrib/systemd units: their commands exist and do what the unit says, on a simulated host."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
from pathlib import Path

from vfpool.service import pools
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
VFPOOL = Path(sys.executable).parent / "vfpool"


def exec_lines(unit: str) -> list[list[str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    # ExecStart= may repeat; configparser keeps the last, so read the lines by hand.
    lines = (UNITS / unit).read_text().splitlines()
    parser.read_string("\n".join(line for line in lines if not line.startswith("ExecStart=")))
    assert parser.get("Service", "Type") == "oneshot"
    return [shlex.split(line.split("=", 1)[1]) for line in lines if line.startswith("ExecStart=")]


def test_autostart_unit_starts_autostart_pools_then_reconciles(sim_root: Path) -> None:
    commands = exec_lines("vfpool-autostart.service")
    assert [argv[1:] for argv in commands] == [["pool", "start", "--autostarted"],
                                               ["reconcile"]]
    text = (UNITS / "vfpool-autostart.service").read_text()
    assert "After=systemd-udev-settle.service" in text
    ctx = open_context(sim=sim_root)
    pools.define(ctx, pools.parse_spec("a", ["enp133s0f0"], 4, "auto", "vfio",
                                       pools.VfDefaults()))
    pools.set_autostart(ctx, "a", True)
    pools.start(ctx, "a")
    SimHost(sim_root).reboot()
    assert pools.info(ctx, "a")["needs_start"] is True
    for argv in commands:
        result = subprocess.run([str(VFPOOL), "--sim", str(sim_root), *argv[1:]],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
    record = pools.info(ctx, "a")
    assert (record["needs_start"], record["vfs"]["free"]) == (False, 4)
