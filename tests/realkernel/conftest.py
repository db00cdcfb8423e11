"""The real-kernel tier on the host: one guest run, one proxy item per in-guest test.

The in-guest tests live in ``tests/realkernel/guest/``. On the host they are collected as usual
(so their ids, parameters included, are exactly the ones pytest gives them in the guest), then
each is replaced by a ``GuestProxy`` that reports the guest's result for that id: its pass, its
failure text, its skip or xfail reason.

Scheduling, with or without xdist (``make test`` runs ``-n 2``):

- a ``starter`` item is moved to the front of the collection, so the first worker starts the
  guest run (``harness.py``, both boots) in the background at once, while the workers go on
  with the rest of the suite;
- the proxies and the host-side checks that read the guest's records are moved to the end;
  each waits for the run's ``run.json``;
- a file lock in the directory all workers of one session share makes the run happen once;
- the process that started the run waits for it at session end, and the run dies with it
  (PR_SET_PDEATHSIG), so nothing outlives the session.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.harness import BOOT_TIMEOUT, REPO, GuestRun

HERE = Path(__file__).resolve().parent
GUEST_TESTS = HERE / "guest"
IN_GUEST = os.environ.get("VFPOOL_REALKERNEL_GUEST") == "1"
RUN_TIMEOUT = 2 * BOOT_TIMEOUT + 300
PR_SET_PDEATHSIG = 1

if IN_GUEST:
    # In the guest only the in-guest tests run; the host-side checks are for the host.
    collect_ignore_glob = ["test_*.py"]


def _shared_dir(config: pytest.Config) -> Path:
    """A folder every xdist worker of this session shares (pytest-N/), or basetemp alone."""
    factory = config._tmp_path_factory  # type: ignore[attr-defined]
    base = Path(factory.getbasetemp())
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RunControl:
    """Start the one guest run of this session, and wait for its result."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.selection: list[str] | None = None  # the selected in-guest test ids

    @property
    def work(self) -> Path:
        return _shared_dir(self.config) / "realkernel"

    def start(self) -> None:
        work = self.work
        work.mkdir(parents=True, exist_ok=True)
        with _lock(work.parent / "realkernel.lock"):
            if (work / "started").exists():
                return
            (work / "started").write_text(f"{os.getpid()}\n")
            argv = [sys.executable, "-m", "tests.realkernel.harness", "--work", str(work),
                    "--result-json", str(work / "run.json")]
            if self.selection is not None:
                (work / "selection.txt").write_text("".join(f"{nodeid}\n" for nodeid
                                                            in self.selection))
                argv += ["--selection", str(work / "selection.txt")]
            with open(work / "harness.log", "ab") as log:
                self.process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=log,
                                                preexec_fn=_die_with_parent)

    def result(self) -> GuestRun:
        self.start()
        done = self.work / "run.json"
        deadline = time.monotonic() + RUN_TIMEOUT
        while not done.exists():
            if self.process is not None and self.process.poll() is not None \
                    and not done.exists():
                log = (self.work / "harness.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the real-kernel harness exited {self.process.returncode} without "
                            f"a result:\n{log}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the real-kernel run gave no result within {RUN_TIMEOUT:.0f} s "
                            f"(see {self.work}/harness.log)", pytrace=False)
            time.sleep(1.0)
        return GuestRun.from_json(done.read_text())

    def finish(self) -> None:
        """At session end: never leave the run behind (the other worker may still wait)."""
        if self.process is None:
            return
        try:
            self.process.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(30)


_CONTROL_KEY = pytest.StashKey[RunControl]()


def control(config: pytest.Config) -> RunControl:
    if _CONTROL_KEY not in config.stash:
        config.stash[_CONTROL_KEY] = RunControl(config)
    return config.stash[_CONTROL_KEY]


@pytest.fixture(scope="session")
def guest_run(request: pytest.FixtureRequest) -> GuestRun:
    """The finished guest run; skips the test when the tier cannot run on this machine."""
    run = control(request.config).result()
    if run.unavailable:
        pytest.skip(f"real-kernel tier: {run.unavailable}")
    return run


class GuestFailure(Exception):
    """An in-guest test failed; its text is the guest's own report."""


class RealKernelRun(UserWarning):
    """How the guest ran (KVM or TCG, and why), shown once in the warnings summary."""


def announce(config: pytest.Config, run: GuestRun) -> None:
    """Print the run's summary once per session: the first test to read the result does."""
    marker = control(config).work / "announced"
    with _lock(control(config).work.parent / "realkernel.lock"):
        if marker.exists():
            return
        marker.write_text("1\n")
    warnings.warn(RealKernelRun(f"real-kernel tier: {run.summary()}"), stacklevel=1)


class GuestProxy(pytest.Item):
    """Stands for the in-guest test with the same node id."""

    def runtest(self) -> None:
        run = control(self.config).result()
        if run.unavailable:
            pytest.skip(f"real-kernel tier: {run.unavailable}")
        announce(self.config, run)
        self.user_properties.append(("realkernel", run.summary()))
        outcome = run.outcomes.get(self.nodeid)
        if outcome is None:
            raise GuestFailure(f"the guest never reported {self.nodeid}.\n{run.summary()}\n"
                               f"{run.console_tail()}")
        self.user_properties.append(("guest_seconds", f"{outcome.duration:.1f}"))
        if outcome.outcome == "skipped":
            pytest.skip(f"in the guest (boot {outcome.phase}): {outcome.text}")
        if outcome.outcome == "xfailed":
            pytest.xfail(f"in the guest (boot {outcome.phase}): {outcome.text}")
        if outcome.outcome == "failed":
            raise GuestFailure(f"failed in the guest (boot {outcome.phase}, "
                               f"{outcome.duration:.1f} s):\n{outcome.text}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, GuestFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"[in the guest] {self.nodeid}"


class Starter(pytest.Item):
    """First in the collection: starts the guest run in the background, then passes."""

    def runtest(self) -> None:
        control(self.config).start()

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, "start the real-kernel guest run in the background"


def _in(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if IN_GUEST:
        return
    proxies: list[pytest.Item] = []
    readers: list[pytest.Item] = []
    others: list[pytest.Item] = []
    for item in items:
        if _in(item.path, GUEST_TESTS):
            # A child of the session with the in-guest test's own id: no module collector
            # to set up on the host, whatever order xdist runs the proxies in.
            proxies.append(GuestProxy.from_parent(session, name=item.name, nodeid=item.nodeid,
                                                  path=item.path))
        elif _in(item.path, HERE) and "guest_run" in getattr(item, "fixturenames", ()):
            readers.append(item)
        else:
            others.append(item)
    if not proxies and not readers:
        return
    # The guest runs exactly the selected in-guest tests (-k, node ids, ...).
    control(config).selection = [proxy.nodeid for proxy in proxies]
    starter = Starter.from_parent(session, name="start_guest_run", path=HERE,
                                  nodeid="tests/realkernel::start_guest_run")
    items[:] = [starter, *others, *proxies, *readers]


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not IN_GUEST and _CONTROL_KEY in session.config.stash:
        session.config.stash[_CONTROL_KEY].finish()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """xdist hands the proxies out between other modules' tests, and once left a collector of
    an earlier test on the setup stack ("previous item was not torn down properly"). A proxy
    sets nothing up itself: tear down whatever is not above it first."""
    if isinstance(item, GuestProxy):
        item.session._setupstate.teardown_exact(item)
