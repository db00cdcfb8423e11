"""The VF's link state while leased (issue 10): the lease's, else the pool's, else `auto`,
where the driver can set it; and the administrator's setting back on release."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import NO_STORE, only_backend
from vfpool.errors import InvalidInput
from vfpool.model.pool import VfDefaults, from_toml, to_toml
from vfpool.model.vfconfig import VfConfig
from vfpool.service import leases, pools
from vfpool.service.context import Context, open_context
from vfpool.sim.host import SimHost


def _start(ctx: Context, name: str, pf: str, **defaults: object) -> None:
    pools.define(ctx, pools.parse_spec(name, [pf], 2, "auto", "netdev",
                                       VfDefaults(**defaults)))  # type: ignore[arg-type]
    pools.start(ctx, name)


def test_a_vf_left_disabled_is_leased_with_auto_and_disabled_again_after(
        sim: SimHost, ctx: Context) -> None:
    _start(ctx, "p", "enp133s0f0")
    sim.set_vf("enp133s0f0", 0, "link_state", VfConfig(link_state="disable"))
    lease = leases.acquire(ctx, "p", "vm1")[0]
    assert lease.vf.index == 0
    assert sim.vf_configs("enp133s0f0")[0].link_state == "auto"
    leases.release(ctx, lease.id, token=lease.token)
    assert sim.vf_configs("enp133s0f0")[0].link_state == "disable"


def test_the_pool_default_and_the_lease_option(sim: SimHost, ctx: Context) -> None:
    _start(ctx, "p", "enp133s0f0", link_state="enable")
    assert pools.info(ctx, "p").defaults.link_state == "enable"
    first = leases.acquire(ctx, "p", "vm1")[0]
    second = leases.acquire(ctx, "p", "vm2", link_state="disable")[0]
    configs = sim.vf_configs("enp133s0f0")
    assert (configs[first.vf.index].link_state,
            configs[second.vf.index].link_state) == ("enable", "disable")
    with pytest.raises(InvalidInput, match="invalid link state 'up': use one of auto, enable, "
                                           "disable"):
        leases.acquire(ctx, "p", "vm3", link_state="up")


def test_igb_cannot_set_link_state(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("intel-i350")
    with open_context(sim=sim.root) as ctx:
        with pytest.raises(InvalidInput, match=r"driver igb cannot set link_state on its VFs"):
            pools.define(ctx, pools.parse_spec("i", ["enp5s0f0"], 2, "auto", "netdev",
                                               VfDefaults(link_state="enable")))
        _start(ctx, "i", "enp5s0f0")
        # Not asked for: igb's VFs are leased without touching a setting it does not have.
        lease = leases.acquire(ctx, "i", "vm1")[0]
        assert leases.show_lease(ctx, lease.id).applied_config["link_state"] is None
        with pytest.raises(InvalidInput, match="driver igb cannot set link_state"):
            leases.acquire(ctx, "i", "vm2", link_state="enable")
        assert [row.owner for row in leases.list_leases(ctx)] == ["vm1"]


@only_backend(NO_STORE)
def test_link_state_round_trips_through_toml() -> None:
    spec = pools.parse_spec("p", ["0000:85:00.0"], 2, "auto", "netdev",
                            VfDefaults(vlan=5, link_state="disable"))
    text = to_toml(spec)
    assert 'link_state = "disable"' in text
    assert from_toml(text, "p.toml") == spec
    with pytest.raises(InvalidInput, match="'link_state' must be a string"):
        from_toml(text.replace('"disable"', "2"), "p.toml")
