"""`report --output FILE`: the two atomic writers, each held to the same guarantees.

- ``text``: ``report_files.write_atomically`` (table, JSON and CSV): a dot-named temp file,
  fsynced, renamed over the target.
- ``textfile``: ``report_metrics.write_textfile`` (Prometheus): prometheus_client's
  ``write_to_textfile`` (temp file ``NAME.PID.THREAD``, renamed over the target), with vfpool's
  mode, error mapping, clean-up and fsync around it.

Either way: the file is 0644 whatever the umask; it is replaced whole (a reader of the old
file keeps all of it); a failed write leaves the old file and no temp file; a missing
directory or a directory as the target is one error naming it (exit 1); a directory the user
may not write to is PermissionDenied (exit 6).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from tests.cli.test_progress_rich import environment, on_a_terminal_stdout
from tests.conftest import NOBODY, give_to_nobody, python_as_nobody
from tests.races import env
from vfpool.cli import report_files, report_metrics, report_render
from vfpool.errors import HostError
from vfpool.model.pool import VfDefaults
from vfpool.service import leases, pools
from vfpool.service.context import open_context
from vfpool.service.report import PfSummary, PoolSummary, Report

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 1, 2, 14, 3, 7, tzinfo=UTC)
SMALL = Report(NOW, [PoolSummary("p", "active", False, "vfio", 1, [PfSummary(
    "0000:05:00.0", "enp5s0f0", "ixgbe", 0, None,
    {"total": 2, "free": 1, "leased": 1, "reserved": 0, "unusable": 0})])], [], [])


@dataclass(frozen=True)
class Writer:
    name: str
    write: Callable[[Path], None]
    text: str  # what write() puts in the file


def write_with(kind: str, target: Path | str) -> None:
    """Write the small report to ``target`` with the writer named ``kind`` (a child process
    calls this too)."""
    if kind == "textfile":
        report_metrics.write_textfile(target, report_metrics.registry_for(SMALL))
    else:
        report_files.write_atomically(target, report_render.render_csv(SMALL))


WRITERS = {
    "text": Writer("text", lambda target: write_with("text", target),
                   report_render.render_csv(SMALL)),
    "textfile": Writer("textfile", lambda target: write_with("textfile", target),
                       report_metrics.render_prometheus(SMALL)),
}


@pytest.fixture(params=sorted(WRITERS))
def writer(request: pytest.FixtureRequest) -> Writer:
    return WRITERS[request.param]


def _listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_the_textfile_is_what_stdout_shows() -> None:
    """write_to_textfile writes what generate_latest exposes: --output and stdout agree."""
    assert WRITERS["textfile"].text.startswith("# HELP vfpool_vfs ")
    assert 'vfpool_vfs{pf="0000:05:00.0",pool="p",state="leased"} 1.0\n' in \
        WRITERS["textfile"].text


def test_write_creates_the_file_0644_whatever_the_umask(tmp_path: Path, writer: Writer) -> None:
    target = tmp_path / "vfpool.prom"
    old_umask = os.umask(0o077)
    try:
        writer.write(target)
    finally:
        assert os.umask(old_umask) == 0o077  # the writer put the caller's umask back
    assert target.read_text() == writer.text
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _listing(tmp_path) == ["vfpool.prom"]


def test_write_replaces_an_existing_file_whole(tmp_path: Path, writer: Writer) -> None:
    target = tmp_path / "vfpool.prom"
    old = "old line\n" * 10_000
    target.write_text(old)
    old_inode = target.stat().st_ino
    with target.open() as reader:  # a reader that opened the old file keeps all of it
        writer.write(target)
        assert reader.read() == old
    assert target.read_text() == writer.text
    assert target.stat().st_ino != old_inode  # renamed over, never truncated in place
    assert _listing(tmp_path) == ["vfpool.prom"]


# A child that may write files of at most LIMIT bytes (RLIMIT_FSIZE): the kernel fails the
# writer's write(2) with EFBIG (SIGXFSZ ignored), as a full disk would with ENOSPC.
LIMIT = 64
WRITE_LIMITED = f"""
import resource, signal, sys
from vfpool.errors import HostError
from tests.report.test_output import write_with
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
try:
    write_with(sys.argv[1], sys.argv[2])
except HostError as exc:
    print(exc.exit_code, exc, sep="\\n")
else:
    print("written")
