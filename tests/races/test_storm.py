"""The storm: 32 processes acquire and release while reconcile, report, pool info and pool
resize loop beside them. Every exit is 0, 4 or 5 with one error line, never an internal error;
no VF is ever leased twice; and after the releases and one reconcile every VF is free."""

from __future__ import annotations

import itertools
from collections import defaultdict

from sqlalchemy import select

from tests.races import assert_consistent, live_leases, start_pool, vfpool
from tests.races.storm import storm
from vfpool.service.context import open_context
from vfpool.sim.host import SimHost
from vfpool.store import Lease

WORKERS = 32
ROUNDS = 1


def test_a_storm_of_32_processes(sim: SimHost) -> None:
    root = sim.root
    start_pool(root, "storm", "enp133s0f0", "enp133s0f1", vfs=16, mode="netdev", vlan=42)
    before = {index: config for index, config in sim.vf_configs("enp133s0f0").items()}

    result = storm(root, "storm", workers=WORKERS, rounds=ROUNDS)

    unexpected = [call.describe() for call in result.unexpected]
    assert not unexpected, "\n".join(unexpected)
    acquires = result.of("acquire")
    assert len(acquires) == WORKERS * ROUNDS
    assert sum(call.returncode == 0 for call in acquires) > 0
    assert all(call.returncode == 0 for call in result.of("release")), \
        [call.describe() for call in result.of("release") if call.returncode]
    assert {call.kind for call in result.calls} >= {"reconcile", "report", "info", "resize"}

    # No VF was ever leased twice: per VF, each lease ended before the next began.
    with open_context(sim=root) as ctx:
        history = ctx.store.read(lambda session: list(session.scalars(
            select(Lease).order_by(Lease.id))))
    by_vf: dict[str, list[Lease]] = defaultdict(list)
    for lease in history:
        by_vf[lease.vf_pci].append(lease)
    for vf, held in by_vf.items():
        for earlier, later in itertools.pairwise(held):
            assert earlier.released_at is not None and earlier.released_at <= later.created_at, \
                f"VF {vf}: lease {earlier.id} still held when lease {later.id} began"
    assert len(history) == len(result.leases)

    assert vfpool(root, "reconcile").returncode == 0
    assert live_leases(root) == []
    assert_consistent(root)
    info = vfpool(root, "pool", "info", "storm", "--json").json()
    assert info["vfs"]["free"] == info["vfs"]["total"] > 0
    assert info["vfs"]["unusable"] == 0
    # Released VFs carry their saved config again.
    after = sim.vf_configs("enp133s0f0")
    assert {index: after[index] for index in before if index in after} == \
        {index: config for index, config in before.items() if index in after}
