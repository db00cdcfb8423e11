"""What a context remembers from its own lease calls (vfpool/service/leases.py, "what a context
remembers"): the VF its last release freed in a pool, which the pool's next acquire reads
under its lock and saves in the reservation; and the leases it acquired, whose release checks
the token without a read. Each test compares with what a context that remembers nothing
does, and turns the guess or the memory wrong to see that it is checked, not trusted.

Default simulated host: 82599 (ixgbe, NUMA 0) at 0000:05:00.0 = enp5s0f0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.leases.test_acquire import IXGBE0, host_vf, preconfigure, start_pool
from vfpool.errors import Conflict, InvalidInput, PermissionDenied
from vfpool.model.vfconfig import VfConfig
from vfpool.service import leases
from vfpool.service.context import Context, FreedVf
from vfpool.sim.host import SimHost

PF = "enp5s0f0"
ADMIN_CONFIG = VfConfig(mac="52:54:00:aa:bb:07", vlan=7, qos=1, spoofchk=False, trust=True)
SAVING = "saving the config of VF"


@contextmanager
def traced(ctx: Context) -> Iterator[list[str]]:
    """The store transactions ``ctx`` runs in the block: ``read`` for a read of the lease
    path, else the write's operation."""
    seen: list[str] = []
    store = ctx.store
    write_rows, read_rows = store.write_rows, store.read_rows

    def write(work: Callable[..., Any], *, operation: str) -> Any:
        seen.append(operation)
        return write_rows(work, operation=operation)

    def read(work: Callable[..., Any], **kwargs: Any) -> Any:
        seen.append("read")
        return read_rows(work, **kwargs)

    store.write_rows, store.read_rows = write, read  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del store.write_rows, store.read_rows


def vf_pci(sim: SimHost, index: int) -> str:
    return str(host_vf(sim, IXGBE0, index).pci)


def saved_config(ctx: Context, lease_id: int) -> dict[str, Any] | None:
    return leases.show_lease(ctx, lease_id).saved_config


# --------------------------------------------------------------------------- the freed VF
def test_the_next_acquire_saves_the_vf_its_release_freed_in_the_reservation(
        ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "p", PF, vfs=2, vlan=10)
    preconfigure(sim, PF, 0, ADMIN_CONFIG)
    with traced(ctx) as first_steps:
        [first] = leases.acquire(ctx, "p", "vm1")
    assert sum(step.startswith(SAVING) for step in first_steps) == 1  # nothing remembered
    leases.release(ctx, first.id, token=first.token)
    assert ctx.freed == {"p": FreedVf(IXGBE0, vf_pci(sim, 0), 0)}
    before = sim.vf_configs(PF)[0]

    with traced(ctx) as steps:
        [second] = leases.acquire(ctx, "p", "vm2")
    assert second.vf.pci == vf_pci(sim, 0)
    assert steps == ["lease acquire from pool p", f"activating lease {second.id}"]
    # What the reservation saved is what the usual step saves: the VF as its release left it.
    assert saved_config(ctx, second.id) == saved_config(ctx, first.id)
    assert sim.vf_configs(PF)[0].vlan == 10
    assert ctx.freed == {}
    assert ctx.locks.holding() == []
    leases.release(ctx, second.id, token=second.token)
    assert sim.vf_configs(PF)[0] == before
    assert (before.mac, before.vlan, before.qos) == ("52:54:00:aa:bb:07", 7, 1)


def test_a_guess_the_reservation_does_not_pick_is_let_go_before_the_set_up(
        ctx: Context, make_ctx: Callable[..., Context], sim: SimHost) -> None:
    # The guess (VF 1) sorts after the VF picked (VF 0): holding its lock while taking VF 0's
    # would break the lock order.
    start_pool(ctx, "p", PF, vfs=2)
    [vf0, vf1] = leases.acquire(ctx, "p", "vm1", count=2)
    leases.release(ctx, vf1.id, token=vf1.token)
    assert ctx.freed["p"].vf_pci == vf_pci(sim, 1)
    other = make_ctx(sim.root)
    leases.release(other, vf0.id, force=True)  # VF 0 is free again, and picked first

    with traced(ctx) as steps:
        [record] = leases.acquire(ctx, "p", "vm2")
    assert record.vf.pci == vf_pci(sim, 0)
    assert sum(step.startswith(SAVING) for step in steps) == 1  # read the usual way
    assert saved_config(ctx, record.id) == saved_config(ctx, vf0.id)
    assert ctx.locks.holding() == []
    assert [lease.vf.pci for lease in leases.list_leases(other)] == [vf_pci(sim, 0)]


