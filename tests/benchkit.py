"""The instruments of `make bench` (tests/bench.py). Nothing here asserts a timing.

Leaving the simulator out: ``SimMeter``
---------------------------------------
vfpool reaches a simulated host only through its ports: the ``KernelPort`` methods
``SimHost.write_attr`` and ``SimHost.modprobe``, and the netlink port, which on a sim is the
same object (``SimHost.netlink`` returns ``self``): ``vf_configs``, ``vf_config``,
``set_vf`` and ``set_link``. On a real host these calls leave vfpool (a write(2) to sysfs, a
modprobe process, an rtnetlink request), so they are the kernel's time, not vfpool's. (On a
real host, decoding the VF table a read returns is vfpool's CPU: ``vfpool.host.rtnl``, about
0.1 ms for one VF of a 128-VF PF, and 1 ms for all of them. The sim's read is left out with
the rest of the sim.) ``SimMeter``
replaces those six methods on the ``SimHost`` class with wrappers that add the process CPU
time (``time.process_time``: user + system, this process only) and the wall time spent
inside them to two counters. A call made from inside another port call is not counted twice.
vfpool's own CPU for an operation is then the process CPU time the operation took, minus what
the counters grew by meanwhile. Counting CPU rather than wall time keeps the other sessions
that load this machine out of the figure (they take turns on the CPU, not CPU time from us).

What counts as vfpool's cost, because it is vfpool's code and it would run on a real host
too: its sysfs reads (``vfpool.host.sysfs``: listdir, readlink, read_text of attributes under
the sim root, which the sim serves as plain files, exactly as it would be on ``/``), its lock
files (``vfpool.host.lock``: open and flock), SQLAlchemy, SQLite (the library and its file
I/O), the service, the model and the imports it does. What the sim does to serve a port call
(its own ``sim.json`` state under its own lock, the tree it rewrites, its fault checks) is
the sim's and is left out. The wrappers cost about a microsecond per port call (``overhead``
measures it); that stays in vfpool's figure.
"""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import vfpool
from vfpool.model.vfconfig import generated_mac
from vfpool.sim.host import SimHost

REPO = Path(__file__).resolve().parents[1]
VFPOOL = Path(sys.executable).parent / "vfpool"
PORT_METHODS = ("write_attr", "modprobe", "vf_configs", "vf_config", "set_vf", "set_link")
# SQLAlchemy's SQLite DATETIME text format: what UtcDateTime reads back.
SQL_TIME = "%Y-%m-%d %H:%M:%S.%f"


# ---------------------------------------------------------------- the simulator's share

class SimMeter:
    """CPU and wall seconds spent inside the simulated host's port methods (see the module
    docstring). Use as a context manager: the methods are wrapped on entry and put back on
    exit."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0
        self.calls: Counter[str] = Counter()
        self._depth = 0
        self._saved: dict[str, Any] = {}

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        meter = self

        @functools.wraps(original)
        def metered(*args: Any, **kwargs: Any) -> Any:
            if meter._depth:
                return original(*args, **kwargs)
            meter._depth += 1
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                meter.cpu += time.process_time() - cpu
                meter.wall += time.perf_counter() - wall
                meter.calls[name] += 1
                meter._depth -= 1

        return metered

    def __enter__(self) -> SimMeter:
        for name in PORT_METHODS:
            self._saved[name] = SimHost.__dict__[name]
            setattr(SimHost, name, self._wrap(name, self._saved[name]))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, original in self._saved.items():
            setattr(SimHost, name, original)
        self._saved.clear()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def overhead(self, calls: int = 20_000) -> float:
        """Seconds of CPU one metered call adds, wrapper against bare function."""
        def noop() -> None:
            return None

        probe = SimMeter()
        wrapped = probe._wrap("noop", noop)
        started = time.process_time()
        for _ in range(calls):
            noop()
        bare = time.process_time() - started
        started = time.process_time()
        for _ in range(calls):
            wrapped()
        return max(0.0, (time.process_time() - started - bare) / calls)


@dataclass(frozen=True)
class Sample:
    """One operation: process CPU, wall, and the simulator's part of each (seconds)."""

    cpu: float
    wall: float
    sim_cpu: float
    sim_wall: float
    port_calls: int

    @property
    def own_cpu(self) -> float:
        return self.cpu - self.sim_cpu

    @property
    def own_wall(self) -> float:
        return self.wall - self.sim_wall


