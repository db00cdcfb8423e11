"""Boot the real-kernel guest, run the in-guest pytest there, and bring the results back.

One run is at most two boots of one guest (the second is the reboot scenario), on one state
share that persists between them (/var/lib/vfpool and /etc/modprobe.d of the guest):

    host                                     guest (Debian kernel, QEMU's emulated 82576, 2 ports)
    netns vfprk-XXXX: taps rkpf0, rkpf1  ←→  igb PF 0000:00:03.0 / 0000:00:03.1, real VFs
    capture.py on both taps (frames.jsonl)
    9p: / (ro), guest layer (ro),        →   overlay root; pytest on the checkout's .venv
        results (rw), state (rw)         ←   outcomes-N.jsonl, junit-N.xml, records

It tries KVM first when /dev/kvm can be opened, falls back to TCG, and records which ran and
why. Every process it starts (QEMU, the capture) is ended by its PID, and the namespace is
deleted, even when something fails.

By hand: ``python -m tests.realkernel.harness`` runs both boots and prints the outcomes;
``--serve`` boots once and runs shell requests for development (see ``serve``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.realkernel import cache as cache_module
from tests.realkernel.cache import Cache

REPO = cache_module.REPO
HERE = Path(__file__).resolve().parent
GUEST_RUN = HERE / "guest_boot" / "guest-run"
CAPTURE = HERE / "capture.py"
TAPS = ("rkpf0", "rkpf1")
# The guest's two igb PFs: one dual-port 82576, functions 0 and 1 of slot 3, like the
# simulator's intel-82576@0000:00:03.0 (VFs interleaved at 00:13.0, 00:13.1, 00:13.2, …).
PF_ADDRESSES = ("0000:00:03.0", "0000:00:03.1")
GUEST_MEMORY_MB = 2048
GUEST_CPUS = 2
BOOT_TIMEOUT = 2100.0  # one boot, pytest included; a stuck guest is killed after this
GUEST_NICENESS = -10
KVM_PROBE_TIMEOUT = 120.0  # KVM must reach the guest's user space within this
MARKER = "rk-guest:"
# The guest says this when its pytest starts (guest_boot/guest-run), a minute or two into a
# TCG boot. A TCG guest that has not said it within TESTS_START_TIMEOUT hung on its way there:
# once, a boot's udev worker spun in a soft lockup from 44 s of uptime while the other vCPU's
# timer never fired again ("rcu_preempt kthread timer wakeup didn't happen"), until the boot
# timeout killed it 35 minutes later. No vfpool code had run in it, so such a boot is started
# again, once, and the stuck one is reported beside it.
TESTS_MARKER = "rk-guest: running pytest"
TESTS_START_TIMEOUT = 600.0
# q35 without what the tier never uses (each costs probe time under TCG: six SATA links, an
# SMBus, the PS/2 controller), and with no 64-bit PCI window: Linux then places the 82576's
# 64-bit VF BARs below 4 GiB. QEMU 10.0's igbvf registers its BARs as 32-bit ones, so it
# maps a VF BAR at the low half of the address the guest programs; above 4 GiB that is a
# wrong address (BAR 0 at 0x1_0000_0000 reads as 0, "not mapped"): igbvf then reads zeros
# and writes nowhere, and its mailbox with the PF never works. See the README.
MACHINE = "q35,sata=off,smbus=off,i8042=off,vmport=off"
# TCG runs both vCPUs in one thread, in turn. With a thread per vCPU (MTTCG, QEMU 10.0 on these
# machines' 6.18 kernel) a boot hung in two of three runs in one session: one vCPU halted and
# never woke again, neither for its timer ("rcu_preempt kthread timer wakeup didn't happen",
# "Possible timer handling issue on cpu=0") nor for the other's IPI, which spun in a soft lockup
# waiting for it. A vCPU that one thread runs in turn needs no wakeup from another thread.
TCG_ACCEL = "tcg,thread=single"
HOLE64 = ("-global", "q35-pcihost.pci-hole64-size=0")


@dataclass(frozen=True)
class Outcome:
    """One in-guest test's result, from the guest's outcomes-N.jsonl."""

    nodeid: str
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    text: str  # the failure's long text, or the skip/xfail reason
    duration: float
    phase: int


@dataclass
class Boot:
    phase: int
    accel: str
    accel_note: str
    seconds: float
    console: Path
    returncode: int | None
    pytest_exit: int | None
    problem: str | None = None
    tests_started: bool = True
    hung: bool = False  # killed for a timeout, not failed

    def describe(self) -> str:
        note = f" ({self.accel_note})" if self.accel_note else ""
        exit_text = "no pytest result" if self.pytest_exit is None \
            else f"pytest exit {self.pytest_exit}"
        return f"boot {self.phase}: {self.accel.upper()}{note}, {self.seconds:.0f} s, {exit_text}"


@dataclass
class GuestRun:
    work: Path
    boots: list[Boot] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # boots that hung before their tests
    unavailable: str | None = None

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def frames(self) -> Path:
        return self.work / "frames.jsonl"

    def record(self, name: str) -> dict[str, object] | None:
        """A JSON record an in-guest test left in the results share."""
        path = self.results / "records" / f"{name}.json"
        try:
            loaded: dict[str, object] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return loaded

    def summary(self) -> str:
        if self.unavailable:
            return f"real-kernel tier skipped: {self.unavailable}"
        lines = [boot.describe() for boot in self.boots]
        lines += self.retried + self.problems
        return "; ".join(lines)

    def console_tail(self, lines: int = 40) -> str:
        tails = []
        for boot in self.boots:
            try:
                text = boot.console.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            tails.append(f"--- console of boot {boot.phase} ({boot.console}), last lines:\n"
                         + "\n".join(text[-lines:]))
        return "\n".join(tails)

    def to_json(self) -> str:
        return json.dumps({
            "work": str(self.work), "unavailable": self.unavailable, "problems": self.problems,
            "retried": self.retried,
            "boots": [{**boot.__dict__, "console": str(boot.console)} for boot in self.boots],
            "outcomes": [outcome.__dict__ for outcome in self.outcomes.values()],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> GuestRun:
        data = json.loads(text)
        run = cls(Path(data["work"]), problems=data["problems"], retried=data["retried"],
                  unavailable=data["unavailable"])
        run.boots = [Boot(**{**boot, "console": Path(boot["console"])}) for boot in data["boots"]]
        run.outcomes = {item["nodeid"]: Outcome(**item) for item in data["outcomes"]}
        return run


# --------------------------------------------------------------------------- processes
def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A namespace of our own holding the taps the guest's NICs send into; always deleted."""
    name = f"vfprk-{secrets.token_hex(4)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for tap in TAPS:
            _ip("-n", name, "tuntap", "add", "dev", tap, "mode", "tap")
            # No IPv6 on the taps: the host's own router solicitations are not the guest's.
            _ip("netns", "exec", name, "sysctl", "-q", "-w",
                f"net.ipv6.conf.{tap}.disable_ipv6=1")
            _ip("-n", name, "link", "set", tap, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30,
                       check=False)