def test_a_guessed_vf_another_process_holds_is_not_waited_for(
        ctx: Context, make_ctx: Callable[..., Context], sim: SimHost) -> None:
    start_pool(ctx, "p", PF, vfs=2)
    [vf0, vf1] = leases.acquire(ctx, "p", "vm1", count=2)
    leases.release(ctx, vf1.id, token=vf1.token)
    other = make_ctx(sim.root)
    leases.release(other, vf0.id, force=True)
    patient = make_ctx(sim.root, lock_timeout=30.0)
    patient.freed.update(ctx.freed)  # the guess: VF 1
    holder = make_ctx(sim.root)
    with holder.locks.vf(vf_pci(sim, 1)):
        # Waiting for VF 1's lock would block for 30 s, and fail; the acquire goes on to VF 0.
        [record] = leases.acquire(patient, "p", "vm2")
    assert record.vf.pci == vf_pci(sim, 0)
    assert patient.locks.holding() == []


def test_a_stale_guess_is_checked_not_trusted(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "p", PF, vfs=2)
    # A guess naming a VF the PF does not have, and one naming a PF outside the pool.
    for guess in (FreedVf(IXGBE0, "0000:05:10.6", 40), FreedVf("0000:85:00.0", "x", 0)):
        ctx.freed["p"] = guess
        with traced(ctx) as steps:
            [record] = leases.acquire(ctx, "p", "vm1")
        assert record.vf.pci == vf_pci(sim, 0)
        assert sum(step.startswith(SAVING) for step in steps) == 1
        assert saved_config(ctx, record.id) is not None
        assert ctx.locks.holding() == []
        leases.release(ctx, record.id, token=record.token)


def test_a_count_acquire_does_not_guess(ctx: Context, sim: SimHost) -> None:
    start_pool(ctx, "p", PF, vfs=2)
    [record] = leases.acquire(ctx, "p", "vm1")
    leases.release(ctx, record.id, token=record.token)
    with traced(ctx) as steps:
        records = leases.acquire(ctx, "p", "vm2", count=2)
    assert sum(step.startswith(SAVING) for step in steps) == 2
    assert ctx.freed == {"p": FreedVf(IXGBE0, vf_pci(sim, 0), 0)}  # kept for the next one
    assert [saved_config(ctx, r.id) is not None for r in records] == [True, True]


# --------------------------------------------------------------------------- known leases
def test_a_lease_this_context_acquired_is_released_without_a_read(
        ctx: Context, make_ctx: Callable[..., Context], sim: SimHost) -> None:
    start_pool(ctx, "p", PF, vfs=2)
    [mine] = leases.acquire(ctx, "p", "vm1")
    assert list(ctx.leased) == [mine.id]
    with traced(ctx) as steps:
        leases.release(ctx, mine.id, token=mine.token)
    assert "read" not in steps
    assert ctx.leased == {}
    # A lease acquired elsewhere is read first, as before.
    other = make_ctx(sim.root)
    [theirs] = leases.acquire(other, "p", "vm2")
    with traced(ctx) as steps:
        leases.release(ctx, theirs.id, token=theirs.token)
    assert steps[0] == "read"


def test_a_known_lease_still_needs_its_token(ctx: Context) -> None:
    start_pool(ctx, "p", PF, vfs=1)
    [record] = leases.acquire(ctx, "p", "vm1")
    with traced(ctx) as steps, pytest.raises(PermissionDenied,
                                             match=f"wrong token for lease {record.id}"):
        leases.release(ctx, record.id, token="not-the-token")
    assert steps == []  # refused before any lock or transaction
    assert ctx.locks.holding() == []
    with pytest.raises(InvalidInput, match="needs its --token"):
        leases.release(ctx, record.id)
    assert leases.show_lease(ctx, record.id).state == "active"
    leases.release(ctx, record.id, token=record.token)
    assert leases.show_lease(ctx, record.id).state == "released"


def test_a_known_lease_released_elsewhere_is_refused_as_before(
        ctx: Context, make_ctx: Callable[..., Context], sim: SimHost) -> None:
    start_pool(ctx, "p", PF, vfs=1)
    [record] = leases.acquire(ctx, "p", "vm1")
    leases.release(make_ctx(sim.root), record.id, token=record.token)
    assert record.id in ctx.leased
    with pytest.raises(Conflict, match=f"lease {record.id} is released, not active"):
        leases.release(ctx, record.id, token=record.token)
    assert ctx.locks.holding() == []


def test_the_leases_remembered_are_bounded(ctx: Context,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases, "LEASES_REMEMBERED", 2)
    start_pool(ctx, "p", PF, vfs=3)
    records = leases.acquire(ctx, "p", "vm1", count=3)
    assert list(ctx.leased) == [r.id for r in records[1:]]  # the oldest is forgotten
    with traced(ctx) as steps:
        leases.release(ctx, records[0].id, token=records[0].token)
    assert steps[0] == "read"
    assert leases.show_lease(ctx, records[0].id).state == "released"
