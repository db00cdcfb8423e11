"""`watch` and `events --follow` stop on SIGTERM and SIGINT through ``stop_on_signals``; its
handler must never take a lock the interrupted main thread may hold (CI once saw `events
--follow` ignore SIGTERM: the handler's ``Event.set()`` waited for the Event's lock, held by
the same thread inside ``Event.wait()``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# A loop that spends its time inside stop.wait(), as the follow loops do, under a hail of
# SIGTERMs; it prints a heartbeat every 2,000 rounds and clears the stop flag each time.
CHILD = """
import sys, threading
from vfpool.cli.core import stop_on_signals
stop = threading.Event()
with stop_on_signals(stop) as received:
    rounds = 0
    while True:
        if stop.wait(0.0002):
            stop.clear()
        rounds += 1
        if rounds % 2000 == 0:
            print(rounds, len(received), flush=True)
"""
HAIL = 8.0  # seconds of signals; the old handler hung within that here, most runs
STALL = 3.0  # seconds without a heartbeat that count as a hang


def test_a_hail_of_sigterm_never_deadlocks_the_loop_and_each_is_received() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        os.set_blocking(child.stdout.fileno(), False)
        beats = b""
        ready = time.monotonic() + 60
        while not beats:  # the first heartbeat: the child has imported and is looping
            assert time.monotonic() < ready and child.poll() is None, "the child never started"
            time.sleep(0.05)
            beats = child.stdout.read() or b""
        started = last = time.monotonic()
        sent = 0
        while time.monotonic() - started < HAIL:
            for _ in range(10):
                os.kill(child.pid, signal.SIGTERM)
                sent += 1
            time.sleep(0.001)
            data = child.stdout.read()
            if data:
                beats += data
                last = time.monotonic()
            assert time.monotonic() - last < STALL, (
                f"the loop stalled for {STALL:g} s after {sent} SIGTERMs (a deadlock in the "
                "signal handler)")
        assert child.poll() is None, "SIGTERM ended the process instead of setting the flag"
        time.sleep(0.5)
        beats += child.stdout.read() or b""
        rounds, received = beats.split()[-2:]
        assert int(rounds) > 0 and int(received) > 0
    finally:
        child.kill()
        child.wait(timeout=30)
