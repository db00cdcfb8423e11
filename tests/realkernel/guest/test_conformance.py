"""The differential suite's real half: each scenario of tests/realkernel/scenarios.py runs
against the real igb here and leaves its result for the host, which runs the same scenario
against the simulator's intel-82576 profile and requires the two to be equal."""

from __future__ import annotations

import pytest

from tests.realkernel.guest import realhost
from tests.realkernel.scenarios import SCENARIOS, World
from vfpool.host.kernel import RealKernel


@pytest.mark.usefixtures("baseline")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_on_the_real_igb(name: str) -> None:
    world = World(RealKernel())
    result = SCENARIOS[name](world)
    realhost.record(f"scenario-{name}", {"result": result, "notes": world.notes})
    assert result, f"scenario {name} observed nothing"
