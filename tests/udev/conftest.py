"""udev tests on a umockdev testbed, run under ``umockdev-wrapper``.

umockdev redirects libudev's view of /sys (and its uevent netlink socket) to a testbed, but
only in a process started with its preload library (``umockdev-wrapper`` sets LD_PRELOAD).
So these tests run in two steps, and ``pytest tests/udev`` (or the whole suite) needs no
wrapper of its own:

1. In a normal pytest run, the first test here that needs umockdev starts ONE inner run,
   ``umockdev-wrapper <python> -m pytest <the selected tests of this directory>``, and every
   test here reports the outcome of its own inner run: pass, fail with the inner traceback,
   or skip. The inner reports travel through pytest's own report serialisation (as in
   pytest-xdist), so nothing is lost and each test is counted once.
2. In the inner run (LD_PRELOAD has the umockdev library), the tests run for real.

Without umockdev those tests are skipped with the reason (`make test` installs it). Tests
marked ``without_umockdev`` (pure functions, the unit file) always run in the normal run.

Debian's ``gi`` (python3-gi) lives in /usr/lib/python3/dist-packages, outside the venv. Only
the inner run loads it, and only the ``gi`` package itself, through an import spec for that
directory: nothing is added to sys.path, so no other Debian module can shadow the venv's.

The testbed mirrors a simulated host (``vfpool.sim``): the same device paths, attributes and
driver/physfn/virtfn links, plus the properties udev would add (ID_NET_NAME_PATH,
ID_MODEL_FROM_DATABASE). The store is then built by the real services on that sim, so the
store's PCI addresses are the testbed's.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vfpool.host.identity import read_identity
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress, predictable_name
from vfpool.service import leases, pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost

HERE = Path(__file__).resolve().parent
DEBIAN_GI = "/usr/lib/python3/dist-packages"
WRAPPER = "umockdev-wrapper"
REPORTS_ENV = "VFPOOL_UDEV_REPORTS"  # set for the inner run: where it writes its reports
INNER_TIMEOUT = 300
UNDER_UMOCKDEV = "libumockdev-preload" in os.environ.get("LD_PRELOAD", "")
INSTALL_HINT = ("install the Debian packages umockdev, gir1.2-umockdev-1.0 and python3-gi "
                "(`make test` does)")

_config: pytest.Config | None = None


# ---------------------------------------------------------------- the two-step run

def _ours(item: pytest.Item) -> bool:
    """A test of this directory that needs umockdev (all but those marked
    ``without_umockdev``, which run in the normal run, wrapper or not)."""
    return (HERE in Path(item.path).resolve().parents
            and item.get_closest_marker("without_umockdev") is None)


@functools.cache
def umockdev_missing() -> str | None:
    """Why the umockdev tests cannot run here, or None. Checks files only, so the outer run
    never loads gi."""
    if shutil.which(WRAPPER) is None:
        return f"{WRAPPER} is not installed; {INSTALL_HINT}"
    if (importlib.util.find_spec("gi") is None
            and importlib.machinery.PathFinder.find_spec("gi", [DEBIAN_GI]) is None):
        return f"python3-gi is not installed; {INSTALL_HINT}"
    if not glob("/usr/lib/*/girepository-1.0/UMockdev-1.0.typelib") + glob(
            "/usr/lib/girepository-1.0/UMockdev-1.0.typelib"):
        return f"the UMockdev typelib is not installed; {INSTALL_HINT}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    config.addinivalue_line("markers", "without_umockdev: a test of tests/udev that needs no "
                                       "testbed; it runs in the normal pytest run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = umockdev_missing()
    if reason is None:
        return
    for item in items:
        if _ours(item):
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class _InnerRun:
    returncode: int
    output: str
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _run_inner(session: pytest.Session) -> _InnerRun:
    nodeids = [item.nodeid for item in session.items if _ours(item)]
    handle, name = tempfile.mkstemp(prefix="vfpool-udev-", suffix=".jsonl")
    os.close(handle)
    reports_file = Path(name)
    env = {**os.environ, REPORTS_ENV: str(reports_file)}
    command = [WRAPPER, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *nodeids]
    try:
        proc = subprocess.run(command, cwd=session.config.rootpath, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=INNER_TIMEOUT, check=False)
        run = _InnerRun(proc.returncode, proc.stdout)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        run = _InnerRun(-1, f"timed out after {INNER_TIMEOUT} s\n{output}")
    try:
        for line in reports_file.read_text().splitlines():
            data = json.loads(line)
            if isinstance(data.get("longrepr"), list):  # a skip's (path, line, reason)
                data["longrepr"] = tuple(data["longrepr"])
            run.reports.setdefault(data["nodeid"], []).append(data)
    except FileNotFoundError:
        pass
    finally:
        reports_file.unlink(missing_ok=True)
    return run


def _replay(item: pytest.Item, run: _InnerRun) -> None:
    from _pytest.reports import TestReport

    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    found = run.reports.get(item.nodeid)
    if found:
        for data in found:
            report = item.config.hook.pytest_report_from_serializable(config=item.config,
                                                                      data=data)
            hook.pytest_runtest_logreport(report=report)
    else:
        tail = "\n".join(run.output.splitlines()[-60:])
        longrepr = (f"no result for this test from `{WRAPPER} pytest` (exit code "
                    f"{run.returncode}); its output ends with:\n{tail}")
        for when, outcome in (("setup", "passed"), ("call", "failed"), ("teardown", "passed")):
            hook.pytest_runtest_logreport(report=TestReport(
                item.nodeid, item.location, {}, outcome,
                longrepr if outcome == "failed" else None, when))
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


_inner_key = pytest.StashKey[_InnerRun]()


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if UNDER_UMOCKDEV or not _ours(item) or umockdev_missing() is not None:
        return None  # run it here, normally (or let the skip marker skip it)
    stash = item.session.stash
    if _inner_key not in stash:
        stash[_inner_key] = _run_inner(item.session)
    _replay(item, stash[_inner_key])
    return True


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(REPORTS_ENV)
    if not (UNDER_UMOCKDEV and path and _config is not None):
        return
    data = _config.hook.pytest_report_to_serializable(config=_config, report=report)
    with open(path, "a") as handle:
        handle.write(json.dumps(data) + "\n")


# ---------------------------------------------------------------- umockdev

def _load_umockdev() -> ModuleType:
    """UMockdev through gi: the venv's gi if it has one, else Debian's python3-gi, loaded
    as the single package ``gi`` (no sys.path entry)."""
    if "gi" not in sys.modules and importlib.util.find_spec("gi") is None:
        spec = importlib.machinery.PathFinder.find_spec("gi", [DEBIAN_GI])
        if spec is None or spec.loader is None:
            pytest.fail(f"python3-gi is not installed; {INSTALL_HINT}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["gi"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["gi"]
            raise
    gi = importlib.import_module("gi")
    gi.require_version("UMockdev", "1.0")
    return importlib.import_module("gi.repository.UMockdev")


@pytest.fixture(scope="session")
def umockdev_testbed() -> Iterator[Any]:
    """One testbed per run. Each testbed sets $UMOCKDEV_DIR for the whole process and unsets
    it when it is freed, so a second one alive at the same time would break the first: tests
    clear and reuse this one, and it is disabled (real /sys) between them."""
    if not UNDER_UMOCKDEV:
        pytest.fail(f"the udev tests must run under {WRAPPER}; conftest.py arranges that")
    umockdev = _load_umockdev()
    testbed = umockdev.Testbed.new()
    testbed.disable()
    yield testbed
    testbed.clear()


@dataclass
class Bed:
    """The testbed, with the device paths by name (PCI address or netdev)."""

    testbed: Any
    root: Path
    paths: dict[str, str] = field(default_factory=dict)

    def uevent(self, name: str, action: str) -> None:
        self.testbed.uevent(self.paths[name], action)

    def remove(self, name: str) -> None:
        """The kernel's order: the uevent goes out, the device goes away."""
        self.uevent(name, "remove")
        self.testbed.remove_device(self.paths[name])

    def set_attribute(self, name: str, attribute: str, value: str) -> None:
        self.testbed.set_attribute(self.paths[name], attribute, value)


