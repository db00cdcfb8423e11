"""A storm: many `vfpool` processes acquiring and releasing at once, while other processes run
`reconcile`, `report`, `pool info` and `pool resize` in loops beside them. Used by the storm
test (which asserts) and by `make bench` (which prints its figures)."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.races import VFPOOL, env

CALL_TIMEOUT = 180.0
LOOP_LIMIT = 400  # every side loop is bounded, even if the workers never finish
ALLOWED = (0, 4, 5)  # ok, busy or conflict, exhausted


@dataclass(frozen=True)
class Call:
    kind: str
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def unexpected(self) -> bool:
        """An exit outside the contract's answers, or an internal error, or not one line."""
        return (self.returncode not in ALLOWED or "internal error" in self.stderr
                or "Traceback" in self.stderr
                or (self.returncode != 0 and self.stderr.count("\n") != 1))

    def describe(self) -> str:
        return (f"{self.kind}: `vfpool {' '.join(self.argv)}` exited {self.returncode} after "
                f"{self.seconds:.2f} s\nstderr: {self.stderr}")


def run(root: Path, kind: str, *args: str) -> Call:
    started = time.perf_counter()
    result = subprocess.run([str(VFPOOL), "--sim", str(root), *args], capture_output=True,
                            text=True, env=env(), timeout=CALL_TIMEOUT, check=False)
    return Call(kind, tuple(args), result.returncode, result.stdout, result.stderr,
                time.perf_counter() - started)


@dataclass
class Storm:
    calls: list[Call] = field(default_factory=list)
    seconds: float = 0.0
    leases: list[dict[str, object]] = field(default_factory=list)

    def of(self, kind: str) -> list[Call]:
        return [call for call in self.calls if call.kind == kind]

    @property
    def unexpected(self) -> list[Call]:
        return [call for call in self.calls if call.unexpected]

    def figures(self, kinds: tuple[str, ...] = ("acquire", "release")) -> dict[str, float]:
        """Operations per second, and p50 and p99 latency in seconds, of ``kinds``."""
        samples = sorted(call.seconds for call in self.calls if call.kind in kinds)
        if not samples:
            return {"ops_per_s": 0.0, "p50": 0.0, "p99": 0.0}
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        return {"ops_per_s": len(samples) / self.seconds if self.seconds else 0.0,
                "p50": statistics.median(samples), "p99": p99}


def storm(root: Path, pool: str, *, workers: int, rounds: int, side_loops: bool = True,
          resize_to: tuple[int, int] = (12, 16)) -> Storm:
    """``workers`` processes, each ``rounds`` times acquiring one VF and releasing it with its
    token; with ``side_loops``, reconcile, report, pool info and pool resize (alternating
    between ``resize_to``) loop beside them until the workers are done."""
    import json

    result = Storm()
    lock = threading.Lock()
    done = threading.Event()

    def record(call: Call) -> None:
        with lock:
            result.calls.append(call)

    def worker(number: int) -> None:
        for _ in range(rounds):
            acquired = run(root, "acquire", "lease", "acquire", pool, "--owner", f"w{number}",
                           "--json")
            record(acquired)
            if acquired.returncode != 0:
                continue
            for lease in json.loads(acquired.stdout):
                with lock:
                    result.leases.append(lease)
                record(run(root, "release", "lease", "release", str(lease["id"]), "--token",
                           str(lease["token"]), "--json"))

    def loop(kind: str, *commands: tuple[str, ...]) -> None:
        for turn in range(LOOP_LIMIT):
            if done.is_set():
                return
            record(run(root, kind, *commands[turn % len(commands)]))

    loops = [("reconcile", ("reconcile", "--json")), ("report", ("report", "--format", "json")),
             ("info", ("pool", "info", pool, "--json"))]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers + (4 if side_loops else 0)) as executor:
        side = []
        if side_loops:
            side = [executor.submit(loop, kind, command) for kind, command in loops]
            side.append(executor.submit(loop, "resize", *(
                ("pool", "resize", pool, "--vfs", str(count)) for count in resize_to)))
        jobs = [executor.submit(worker, number) for number in range(workers)]
        try:
            for job in jobs:
                job.result()
        finally:
            # Stop the side loops even when a worker failed, so the failure comes out now.
            result.seconds = time.perf_counter() - started
            done.set()
        for job in side:
            job.result()
    return result