def measured(meter: SimMeter, action: Callable[[], object]) -> Sample:
    sim_cpu, sim_wall, calls = meter.cpu, meter.wall, meter.total_calls
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Sample(cpu, wall, meter.cpu - sim_cpu, meter.wall - sim_wall,
                  meter.total_calls - calls)


def acquire_release(host: vfpool.Host, pool: str, owner: str) -> None:
    lease = host.acquire(pool, owner=owner)
    host.release(lease)


def median_of(samples: Sequence[Sample], field: str) -> float:
    return statistics.median(getattr(sample, field) for sample in samples)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# ---------------------------------------------------------------- where vfpool's CPU goes

VFPOOL_DIR = str(Path(vfpool.__file__).resolve().parent)
SIM_DIR = str(Path(VFPOOL_DIR) / "sim")
SIM = "(the simulator's ports)"


class StackSampler:
    """A sampling profiler weighted by CPU time. A thread looks at the profiled thread's
    stack every ``interval`` seconds and charges it the CPU time that thread used since the
    last look (``time.pthread_getcpuclockid``), so waiting and the machine's other load count
    for nothing. A sample whose stack passes through ``vfpool/sim`` is the simulator's (left
    out, as ``SimMeter`` leaves it out); every other sample is vfpool's own, charged

    - ``inclusive``: once to every vfpool function on the stack (``file:function``);
    - ``innermost``: to the innermost vfpool function, which includes the libraries it calls
      (SQLAlchemy, sqlite3, pathlib) but not vfpool code it calls;
    - ``leaf``: to the innermost Python function of all, vfpool's or a library's.
    """

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.inclusive: Counter[str] = Counter()
        self.innermost: Counter[str] = Counter()
        self.leaf: Counter[str] = Counter()
        self.sim = 0.0
        self.own = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._switch = 0.0

    @staticmethod
    def _name(code: Any) -> str:
        filename = code.co_filename
        if filename.startswith(VFPOOL_DIR):
            filename = "vfpool" + filename[len(VFPOOL_DIR):]
        else:
            parts = Path(filename).parts
            for anchor in ("site-packages", "lib"):
                if anchor in parts:
                    filename = "/".join(parts[len(parts) - parts[::-1].index(anchor):])
                    break
        name = getattr(code, "co_qualname", code.co_name).replace(".<locals>", "")
        return f"{filename}:{name}"[:90]

    def _charge(self, frame: Any, cpu: float) -> None:
        names = []
        leaf = None
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(SIM_DIR):
                self.sim += cpu
                return
            if leaf is None:
                leaf = self._name(frame.f_code)
            if filename.startswith(VFPOOL_DIR):
                names.append(self._name(frame.f_code))
            frame = frame.f_back
        self.own += cpu
        if leaf is not None:
            self.leaf[leaf] += cpu
        if names:
            self.innermost[names[0]] += cpu
        for name in set(names):
            self.inclusive[name] += cpu

    def _run(self, ident: int) -> None:
        clock = time.pthread_getcpuclockid(ident)
        last = time.clock_gettime(clock)
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(ident)
            now = time.clock_gettime(clock)
            if frame is not None:
                self._charge(frame, now - last)
            last = now

    def __enter__(self) -> StackSampler:
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(self.interval / 2)  # let the sampler in while the target runs
        self._thread = threading.Thread(target=self._run, args=(threading.get_ident(),),
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        sys.setswitchinterval(self._switch)

    def top(self, which: str, count: int = 8) -> list[tuple[str, float]]:
        """The ``count`` largest entries of ``inclusive``, ``innermost`` or ``leaf`` as
        (name, share of vfpool's own sampled CPU)."""
        table: Counter[str] = getattr(self, which)
        return [(name, cpu / self.own) for name, cpu in table.most_common(count)
                if self.own > 0]


# ---------------------------------------------------------------- hosts and stores

@dataclass(frozen=True)
class Layout:
    """A simulated host and one pool on it."""

    name: str
    nics: tuple[str, ...]
    pfs: tuple[str, ...]
    vfs_per_pf: int

    @property
    def vfs(self) -> int:
        return len(self.pfs) * self.vfs_per_pf


def e810_cards(cards: int, totalvfs: int) -> tuple[str, ...]:
    """``cards`` dual-port E810s on buses 05, 08, 0b, ... (each card's VFs take the buses after
    its own), NUMA node 0."""
    return tuple(f"intel-e810@0000:{5 + 3 * card:02x}:00.0:numa=0:totalvfs={totalvfs}"
                 for card in range(cards))


def e810_pfs(cards: int) -> tuple[str, ...]:
    return tuple(f"enp{5 + 3 * card}s0f{port}" for card in range(cards) for port in (0, 1))


def build_host(root: Path, layout: Layout, *, start: bool = True, db: str | None = None) -> None:
    """A simulated host with the layout's pool defined (and started); its store is the sim's
    own, or ``db``."""
    SimHost.create(root, list(layout.nics))
    with vfpool.connect(sim=root, db=db) as host:
        host.define_pool(layout.name, list(layout.pfs), layout.vfs_per_pf)
        if start:
            host.start_pool(layout.name)


def _sql_time(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).strftime(SQL_TIME)


def insert_history(db_path: Path, pool: str, *, leases: int, events: int) -> None:
    """``leases`` finished (released) leases on the pool's VFs and ``events`` audit events,
    written straight with sqlite3 in one transaction, shaped as vfpool writes them: each
    lease a reserve, an acquire and a release event (as many as ``events`` allows), the rest
    pool and reconcile events. All of it older than now, spread over 30 days."""
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys=ON")
        pool_id, mode, host_id = connection.execute(
            "SELECT id, mode, host_id FROM pools WHERE name=?", (pool,)).fetchone()
        vfs = connection.execute(
            'SELECT v.id, v.pf_pci, v."index", v.pci, p.numa_node FROM vfs v '
            "JOIN pool_pfs m ON m.pf_pci = v.pf_pci JOIN pfs p ON p.pci = v.pf_pci "
            'WHERE m.pool_id=? ORDER BY v.id', (pool_id,)).fetchall()
        if not vfs:
            raise RuntimeError(f"pool {pool} has no VFs in {db_path}; start it first")
        now = datetime.now(UTC)
        span = timedelta(days=30).total_seconds()
        step = span / max(1, leases)
        saved = json.dumps({"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": True,
                            "trust": False, "link_state": "auto", "min_tx_rate": 0,
                            "max_tx_rate": 0, "driver": None, "driver_override": None,
                            "mtu": None})
        lease_rows = []
        for number in range(leases):
            vf_id, pf_pci, index, vf_pci, numa = vfs[number % len(vfs)]
            owner = f"old-vm-{number % 997}"
            mac = generated_mac(pool, owner, index)
            created = now - timedelta(seconds=span - number * step)
            released = created + timedelta(seconds=step / 2)
            applied = json.dumps({"mac": mac, "vlan": 0, "qos": 0, "spoofchk": None,
                                  "trust": None, "link_state": "auto", "min_tx_rate": None,
                                  "max_tx_rate": None, "driver": "vfio-pci", "mtu": None})
            lease_rows.append((host_id, pool_id, vf_id, pf_pci, vf_pci, index, owner, "0" * 64,
                               "released", mode, mac, numa, applied, saved, "old-boot",
                               _sql_time(created), _sql_time(released), _sql_time(released)))
        connection.execute("BEGIN")
        first_id = (connection.execute("SELECT coalesce(max(id), 0) FROM leases")
                    .fetchone()[0] + 1)
        connection.executemany(
            "INSERT INTO leases (host_id, pool_id, vf_id, pf_pci, vf_pci, vf_index, owner, "
            "token_hash, state, mode, mac, numa_node, applied_config, saved_config, boot_id, "
            "created_at, updated_at, released_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            lease_rows)

        def event_rows() -> Iterator[tuple[object, ...]]:
            lease_events = min(events, 3 * leases)
            for number in range(lease_events):
                lease_number, step_number = divmod(number, 3)
                row = lease_rows[lease_number]
                action = ("lease.reserve", "lease.acquire", "lease.release")[step_number]
                detail: dict[str, object] = {"owner": row[6]}
                if action == "lease.acquire":
                    detail.update(mode=mode, mac=row[10])
                elif action == "lease.release":
                    detail.update(reason="released by its owner", vf_state="free",
                                  vf_reason=None)
                yield (host_id, row[16] if step_number == 2 else row[15], "root[1]", action,
                       pool, row[3], row[4], first_id + lease_number, json.dumps(detail))
            for number in range(events - lease_events):
                at = now - timedelta(seconds=span * (1 - number / max(1, events)))
                action = ("pool.start", "reconcile")[number % 2]
                yield (host_id, _sql_time(at), "root[1]", action,
                       pool if number % 2 == 0 else None, None, None, None,
                       json.dumps({"note": "bench history"}))

        connection.executemany(
            "INSERT INTO events (host_id, at, actor, action, pool, pf, vf, lease_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", event_rows())
        connection.execute("COMMIT")
    finally:
        connection.close()


def store_counts(db_path: Path) -> tuple[int, int]:
    """(leases, events) in a store."""
    connection = sqlite3.connect(db_path)
    try:
        return (connection.execute("SELECT count(*) FROM leases").fetchone()[0],
                connection.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        connection.close()


# ---------------------------------------------------------------- processes

@dataclass(frozen=True)
class ChildCost:
    wall: float
    cpu: float  # user + system of the child (and any process it waited for)
    stdout: str


def child_cost(argv: Sequence[str], *, timeout: float = 120.0) -> ChildCost:
    """Run a process to its end; its wall time and its CPU time (from the rusage of reaped
    children, so run one at a time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            cwd=REPO, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ChildCost(wall, cpu, result.stdout)


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


@dataclass(frozen=True)
class Imported:
    module: str
    self_us: int
    cumulative_us: int
    depth: int


def import_times(argv: Sequence[str]) -> list[Imported]:
    """Every module a Python program imports, from ``python -X importtime`` (``argv`` starts
    with the script or ``-c``; this Python runs it)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                            text=True, timeout=120, check=False)
    found = []
    for line in result.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            found.append(Imported(match[4], int(match[1]), int(match[2]), len(match[3]) // 2))
    if not found:
        raise RuntimeError(f"no -X importtime output from {argv}: {result.stderr[-500:]}")
    return found


def import_chain(imports: Sequence[Imported], package: str) -> list[str]:
    """The vfpool modules through which ``package`` was first imported, innermost first
    (``-X importtime`` lists a module after everything it imported, one level deeper)."""
    for number, item in enumerate(imports):
        if item.module.split(".")[0] == package:
            chain, depth = [], item.depth
            for later in imports[number + 1:]:
                if later.depth < depth:
                    depth = later.depth
                    if later.module.split(".")[0] == "vfpool":
                        chain.append(later.module)
            return chain
    return []


def by_package(imports: Sequence[Imported]) -> Counter[str]:
    """Self import time (µs) summed per top-level package."""
    totals: Counter[str] = Counter()
    for item in imports:
        totals[item.module.split(".")[0]] += item.self_us
    return totals


# ---------------------------------------------------------------- a metered CLI process

def metered_cli_main(argv: list[str], report_to: str) -> None:
    """Run the `vfpool` console entry point with ``SimMeter`` installed; at exit write the
    simulator's CPU and wall seconds as JSON to ``report_to``. For `make bench`'s
    "of which simulator" row of the cold CLI (the measured cold runs are not metered)."""
    import atexit

    from vfpool.cli.main import main as cli_main

    meter = SimMeter().__enter__()

    def report() -> None:
        Path(report_to).write_text(json.dumps({"cpu": meter.cpu, "wall": meter.wall,
                                               "calls": meter.total_calls}))

    atexit.register(report)
    sys.argv = ["vfpool", *argv]
    cli_main()


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Row:
    name: str
    value: str = ""
    target: str = ""
    verdict: str = ""


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def print_table(rows: Sequence[Row], title: str, *, names: int = 0) -> None:
    names = max(names, *(len(row.name) for row in rows))
    values = max(len("value"), *(len(row.value) for row in rows))
    targets = max(len("target"), *(len(row.target) for row in rows))
    print(f"\n{title}")
    print(f"{'measurement'.ljust(names)}  {'value'.ljust(values)}  {'target'.ljust(targets)}  "
          "verdict")
    print(f"{'-' * names}  {'-' * values}  {'-' * targets}  -------")
    for row in rows:
        if not row.value and not row.target:
            print(row.name)  # a section heading
            continue
        print(f"{row.name.ljust(names)}  {row.value.ljust(values)}  {row.target.ljust(targets)}"
              f"  {row.verdict}".rstrip())
    sys.stdout.flush()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Say on stderr what runs and how long it took, so a slow run shows where it is."""
    started = time.perf_counter()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    yield
    print(f"bench: {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the machine's other load

RAISED_NICE = -20


@dataclass(frozen=True)
class Priority:
    """What ``raised_priority`` did: the nice value the thread had before (``normal``) and
    the one it runs at now, or why it could not be raised."""

    normal: int
    nice: int
    refused: str | None = None

    @property
    def raised(self) -> bool:
        return self.refused is None

    def said(self) -> str:
        if self.raised:
            return f"nice {self.nice}"
        return f"nice {self.nice} (raising it was refused: {self.refused})"


@contextmanager
def raised_priority() -> Iterator[Priority]:
    """Run the block at nice -20 (this thread, and the processes it starts), and at the nice
    it had before after it.

    Why: counting CPU time keeps the time other processes run out of a figure, but not what
    they do to this one's caches. On this two-core machine, shared with other sessions, each
    time a busier neighbour preempted an acquire+release, the pair found its caches refilled
    by the neighbour's work. With six processes walking 64 MB each beside it, a loop of pairs
    read 2.96 and 3.02 ms of vfpool's own CPU against 2.02 ms on the quiet machine a minute
    before; at nice -20 beside the same six, 1.93 and 2.17 ms (and under SCHED_FIFO, 1.95 and
    2.03). The work vfpool does is the same; what changed is how often it is interrupted.
    Raising the priority needs root (CAP_SYS_NICE); without it the block runs as it is, and
    ``Priority.refused`` says so."""
    normal = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, RAISED_NICE)
    except OSError as exc:
        yield Priority(normal, normal, exc.strerror or str(exc))
        return
    try:
        yield Priority(normal, RAISED_NICE)
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, normal)


@contextmanager
def normal_priority(priority: Priority) -> Iterator[None]:
    """Inside ``raised_priority``: run the block at the nice the thread had before, as an
    operation runs on a busy host, for the rows that show what the load does."""
    if not priority.raised:
        yield
        return
    os.setpriority(os.PRIO_PROCESS, 0, priority.normal)
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, priority.nice)


def load_average() -> float:
    """The machine's load average over the last minute."""
    return os.getloadavg()[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def cpu_count() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    # python -m tests.benchkit cli REPORT_FILE VFPOOL-ARGS...
    if len(sys.argv) < 3 or sys.argv[1] != "cli":
        raise SystemExit("usage: python -m tests.benchkit cli REPORT_FILE VFPOOL-ARGS...")
    metered_cli_main(sys.argv[3:], sys.argv[2])


def memory_folder() -> Path | None:
    """A fresh folder on a tmpfs (``/dev/shm``), or None when there is none to write to.

    sysfs lives in memory: a sim tree on a disk-backed /tmp makes the sim's own writes cost
    whatever the disk's journal costs at that moment (0.9-10 s per 1024-VF start here), and a
    ratio against that says more about the disk than about vfpool."""
    shm = Path("/dev/shm")
    try:
        if _mount_type(shm) == "tmpfs" and os.access(shm, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="vfpool-bench-", dir=shm))
    except OSError:
        pass
    return None


def _mount_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind
