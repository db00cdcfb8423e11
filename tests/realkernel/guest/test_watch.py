"""`vfpool watch` on real uevents from a real udevd: a VF removed through sysfs, then a PCI
rescan. The watch runs in a thread of this process (the CLI command is the same loop around
a pyudev monitor), so no second Python has to start under TCG."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES
from vfpool.host.udev import UdevMonitor
from vfpool.model.pool import VfDefaults
from vfpool.service import pools, watch
from vfpool.service.context import open_context

pytestmark = pytest.mark.usefixtures("baseline")
PF0 = PF_ADDRESSES[0]


def counts(db: str) -> dict[str, Any]:
    with open_context(db=db) as ctx:
        return dict(pools.info(ctx, "w")["vfs"])


def test_watch_follows_a_vf_removed_and_rescanned(db: str) -> None:
    with open_context(db=db) as ctx:
        pools.define(ctx, pools.parse_spec("w", [realhost.pf_netdev(PF0)], 2, "sysfs",
                                           "netdev", VfDefaults()))
        pools.start(ctx, "w")
    victim = realhost.virtfns(PF0)[1]
    handled: list[Any] = []
    errors: list[str] = []
    stop = threading.Event()
    ready = threading.Event()

    class Source(UdevMonitor):
        def start(self) -> None:
            super().start()
            ready.set()

    def run() -> None:
        with open_context(db=db) as ctx:
            watch.watch(ctx, Source(), stop, on_change=handled.append, on_error=errors.append)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(60), "the udev monitor did not start"
        (realhost.DEVICES / victim / "remove").write_text("1\n")
        realhost.wait_for(f"VF {victim} gone from sysfs",
                          lambda: not (realhost.DEVICES / victim).exists())
        realhost.wait_for("the watch marking the removed VF unusable",
                          lambda: counts(db)["unusable"] == 1, timeout=120)
        Path("/sys/bus/pci/rescan").write_text("1\n")
        realhost.wait_for(f"VF {victim} back in sysfs",
                          lambda: (realhost.DEVICES / victim).exists(), timeout=60)
        realhost.wait_for("the watch taking the VF back",
                          lambda: counts(db)["unusable"] == 0, timeout=120)
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert any(victim in str(item) for item in handled), handled
    assert counts(db)["free"] == 2