"""


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, writer: Writer) -> None:
    """The kernel's own EFBIG mid-write: the error names the file (exit 1), the old file is
    untouched (it is larger than the limit: a write in place would have failed on it too),
    and no temp file is left."""
    assert len(writer.text.encode()) > LIMIT
    target = tmp_path / "vfpool.prom"
    target.write_text("old\n" * 100)
    result = subprocess.run([sys.executable, "-c", WRITE_LIMITED, writer.name, str(target)],
                            capture_output=True, text=True, cwd=REPO, env=env(), timeout=120,
                            check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"1\ncannot write {target}: EFBIG (File too large)\n"
    assert target.read_text() == "old\n" * 100
    assert _listing(tmp_path) == ["vfpool.prom"]


def test_a_failed_fsync_of_the_text_leaves_the_old_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """write_atomically fsyncs the temp file before the rename: EIO there keeps the old file."""
    target = tmp_path / "vfpool.prom"
    target.write_text("old\n")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(HostError) as failure:
        report_files.write_atomically(target, "new\n")
    assert str(failure.value) == f"cannot write {target}: EIO (Input/output error)"
    assert target.read_text() == "old\n"
    assert _listing(tmp_path) == ["vfpool.prom"]


def test_a_failed_fsync_of_the_textfile_is_an_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """write_to_textfile renames first; the fsync after it failing is still exit 1, never a
    success whose file may not survive a crash."""
    target = tmp_path / "vfpool.prom"

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(HostError) as failure:
        write_with("textfile", target)
    assert str(failure.value) == f"cannot write {target}: EIO (Input/output error)"
    assert failure.value.exit_code == 1
    assert _listing(tmp_path) == ["vfpool.prom"]


class Interrupted:
    """A collector interrupted while the temp file is open (write_to_textfile opens it before
    it collects), as Ctrl-C at that moment would."""

    def collect(self) -> Iterator[Metric]:
        raise KeyboardInterrupt
        yield  # a generator, as collectors are


def test_an_interrupted_textfile_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "vfpool.prom"
    target.write_text("old\n")
    registry = CollectorRegistry()
    registry.register(Interrupted())
    with pytest.raises(KeyboardInterrupt):
        report_metrics.write_textfile(target, registry)
    assert target.read_text() == "old\n"
    assert _listing(tmp_path) == ["vfpool.prom"]


def test_write_into_a_missing_directory(tmp_path: Path, writer: Writer) -> None:
    target = tmp_path / "nope" / "vfpool.prom"
    with pytest.raises(HostError) as failure:
        writer.write(target)
    assert str(failure.value) == (f"cannot write {target}: directory {tmp_path / 'nope'} "
                                  "does not exist")
    assert failure.value.exit_code == 1


def test_write_onto_a_directory(tmp_path: Path, writer: Writer) -> None:
    with pytest.raises(HostError) as failure:
        writer.write(tmp_path)
    assert str(failure.value) == f"cannot write {tmp_path}: it is a directory"
    assert _listing(tmp_path) == []


# The child that writes as user nobody: prints the refusal's exit code and text, or "written".
# It builds what it writes itself: nobody cannot import the tests package from here.
WRITE_AS_NOBODY = """
import sys
from datetime import UTC, datetime
from vfpool.cli.report_metrics import registry_for, write_textfile
from vfpool.cli.report_files import write_atomically
from vfpool.errors import PermissionDenied
from vfpool.service.report import Report
try:
    if sys.argv[2] == "textfile":
        write_textfile(sys.argv[1], registry_for(Report(datetime.now(UTC), [], [], [])))
    else:
        write_atomically(sys.argv[1], "x\\n")
except PermissionDenied as exc:
    print(exc.exit_code, exc, sep="\\n")
else:
    print("written")
"""


@pytest.mark.parametrize("directory", ["root's, 0755", "nobody's own, 0555"])
def test_write_without_permission(nobody_dir: Path, directory: str, writer: Writer) -> None:
    """The kernel's own EACCES, as user nobody meets it: in root's directory (0755) or in a
    read-only directory of its own, the temp file cannot be created. PermissionDenied (exit 6)
    names the target, and nothing is left behind; where nobody may write, the same call
    works."""
    target_dir = nobody_dir / "out"
    target_dir.mkdir()
    if directory == "root's, 0755":
        target_dir.chmod(0o755)
    else:
        give_to_nobody(target_dir)
        target_dir.chmod(0o555)
    target = target_dir / "vfpool.prom"
    result = python_as_nobody(WRITE_AS_NOBODY, str(target), writer.name, cwd=nobody_dir)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"6\ncannot write {target}: permission denied\n"
    assert _listing(target_dir) == []
    target_dir.chmod(0o755)
    give_to_nobody(target_dir)
    result = python_as_nobody(WRITE_AS_NOBODY, str(target), writer.name, cwd=nobody_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "written\n", "")
    expected = "x\n" if writer.name == "text" else \
        report_metrics.render_prometheus(Report(NOW, [], [], []))
    assert target.read_text() == expected and target.stat().st_uid == NOBODY
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_the_table_is_coloured_on_a_terminal_and_never_in_a_file(sim_root: Path,
                                                                  tmp_path: Path) -> None:
    """The report's table is cli/render.table's: state words coloured when stdout is a
    terminal (not with NO_COLOR), and --output never gets colour codes, even from a
    terminal."""
    with open_context(sim=sim_root) as ctx:
        pools.define(ctx, pools.parse_spec("a", ["enp133s0f0"], 2, "auto", "vfio",
                                           VfDefaults()))
        pools.start(ctx, "a")
        leases.acquire(ctx, "a", "vm1")
    sim = ("--sim", str(sim_root))
    shown = on_a_terminal_stdout(*sim, "report", env=environment())
    assert "\x1b[32mactive\x1b[0m" in shown and "\x1b[33mleased\x1b[0m" in shown
    plain = on_a_terminal_stdout(*sim, "report", env=environment(NO_COLOR="1"))
    assert "\x1b[" not in plain and "  active  " in plain
    target = tmp_path / "report.txt"
    assert on_a_terminal_stdout(*sim, "report", "--output", str(target),
                                env=environment()) == ""
    written = target.read_text()
    assert "\x1b[" not in written and "  leased  " in written
    # Apart from the time of the report in its first line and the lease's age, the file is
    # what the terminal showed without colour (a terminal's lines end in \r\n).
    def timeless(text: str) -> list[str]:
        return [re.sub(r"\d+[smhd](\d\d[smh])?$", "AGE", line) for line in text.splitlines()[1:]]

    assert timeless(written) == timeless(plain.replace("\r\n", "\n"))