def _attributes(directory: Path) -> list[str]:
    pairs = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and not entry.is_symlink() and entry.name != "uevent":
            pairs += [entry.name, entry.read_text()]
    return pairs


def _links(bed: Bed, syspath: str, directory: Path) -> None:
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink() and entry.name != "subsystem":
            bed.testbed.set_attribute_link(syspath, entry.name, os.readlink(entry))


def mirror_sim(bed: Bed, sim_root: Path) -> None:
    """Copy the simulated host's PCI functions and netdevs into the testbed, at the same
    device paths, with the properties udev would add."""
    sysfs = Sysfs(SimHost(sim_root))
    sys_dir = sim_root / "sys"
    for link in sorted((sys_dir / "bus/pci/devices").iterdir()):
        device = link.resolve()
        address = PciAddress.parse(link.name)
        vendor = int((device / "vendor").read_text(), 16)
        device_id = int((device / "device").read_text(), 16)
        driver = sysfs.pci_function(address).driver
        properties = ["PCI_CLASS", format(int((device / "class").read_text(), 16), "X"),
                      "PCI_ID", f"{vendor:04X}:{device_id:04X}", "PCI_SLOT_NAME", link.name]
        if driver:
            properties += ["DRIVER", driver]
        model = sysfs.pciids.device_name(vendor, device_id)
        if model:
            properties += ["ID_MODEL_FROM_DATABASE", model]
        name = str(device.relative_to(sys_dir / "devices"))
        bed.paths[link.name] = bed.testbed.add_device("pci", name, None, _attributes(device),
                                                      properties)
        _links(bed, bed.paths[link.name], device)
    for link in sorted((sys_dir / "class/net").iterdir()):
        device = link.resolve()
        attributes = _attributes(device)
        operstate = (device / "operstate").read_text().strip()
        attributes += ["carrier", "1" if operstate == "up" else "0"]
        properties = ["INTERFACE", link.name, "IFINDEX", (device / "ifindex").read_text().strip()]
        owner = sysfs.netdev_device(link.name)
        if owner is not None:
            properties += ["ID_NET_NAME_PATH", predictable_name(owner)]
        name = str(device.relative_to(sys_dir / "devices"))
        bed.paths[link.name] = bed.testbed.add_device("net", name, None, attributes, properties)
        _links(bed, bed.paths[link.name], device)


@dataclass
class PoolHost:
    """A simulated host with pool tenant-a (4 VFs of enp133s0f0, X710) started, VF 0 leased
    to vm1, and a testbed that mirrors it."""

    sim_root: Path
    ctx: Context
    bed: Bed
    lease_id: int
    db_url: str

    @property
    def store(self) -> Any:
        return self.ctx.store


PF = "0000:85:00.0"  # enp133s0f0, in pool tenant-a
OTHER_PF = "0000:85:00.1"  # enp133s0f1, in no pool
VFS = ["0000:85:02.0", "0000:85:02.1", "0000:85:02.2", "0000:85:02.3"]


@pytest.fixture
def bed(umockdev_testbed: Any) -> Iterator[Bed]:
    umockdev_testbed.clear()
    umockdev_testbed.enable()
    yield Bed(umockdev_testbed, Path(umockdev_testbed.get_root_dir()))
    umockdev_testbed.clear()
    umockdev_testbed.disable()


@pytest.fixture
def pool_host(sim_root: Path, bed: Bed) -> Iterator[PoolHost]:
    # The test bed shows this sim to `vfpool watch` as the machine itself, so the sim takes
    # this machine's identity: the store's rows are then the watching host's own.
    here = read_identity(Path("/"), simulated=False)
    (sim_root / "etc/machine-id").write_text(here.machine_id + "\n")
    (sim_root / "etc/hostname").write_text(here.name + "\n")
    ctx = open_context(sim=sim_root)
    pools.define(ctx, pools.parse_spec("tenant-a", ["enp133s0f0"], 4, "auto", "vfio",
                                       pools.VfDefaults()))
    pools.start(ctx, "tenant-a")
    [lease] = leases.acquire(ctx, "tenant-a", "vm1")
    assert lease.vf.pci == VFS[0]
    mirror_sim(bed, sim_root)
    try:
        yield PoolHost(sim_root, ctx, bed, lease.id, f"sqlite:///{sim_root / 'vfpool.db'}")
    finally:
        ctx.close()