def _stop(process: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """End one process we started, by its PID: SIGTERM, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(10)


def compile_checkout() -> None:
    """Byte-compile the checkout's sources so the guest (20x slower under TCG) reads .pyc."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "vfpool", "tests"],
                   cwd=REPO, env=env, capture_output=True, timeout=300, check=False)


def kvm_usable() -> str | None:
    """None when /dev/kvm can be opened, else why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as exc:
        return "no /dev/kvm" if isinstance(exc, FileNotFoundError) \
            else f"/dev/kvm: {exc.strerror}"
    os.close(fd)
    return None


# --------------------------------------------------------------------------- one boot
def qemu_argv(cache: Cache, *, accel: str, console: Path, work: Path,
              extra: tuple[str, ...] = ()) -> list[str]:
    results, state = work / "results", work / "state"
    append = " ".join([
        "console=ttyS0", "quiet", "panic=1", "intel_iommu=on", "mitigations=off",
        f"rk.run={GUEST_RUN}", f"rk.results={results}"])
    argv = [str(cache.qemu), *cache.qemu_firmware_args, "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-machine", MACHINE,
            "-accel", TCG_ACCEL if accel == "tcg" else accel,
            "-cpu", "host" if accel == "kvm" else "max",
            "-m", str(GUEST_MEMORY_MB), "-smp", str(GUEST_CPUS),
            "-kernel", str(cache.kernel), "-initrd", str(cache.initramfs), "-append", append,
            "-serial", f"file:{console}",
            # An emulated IOMMU gives the VFs IOMMU groups, so vfio-pci can take them.
            "-device", "intel-iommu,intremap=off,caching-mode=on", *HOLE64]
    for port, (tap, address) in enumerate(zip(TAPS, PF_ADDRESSES, strict=True)):
        slot_function = address.split(":", 2)[2]
        multifunction = ",multifunction=on" if slot_function.endswith(".0") else ""
        argv += ["-netdev", f"tap,id=n{port},ifname={tap},script=no,downscript=no",
                 "-device", f"igb,netdev=n{port},addr={slot_function}{multifunction},"
                            f"mac=52:54:00:00:00:{port + 1:02x}"]
    shares = [("hostroot", Path("/"), True), ("guestlayer", cache.guest_layer, True),
              ("results", results, False), ("state", state, False)]
    for index, (tag, path, readonly) in enumerate(shares):
        argv += ["-fsdev", f"local,id=fs{index},path={path},security_model=none"
                           + (",readonly=on" if readonly else ""),
                 "-device", f"virtio-9p-pci,fsdev=fs{index},mount_tag={tag}"]
    return argv + list(extra)


def write_guest_env(results: Path, *, phase: int, pytest_args: str, serve: bool) -> None:
    values = {"RK_PHASE": str(phase), "RK_CHECKOUT": str(REPO), "RK_HOSTNAME": "rk-guest",
              "RK_PYTEST_ARGS": pytest_args, "RK_SERVE": "1" if serve else ""}
    (results / "guest-env.sh").write_text(
        "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items()))


def _console_text(console: Path) -> str:
    try:
        return console.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def boot(cache: Cache, work: Path, namespace: str, *, phase: int, accel: str,
         accel_note: str, pytest_args: str = "", serve: bool = False,
         timeout: float = BOOT_TIMEOUT, probe: float | None = None,
         tests_within: float | None = None,
         on_started: Callable[[subprocess.Popen[bytes]], None] | None = None,
         qemu_extra: tuple[str, ...] = ()) -> Boot:
    """One boot, to power-off or ``timeout``. With ``probe``, give up (problem set) when the
    guest's user space has not spoken within that many seconds (a KVM that cannot run it);
    with ``tests_within``, when its pytest has not started within that many (a hung guest)."""
    results = work / "results"
    console = work / f"console-{phase}-{accel}.log"
    console.unlink(missing_ok=True)
    (results / f"exit-{phase}").unlink(missing_ok=True)
    write_guest_env(results, phase=phase, pytest_args=pytest_args, serve=serve)
    # The guest is the suite's critical path under `make test` (TCG runs its pytest at a
    # fraction of native speed while two pytest workers share the host's cores), so its
    # threads run at a higher priority where we may set one (root); elsewhere nice says it
    # cannot and runs QEMU as it is.
    argv = ["nice", "-n", str(GUEST_NICENESS), "ip", "netns", "exec", namespace,
            *qemu_argv(cache, accel=accel, console=console, work=work, extra=qemu_extra)]
    stderr_path = work / f"qemu-{phase}-{accel}.stderr"
    started = time.monotonic()
    problem = None
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                   env={**os.environ, **cache.qemu_env})
        try:
            if on_started is not None:
                on_started(process)
            while process.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > timeout:
                    problem = f"boot {phase} did not power off within {timeout:.0f} s; killed"
                    break
                if probe is not None and elapsed > probe and MARKER not in _console_text(console):
                    problem = f"{accel} did not reach the guest's user space in {probe:.0f} s"
                    break
                if tests_within is not None and elapsed > tests_within and \
                        TESTS_MARKER not in _console_text(console):
                    problem = (f"boot {phase} did not start its tests within "
                               f"{tests_within:.0f} s; killed")
                    break
                if accel == "kvm" and b"KVM internal error" in stderr_path.read_bytes():
                    problem = "KVM internal error (see the QEMU output)"
                    break
                time.sleep(0.5)
        finally:
            _stop(process)
    seconds = time.monotonic() - started
    hung = problem is not None
    exit_file = results / f"exit-{phase}"
    pytest_exit = int(exit_file.read_text()) if exit_file.exists() else None
    if problem is None and process.returncode != 0:
        problem = (f"QEMU exited {process.returncode}: "
                   f"{stderr_path.read_text(errors='replace').strip()[-600:]}")
    if problem is None and "rk-init: FAILED" in _console_text(console):
        problem = "the guest's initramfs failed: " + next(
            line for line in _console_text(console).splitlines() if "rk-init: FAILED" in line)
    return Boot(phase, accel, accel_note, seconds, console, process.returncode, pytest_exit,
                problem, TESTS_MARKER in _console_text(console), hung)


# --------------------------------------------------------------------------- the whole run
def read_outcomes(results: Path, phase: int) -> dict[str, Outcome]:
    found: dict[str, Outcome] = {}
    path = results / f"outcomes-{phase}.jsonl"
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        found[item["nodeid"]] = Outcome(item["nodeid"], item["outcome"], item["text"],
                                        item["duration"], phase)
    return found


def run(work: Path, *, phases: tuple[int, ...] = (1, 2), pytest_args: str = "",
        selection: list[str] | None = None, log: Callable[[str], None] = print) -> GuestRun:
    """Fetch (or reuse) the cache, boot the guest once per phase, and collect the outcomes.

    ``selection``: the in-guest test ids to run (None: all of them)."""
    guest_run = GuestRun(work)
    try:
        cache = cache_module.ensure(retry_after=600)
    except cache_module.Unavailable as exc:
        guest_run.unavailable = str(exc)
        return guest_run
    if os.geteuid() != 0:
        guest_run.unavailable = "the guest's taps live in a network namespace, which needs root"
        return guest_run
    for folder in ("results/records", "state"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    wanted = guest_run.results / "selection.txt"
    if selection is None:
        wanted.unlink(missing_ok=True)
    else:
        wanted.write_text("".join(f"{nodeid}\n" for nodeid in selection))
    compile_checkout()
    kvm_problem = kvm_usable()
    accels = [("tcg", f"KVM not tried: {kvm_problem}")] if kvm_problem else [("kvm", "")]
    with network_namespace() as namespace:
        capture = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(CAPTURE),
             str(guest_run.frames), *TAPS, "--seconds", str(BOOT_TIMEOUT * len(phases) + 60)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for_capture(guest_run.frames, capture)
            for phase in phases:
                if phase > 1 and not (guest_run.results / "reboot-ready").exists():
                    guest_run.problems.append(
                        f"boot {phase} was not started: boot 1 did not leave the store ready "
                        "for the reboot scenario (its reboot preparation test failed)")
                    break
                accel, note = accels[0]
                log(f"realkernel: boot {phase} under {accel.upper()}")
                result = boot(cache, work, namespace, phase=phase, accel=accel,
                              accel_note=note, pytest_args=pytest_args,
                              probe=KVM_PROBE_TIMEOUT if accel == "kvm" else None,
                              tests_within=TESTS_START_TIMEOUT if accel == "tcg" else None)
                if accel == "kvm" and result.problem and MARKER not in \
                        _console_text(result.console):
                    accels = [("tcg", f"KVM failed: {result.problem}")]
                    accel, note = accels[0]
                    log(f"realkernel: KVM failed ({result.problem}); falling back to TCG")
                    result = boot(cache, work, namespace, phase=phase, accel=accel,
                                  accel_note=note, pytest_args=pytest_args,
                                  tests_within=TESTS_START_TIMEOUT)
                if accel == "tcg" and result.hung and not result.tests_started:
                    stuck = result.console.with_name(f"console-{phase}-{accel}-hung.log")
                    if result.console.exists():
                        result.console.replace(stuck)
                    guest_run.boots.append(replace(result, console=stuck))
                    guest_run.retried.append(f"boot {phase} hung before its tests "
                                             f"({result.problem}); booted again")
                    log(f"realkernel: {guest_run.retried[-1]}")
                    result = boot(cache, work, namespace, phase=phase, accel="tcg",
                                  accel_note=note, pytest_args=pytest_args,
                                  tests_within=TESTS_START_TIMEOUT)
                guest_run.boots.append(result)
                if result.problem:
                    guest_run.problems.append(result.problem)
                guest_run.outcomes.update(read_outcomes(guest_run.results, phase))
                log(f"realkernel: {result.describe()}")
        finally:
            _stop(capture)
    return guest_run


def _wait_for_capture(frames: Path, capture: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if frames.exists() and '"ready"' in frames.read_text():
            return
        if capture.poll() is not None:
            stderr = capture.stderr.read().decode(errors="replace") if capture.stderr else ""
            raise RuntimeError(f"the frame capture exited {capture.returncode}: {stderr}")
        time.sleep(0.1)
    raise RuntimeError("the frame capture did not start within 30 s")


def serve(work: Path, qemu_extra: tuple[str, ...] = ()) -> None:
    """Development: boot once in serve mode; each ``requests/N.sh`` dropped into the results
    share is run in the guest (output in ``N.out``, exit code in ``N.rc``); ``requests/stop``
    powers it off."""
    cache = cache_module.ensure()
    for folder in ("results/records", "results/requests", "state"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    compile_checkout()
    with network_namespace() as namespace:
        print(f"realkernel: serving; drop scripts into {work}/results/requests/")
        result = boot(cache, work, namespace, phase=1, accel="tcg", accel_note="serve",
                      serve=True, timeout=4 * 3600, qemu_extra=qemu_extra)
        print(result.describe(), result.problem or "")


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vfpool-realkernel"))
    parser.add_argument("--phases", default="1,2")
    parser.add_argument("--pytest-args", default="")
    parser.add_argument("--selection", type=Path,
                        help="a file of in-guest test ids to run, one a line")
    parser.add_argument("--result-json", type=Path, help="write the run's result here")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--qemu-arg", action="append", default=[],
                        help="development: one more QEMU argument (--serve only), e.g. "
                             "--qemu-arg=-trace --qemu-arg=igb_set_vfmailbox")
    options = parser.parse_args(argv)
    # SIGTERM (the session that started us ended): unwind, so QEMU is stopped and the
    # namespace deleted by the finally blocks.
    signal.signal(signal.SIGTERM, _terminated)
    options.work.mkdir(parents=True, exist_ok=True)
    if options.serve:
        serve(options.work, tuple(options.qemu_arg))
        return 0
    selection = [line for line in options.selection.read_text().splitlines() if line] \
        if options.selection else None
    try:
        result = run(options.work, phases=tuple(int(p) for p in options.phases.split(",")),
                     pytest_args=options.pytest_args, selection=selection)
    except Exception:  # the proxies report it; the result file must exist either way
        result = GuestRun(options.work, problems=[f"the harness failed:\n"
                                                  f"{traceback.format_exc()}"])
    if options.result_json:
        temporary = options.result_json.with_suffix(".tmp")
        temporary.write_text(result.to_json())
        os.replace(temporary, options.result_json)
    for outcome in result.outcomes.values():
        print(f"{outcome.outcome:8} boot {outcome.phase} {outcome.nodeid}")
    print(result.summary())
    return 0 if result.outcomes and not result.problems and all(
        o.outcome in ("passed", "skipped", "xfailed") for o in result.outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
