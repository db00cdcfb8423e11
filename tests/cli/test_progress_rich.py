"""Progress through rich on a terminal (a pty here): each step, with its time, and the whole
command's time; colours unless NO_COLOR is set; nothing extra when stderr is a pipe."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vfpool.service import leases, pools
from vfpool.service.context import open_context

VFPOOL = Path(sys.executable).parent / "vfpool"
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;[0-9;]+)m")  # an SGR foreground colour


def _define(sim_root: Path) -> None:
    with open_context(sim=sim_root) as ctx:
        pools.define(ctx, pools.parse_spec("a", ["enp133s0f0"], 3, "auto", "vfio",
                                           pools.VfDefaults()))


def _on_a_pty(args: tuple[str, ...], env: dict[str, str], *,
              stream: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run vfpool with ``stream`` (stdout or stderr) on a pty and the other on a pipe; returns
    the result and what the terminal received."""
    controller, terminal = pty.openpty()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: terminal}
    try:
        result = subprocess.run([str(VFPOOL), *args], text=True, timeout=120, check=False,
                                env=env, **streams)
        os.close(terminal)
        terminal = -1
        written = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the other end is closed and drained
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return result, written.decode(errors="replace")


def on_a_terminal(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run vfpool with stderr on a pty; returns the result (stdout on a pipe) and what the
    terminal received."""
    return _on_a_pty(args, env, stream="stderr")


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("VFPOOL_") and key not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="120", **extra)
    return env


@pytest.mark.parametrize(("args", "title", "step", "stdout"), [
    (("pool", "start", "a"), "start pool a", "PF 0000:85:00.0 (enp133s0f0): 0 -> 3 VFs",
     "started pool a: 3 VFs, 3 free\n"),
    (("pool", "resize", "a", "--vfs", "2"), "resize pool a",
     "PF 0000:85:00.0 (enp133s0f0): 0 -> 2 VFs", "pool a now has 2 VFs per PF\n"),
    (("pool", "destroy", "a"), "destroy pool a", "PF 0000:85:00.0 (enp133s0f0): 3 -> 0 VFs",
     "destroyed pool a\n"),
])
def test_steps_and_times_on_a_terminal(args: tuple[str, ...], title: str, step: str,
                                       stdout: str, sim_root: Path) -> None:
    _define(sim_root)
    if args[1] in ("destroy", "resize"):  # both change the host of an active pool
        subprocess.run([str(VFPOOL), "--sim", str(sim_root), "pool", "start", "a"],
                       capture_output=True, timeout=120, check=True, env=environment())
    result, shown = on_a_terminal("--sim", str(sim_root), *args, env=environment())
    assert (result.returncode, result.stdout) == (0, stdout)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert step in plain
    assert title in plain
    assert re.search(r"\d+:\d\d:\d\d", plain)  # each step's elapsed time
    assert re.search(rf"{re.escape(title)}: \d+\.\d s in all", plain)
    assert COLOUR.search(shown)


def test_no_color_is_honoured(sim_root: Path) -> None:
    _define(sim_root)
    result, shown = on_a_terminal("--sim", str(sim_root), "pool", "start", "a",
                                  env=environment(NO_COLOR="1"))
    assert result.returncode == 0
    assert "PF 0000:85:00.0 (enp133s0f0): 0 -> 3 VFs" in shown
    assert not COLOUR.search(shown)


@pytest.mark.parametrize("args", [("pool", "start", "a"), ("pool", "resize", "a", "--vfs", "2"),
                                  ("pool", "destroy", "a")])
def test_nothing_extra_on_a_pipe(args: tuple[str, ...], sim_root: Path) -> None:
    _define(sim_root)
    if args[1] != "start":
        subprocess.run([str(VFPOOL), "--sim", str(sim_root), "pool", "start", "a"],
                       capture_output=True, timeout=120, check=True, env=environment())
    result = subprocess.run([str(VFPOOL), "--sim", str(sim_root), *args], capture_output=True,
                            text=True, timeout=120, check=False, env=environment())
    assert (result.returncode, result.stderr) == (0, "")


def test_reconcile_shows_its_steps_on_a_terminal(sim_root: Path) -> None:
    """A lease whose owner process is gone: reconcile reads the PF, checks the lease and
    restores its VF, each a step on the terminal; on a pipe, only the findings."""
    _define(sim_root)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open_context(sim=sim_root) as ctx:
        pools.start(ctx, "a")
        lease = leases.acquire(ctx, "a", "vm1", owner_pid=int(gone))[0]
    result, shown = on_a_terminal("--sim", str(sim_root), "reconcile", env=environment())
    assert result.returncode == 0, shown
    assert result.stdout.startswith(f"lease {lease.id} ")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "PF 0000:85:00.0: reading its VFs" in plain
    assert "checking 1 live lease(s)" in plain
    assert f"lease {lease.id} ({lease.vf.pci}): " in plain
    assert "restoring its VF" in plain
    assert re.search(r"reconcile: \d+\.\d s in all", plain)
    again = subprocess.run([str(VFPOOL), "--sim", str(sim_root), "reconcile"],
                           capture_output=True, text=True, timeout=120, check=False,
                           env=environment())
    assert (again.returncode, again.stdout, again.stderr) == (0, "nothing to repair\n", "")


def on_a_terminal_stdout(*args: str, env: dict[str, str]) -> str:
    """What vfpool writes to stdout when stdout is a pty."""
    result, written = _on_a_pty(args, env, stream="stdout")
    assert result.returncode == 0, result.stderr
    return written


@pytest.mark.parametrize("args", [("pool", "list", "--all"), ("pool", "show", "a"),
                                  ("lease", "list"), ("lease", "show", "1")], ids=" ".join)
def test_state_words_are_coloured_on_a_terminal_only(args: tuple[str, ...],
                                                     sim_root: Path) -> None:
    _define(sim_root)
    with open_context(sim=sim_root) as ctx:
        pools.start(ctx, "a")
        leases.acquire(ctx, "a", "vm1")
    sim = ("--sim", str(sim_root))
    shown = on_a_terminal_stdout(*sim, *args, env=environment())
    assert "\x1b[32mactive\x1b[0m" in shown  # the pool's or the lease's state, green
    plain = on_a_terminal_stdout(*sim, *args, env=environment(NO_COLOR="1"))
    assert "\x1b[" not in plain
    assert plain == re.sub(r"\x1b\[[0-9;]*m", "", shown)  # the same text, columns aligned
    piped = subprocess.run([str(VFPOOL), *sim, *args], capture_output=True, text=True,
                           timeout=120, check=True, env=environment())
    assert piped.stdout.replace("\n", "\r\n") == plain
