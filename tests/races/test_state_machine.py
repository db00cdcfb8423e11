"""A stateful property test over the service layer on a simulated host.

Hypothesis drives a random sequence of define, start, acquire, release, resize, destroy,
reconcile, a reboot (with what vfpool-autostart.service runs after it) and injected faults.
After every step, whatever the step raised:

- each active pool's VF counts add up, with no VF left reserved, and as many leased VFs as
  the pool has active leases;
- no VF is in two live leases;
- every active lease's VF on the host carries that lease's config and driver.

Runs are derandomized so CI is repeatable; ``HYPOTHESIS_PROFILE=explore`` searches anew.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.races import assert_consistent, live_leases
from vfpool.errors import VfpoolError
from vfpool.model.pool import VfDefaults
from vfpool.service import leases, pools, reconcile
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost
from vfpool.store import Lease, Pool

settings.register_profile("ci", max_examples=12, stateful_step_count=18, deadline=None,
                          derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=200, stateful_step_count=40, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = ("a", "b", "c")
# The default sim: an 82599 (ixgbe: sysfs or module parameter) and an X710 (i40e), split by
# ranges too.
PFS = ("enp5s0f0", "enp5s0f1", "enp133s0f0#0-3", "enp133s0f0#4-7", "enp133s0f1")
FAULT_TARGETS = ("sys/bus/pci/devices/0000:05:00.0/sriov_numvfs",
                 "sys/bus/pci/devices/0000:85:00.0/sriov_numvfs",
                 "netlink:enp133s0f0", "netlink:enp5s0f0", "modprobe:ixgbe")


class Pools(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(os.environ["VFPOOL_TEST_TMP"]) / f"sm-{id(self)}"
        self.sim = SimHost.create(self.root, force=True)
        self.ctx: Context = open_context(sim=self.root)
        self.steps = 0

    def teardown(self) -> None:
        self.ctx.close()

    def _try(self, action: str, call: object) -> None:
        """Run a step; a vfpool error is an answer, not a failure (a bug is anything else)."""
        assert callable(call)
        with contextlib.suppress(VfpoolError):
            call()
        self.steps += 1

    # ------------------------------------------------------------------ rules
    @rule(name=st.sampled_from(NAMES), pf=st.sampled_from(PFS), vfs=st.integers(1, 4),
          mode=st.sampled_from(("vfio", "netdev", "macvtap")),
          method=st.sampled_from(("auto", "auto", "module-param")),
          vlan=st.one_of(st.none(), st.integers(1, 4094)), trust=st.sampled_from((None, True)))
    def define(self, name: str, pf: str, vfs: int, mode: str, method: str, vlan: int | None,
               trust: bool | None) -> None:
        spec = pools.parse_spec(name, [pf], vfs, method, mode,
                                VfDefaults(vlan=vlan, trust=trust))
        self._try("define", lambda: pools.define(self.ctx, spec))

    @rule(name=st.sampled_from(NAMES), disrupt=st.booleans())
    def start(self, name: str, disrupt: bool) -> None:
        self._try("start", lambda: pools.start(self.ctx, name, allow_disruption=disrupt,
                                               timeout=0.5))

    @rule(name=st.sampled_from(NAMES), owner=st.sampled_from(("vm1", "vm2")),
          count=st.integers(1, 3), vlan=st.one_of(st.none(), st.integers(1, 4094)))
    def acquire(self, name: str, owner: str, count: int, vlan: int | None) -> None:
        self._try("acquire", lambda: leases.acquire(self.ctx, name, owner, count=count,
                                                    vlan=vlan))

    @precondition(lambda self: bool(live_leases(self.root)))
    @rule(pick=st.integers(0, 10))
    def release(self, pick: int) -> None:
        live = live_leases(self.root)
        lease = live[pick % len(live)]
        self._try("release", lambda: leases.release(self.ctx, lease.id, force=True))

    @rule(name=st.sampled_from(NAMES), vfs=st.integers(1, 5), disrupt=st.booleans())
    def resize(self, name: str, vfs: int, disrupt: bool) -> None:
        self._try("resize", lambda: pools.resize(self.ctx, name, vfs,
                                                 allow_disruption=disrupt, timeout=0.5))

    @rule(name=st.sampled_from(NAMES), force=st.booleans(), keep=st.booleans())
    def destroy(self, name: str, force: bool, keep: bool) -> None:
        self._try("destroy", lambda: pools.destroy(self.ctx, name, force=force,
                                                   keep_vfs=keep, allow_disruption=True))

    @rule(name=st.sampled_from(NAMES))
    def undefine(self, name: str) -> None:
        self._try("undefine", lambda: pools.undefine(self.ctx, name))

    @rule()
    def reconcile(self) -> None:
        self._try("reconcile", lambda: reconcile.reconcile(self.ctx))

    @rule()
    def reboot(self) -> None:
        """A power cycle, then what the boot runs: start the pools that were active, and
        reconcile."""
        self.sim.clear_faults()
        active = [pool.name for pool in pools.list_pools(self.ctx)]
        self.sim.reboot()
        for name in active:
            self._try("start", lambda name=name: pools.start(self.ctx, name, timeout=0.5))
        self._try("reconcile", lambda: reconcile.reconcile(self.ctx))

    @rule(where=st.sampled_from(FAULT_TARGETS),
          kind=st.sampled_from(("errno", "errno", "ignore")))
    def fault(self, where: str, kind: str) -> None:
        if kind == "ignore" and where.startswith("netlink:"):
            kind = "errno"
        self.sim.inject_fault(where, kind=kind,  # type: ignore[arg-type]
                              errno_code=errno.EIO if kind == "errno" else None)

    @rule()
    def clear_faults(self) -> None:
        self.sim.clear_faults()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def counts_add_up(self) -> None:
        def active_by_pool(session: Session) -> dict[str, int]:
            return dict(session.execute(  # type: ignore[arg-type]
                select(Pool.name, func.count(Lease.id)).join(Lease, Lease.pool_id == Pool.id)
                .where(Lease.state == "active").group_by(Pool.name)).all())

        by_pool = self.ctx.store.read(active_by_pool)
        for pool in pools.list_pools(self.ctx):
            vfs = pool.vfs.as_dict()
            assert vfs["total"] == vfs["free"] + vfs["leased"] + vfs["reserved"] + \
                vfs["unusable"], pool
            assert vfs["reserved"] == 0, f"a VF of {pool.name} was left reserved: {vfs}"
            assert vfs["leased"] == by_pool.get(pool.name, 0), (pool.name, vfs, by_pool)
        live = live_leases(self.root)
        assert all(lease.state == "active" for lease in live), \
            [(lease.id, lease.state) for lease in live]

    @invariant()
    def leases_match_the_host(self) -> None:
        assert_consistent(self.root)


@pytest.fixture
def machine_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VFPOOL_TEST_TMP", str(tmp_path))
    monkeypatch.delenv("VFPOOL_SIM", raising=False)
    return tmp_path


def test_the_promises_hold_after_every_step(machine_tmp: Path) -> None:
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    Pools.TestCase.settings = settings.get_profile(profile)
    Pools.TestCase().runTest()
