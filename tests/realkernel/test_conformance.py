"""The differential conformance suite's host half: each scenario of scenarios.py runs against
the simulator's intel-82576 profile here, and must give exactly what the real igb gave in the
guest (recorded by guest/test_conformance.py and guest/test_reboot.py). A difference is a
simulator bug: fix vfpool/sim/, not the scenario."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import vfpool
from tests.realkernel.harness import GuestRun
from tests.realkernel.scenarios import (
    SCENARIOS,
    SIM_NIC,
    World,
    prepare_reboot,
    reboot_facts,
)
from vfpool.sim.host import SimHost


def recorded(guest_run: GuestRun, name: str) -> tuple[Any, list[str]]:
    """The scenario's result in the guest, and what it met there beside it (World.notes;
    none in a record of a scenario that keeps no notes)."""
    record = guest_run.record(f"scenario-{name}")
    if record is None:
        pytest.fail(f"the guest left no result for scenario {name}: its in-guest test failed "
                    f"or did not run ({guest_run.summary()})", pytrace=False)
    notes = record.get("notes", [])
    return record["result"], [str(note) for note in notes] if isinstance(notes, list) else []


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def differences(sim: Any, real: Any, path: str = "") -> list[str]:
    """Every leaf where the two worlds differ, with both values: the run's records are gone
    once pytest rotates its temporary folders, so the failure itself must say it all."""
    if isinstance(sim, dict) and isinstance(real, dict):
        found = []
        for key in sorted(set(sim) | set(real), key=str):
            if key not in sim or key not in real:
                found.append(f"{path}/{key}: sim {sim.get(key, '<absent>')!r}, "
                             f"real {real.get(key, '<absent>')!r}")
            else:
                found += differences(sim[key], real[key], f"{path}/{key}")
        return found
    return [] if sim == real else [f"{path or '/'}: sim {sim!r}, real {real!r}"]


def assert_equal(sim: Any, real: Any, said: Sequence[str] = ()) -> None:
    found = differences(plain(sim), real)
    assert not found, "the simulator differs from the real igb:\n" + "\n".join(found) + "".join(
        f"\nin the guest: {note}" for note in said)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulator_matches_the_real_igb(name: str, guest_run: GuestRun, tmp_path: Path) -> None:
    real, notes = recorded(guest_run, name)
    sim = SimHost.create(tmp_path / "host", [SIM_NIC])
    assert_equal(SCENARIOS[name](World(sim)), real, notes)


def test_simulator_reboot_matches_the_real_reboot(guest_run: GuestRun, tmp_path: Path) -> None:
    real, notes = recorded(guest_run, "reboot")
    root = tmp_path / "host"
    sim = SimHost.create(root, [SIM_NIC])
    with vfpool.connect(sim=root) as host:
        before = prepare_reboot(World(sim), host)
    sim.reboot()
    assert_equal(reboot_facts(World(SimHost(root)), before), real, notes)
