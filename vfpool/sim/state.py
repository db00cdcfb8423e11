"""The simulated host's persisted state (``sim.json``) and the lock every mutation holds.

What the sysfs tree cannot show lives here: each PF's profile, ports and netdev names, the
counters the kernel keeps (ifindex, IOMMU groups, boots), VF configuration held by the PF
driver, and the injected faults. Concurrent CLI processes see one consistent host because each
operation loads the state under an ``flock`` on ``.sim.lock`` and saves it before unlocking.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vfpool.errors import PermissionDenied
from vfpool.sim import link

STATE_FILE = "sim.json"
STATE_FORMAT = 1
LOCK_FILE = ".sim.lock"


class SimState:
    """``sim.json`` under ``root``: read and changed only through ``locked()``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def path(self) -> Path:
        return self.root / STATE_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    @staticmethod
    def initial(nics: list[dict[str, Any]], netns: str | None) -> dict[str, Any]:
        """The state of a host that has just been built, before its first boot."""
        return {
            "format": STATE_FORMAT,
            "nics": nics,
            "pfs": {},
            "next_ifindex": 2,
            "next_iommu_group": 1,
            "faults": [],
            "vf_config": {},
            "boot_count": 0,
            "netns": netns,
        }

    def write_initial(self, state: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(state))

    @contextmanager
    def locked(self, *, write: bool = True) -> Iterator[dict[str, Any]]:
        """The state under the sim's lock; saved again on the way out unless ``write`` is off
        (readers take a shared lock and never rewrite it)."""
        try:
            lock = open(self.root / LOCK_FILE, "a+")  # noqa: SIM115 - closed below
        except PermissionError:
            raise PermissionDenied(f"the simulated host {self.root} belongs to uid "
                                   f"{self.root.stat().st_uid}; run as that user or as "
                                   "root") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            before = self.path.read_text()
            state: dict[str, Any] = json.loads(before)
            if write:
                # A carrier whose bounce has ended is back before anything else happens.
                link.settle(self.root, state)
            try:
                yield state
            finally:
                after = json.dumps(state, indent=1, sort_keys=True)
                if write and after != before:
                    temporary = self.root / f".{STATE_FILE}.tmp"
                    temporary.write_text(after)
                    os.replace(temporary, self.path)

    def unlocked(self) -> dict[str, Any]:
        """The state as last saved, read without the lock (for waiting on a lock holder)."""
        state: dict[str, Any] = json.loads(self.path.read_text())
        return state

    def copy(self) -> dict[str, Any]:
        """A copy of the state under a shared lock, for tests and `sim show`."""
        with self.locked(write=False) as state:
            return json.loads(json.dumps(state))  # type: ignore[no-any-return]
