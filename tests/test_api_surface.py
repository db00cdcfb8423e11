"""The Python API's whole surface (issue 13): every public method documented and keyword-only
where it has options (a typo such as ``timout=5`` is a TypeError, not silently ignored);
resize, autostart, dumpconfig, report and events work and agree with the CLI; and a small
client script passes ``mypy --strict`` against the installed package."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import vfpool
from tests.conftest import CliResult
from vfpool.api import AutostartOutcome, AutostartResult, Host, PoolChanged
from vfpool.errors import Conflict, InvalidInput
from vfpool.store.states import PoolState


def public_methods() -> list[tuple[str, Callable[..., object]]]:
    return [(name, member) for name, member in inspect.getmembers(Host, inspect.isfunction)
            if not name.startswith("_")]


def test_every_public_method_has_a_docstring_and_no_catch_all_options() -> None:
    methods = public_methods()
    assert len(methods) >= 20
    for name, method in methods:
        assert inspect.getdoc(method), f"Host.{name} has no docstring"
        kinds = {param.kind for param in inspect.signature(method).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"Host.{name} takes **options"
        assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"Host.{name} takes *args"


def test_a_misspelt_option_is_refused(sim_root: Path) -> None:
    with vfpool.connect(sim=sim_root) as host:
        host.define_pool("a", ["enp5s0f0"], 2)
        with pytest.raises(TypeError, match="timout"):
            host.start_pool("a", timout=5)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="vlna"):
            host.define_pool("b", ["enp5s0f1"], 2, vlna=5)  # type: ignore[call-arg]
        assert [pool.name for pool in host.pools(include_inactive=True)] == ["a"]


def test_resize_autostart_dumpconfig_report_and_events(
        sim_root: Path, cli: Callable[..., CliResult]) -> None:
    with vfpool.connect(sim=sim_root) as host:
        host.define_pool("a", ["enp5s0f0"], 2, mode="netdev", vlan=7, trust=True)
        host.start_pool("a")
        assert host.pf("enp5s0f0").numvfs == 2
        resized = host.resize_pool("a", 4)
        assert isinstance(resized, PoolChanged) and resized.changed == ("0000:05:00.0",)
        assert host.pool("a").vfs.total == 4
        assert host.pf("0000:05:00.0").numvfs == 4
        assert host.set_autostart("a").autostart is True
        assert host.pool("a").autostart is True
        text = host.dumpconfig("a")
        assert text == cli("--sim", str(sim_root), "pool", "dumpconfig", "a").stdout
        assert "vlan = 7" in text and "autostart = true" in text
        other_port = text.replace("0000:05:00.0", "0000:05:00.1")
        copy = host.define_pool_from_toml(other_port, name="a-copy")
        assert (copy.name, copy.state, copy.autostart) == (
            "a-copy", PoolState.INACTIVE, True)
        assert host.dumpconfig("a-copy") == other_port.replace('"a"', '"a-copy"')
        held = host.acquire_many("a", "vm1", 4)
        with pytest.raises(Conflict):
            host.resize_pool("a", 2)  # never below a leased VF
        assert host.pool("a").vfs.total == 4
        document = json.loads(host.report())
        assert [pool["name"] for pool in document["pools"]] == ["a", "a-copy"]
        assert document["events"] == host.events(limit=20)
        assert host.report(output_format="prometheus").startswith("# HELP")
        with pytest.raises(InvalidInput):
            host.report(output_format="xml")
        mine = host.events(owner="vm1", oldest_first=True)
        assert sorted(event["action"] for event in mine) == ["lease.acquire"] * 4 + [
            "lease.reserve"] * 4
        assert {event["lease_id"] for event in mine} == {lease.id for lease in held}
        assert host.events(pf="enp5s0f0", action="pf.resize", since="1h")
        shown = json.loads(cli("--sim", str(sim_root), "events", "--limit", "0",
                               "--json").stdout)
        assert host.events(limit=None) == shown
        for lease in held:
            host.release(lease)
        assert host.set_autostart("a", False).autostart is False
        destroyed = host.destroy_pool("a")
        assert (destroyed.state, destroyed.released, destroyed.lost) == (
            PoolState.INACTIVE, (), ())
        # the copy carried autostart = true from the TOML; "a" no longer does
        assert host.start_autostarted() == [
            AutostartResult("a-copy", AutostartOutcome.STARTED)]


CLIENT = textwrap.dedent('''
    """A VM tool that leases a VF through the Python API."""
    from __future__ import annotations

    import vfpool
    from vfpool.api import Lease, PoolInfo


    def lease_for(vm: str, sim: str) -> tuple[str, int | None]:
        with vfpool.connect(sim=sim) as host:
            host.define_pool("p", ["enp5s0f0"], 2, mode="netdev", vlan=10)
            started: PoolInfo = host.start_pool("p", timeout=10.0)
            free: int = started.vfs.free
            assert free == 2 and host.pf("enp5s0f0").numvfs == 2
            lease: Lease = host.acquire("p", owner=vm, numa_node=0)
            events: list[dict[str, object]] = host.events(owner=vm, limit=10)
            host.release(lease)
            return lease.vf_pci, len(events) or None
''')


# The client alone is checked: vfpool's own modules are read for their types (py.typed), and
# `make lint` checks vfpool itself.
MYPY = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent"]


def test_a_client_script_passes_mypy_strict(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    result = subprocess.run([*MYPY, str(script)], capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.py"
    broken.write_text(CLIENT.replace('numa_node=0', 'numa_node="0"'))
    result = subprocess.run([*MYPY, str(broken)], capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 1 and "numa_node" in result.stdout, result.stdout
