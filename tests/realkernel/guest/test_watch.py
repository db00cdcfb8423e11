"""`vfpool watch` on real uevents from a real udevd: a PF (and with it its VFs) removed
through sysfs, a PCI rescan, and the pool started again. The watch runs in a thread of this
process (the CLI command is the same loop around a pyudev monitor), so no second Python has to
start under TCG."""

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
PF1 = PF_ADDRESSES[1]


def counts(db: str) -> dict[str, Any]:
    with open_context(db=db) as ctx:
        return pools.info(ctx, "w").vfs.as_dict()


def test_watch_follows_a_pf_removed_rescanned_and_restarted(db: str) -> None:
    """A VF has no `remove` attribute on this kernel (pci_dev_hp_attrs_are_visible() hides it
    for virtual functions: writing it is EACCES), so the hot-unplug is the PF's, which takes
    its VFs with it; a rescan brings the PF back with no VFs, and `pool start` the VFs."""
    with open_context(db=db) as ctx:
        pools.define(ctx, pools.parse_spec("w", [realhost.pf_netdev(PF1)], 2, "sysfs",
                                           "vfio", VfDefaults()))
        pools.start(ctx, "w")
    vfs = realhost.virtfns(PF1)
    assert len(vfs) == 2 and not (realhost.DEVICES / vfs[0] / "remove").exists()
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
        (realhost.DEVICES / PF1 / "remove").write_text("1\n")
        realhost.wait_for(f"PF {PF1} and its VFs gone from sysfs", lambda: not any(
            (realhost.DEVICES / bdf).exists() for bdf in [PF1, *vfs]))
        realhost.wait_for("the watch marking both VFs unusable",
                          lambda: counts(db)["unusable"] == 2, timeout=120)
        Path("/sys/bus/pci/rescan").write_text("1\n")
        realhost.wait_for(f"PF {PF1} back with igb", lambda: realhost.driver(PF1) == "igb")
        assert realhost.numvfs(PF1) == 0  # the VFs do not come back by themselves
        assert counts(db)["unusable"] == 2
        realhost.wait_for("the PF's netdev", lambda: realhost.netdevs_of(PF1))
        with open_context(db=db) as ctx:
            pools.start(ctx, "w")
        assert realhost.virtfns(PF1) == vfs  # the same addresses
        realhost.wait_for("the watch taking the VFs back",
                          lambda: counts(db)["unusable"] == 0, timeout=120)
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert any(vfs[0] in str(item) for item in handled), handled
    assert counts(db)["free"] == 2
