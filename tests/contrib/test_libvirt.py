"""contrib/libvirt: hostdev <interface> XML from the real --json output of sim leases."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult

SCRIPT = (Path(__file__).resolve().parents[2] / "contrib" / "libvirt"
          / "vfpool-libvirt-hostdev.py")


def hostdev(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], input=stdin,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def vfpool(cli: Callable[..., CliResult], sim_root: Path) -> Callable[..., Any]:
    """Run ``vfpool --sim ROOT ARGS --json`` in-process and return the parsed JSON."""
    def run(*args: str) -> Any:
        result = cli("--sim", str(sim_root), *args, "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)
    return run


def assert_interface(element: ET.Element, lease: dict[str, Any]) -> None:
    assert element.tag == "interface"
    assert element.attrib == {"type": "hostdev", "managed": "no"}
    address = element.find("source/address")
    assert address is not None
    domain, bus, rest = lease["vf"]["pci"].split(":")
    slot, function = rest.split(".")
    assert address.attrib == {"type": "pci", "domain": f"0x{domain}", "bus": f"0x{bus}",
                              "slot": f"0x{slot}", "function": f"0x{function}"}
    mac = element.find("mac")
    assert mac is not None and mac.attrib == {"address": lease["mac"]}
    tag = element.find("vlan/tag")
    if lease["vlan"] is None:
        assert element.find("vlan") is None
    else:
        assert tag is not None and tag.attrib == {"id": str(lease["vlan"])}
    alias = element.find("alias")
    assert alias is not None and alias.get("name") == f"ua-vfpool-lease-{lease['id']}"


def test_acquired_leases_become_hostdev_interfaces(vfpool: Callable[..., Any]) -> None:
    vfpool("pool", "define", "p", "--pf", "enp133s0f0", "--vfs", "4", "--vlan", "100")
    vfpool("pool", "start", "p")
    leases = vfpool("lease", "acquire", "p", "--owner", "vm1", "--count", "2", "--vlan", "42")
    result = hostdev(json.dumps(leases))
    assert result.returncode == 0, result.stderr
    devices = ET.fromstring(result.stdout)
    assert devices.tag == "devices" and len(devices) == 2
    for element, lease in zip(devices, leases, strict=True):
        assert lease["vlan"] == 42
        assert_interface(element, lease)
    assert [address.get("function") for address in devices.iter("address")] == ["0x0", "0x1"]
    selected = hostdev(json.dumps(leases), "--lease", str(leases[1]["id"]))
    assert_interface(ET.fromstring(selected.stdout), leases[1])


def test_a_lease_without_vlan_from_lease_show_in_a_file(
        vfpool: Callable[..., Any], tmp_path: Path) -> None:
    vfpool("pool", "define", "plain", "--pf", "enp5s0f1", "--vfs", "2")
    vfpool("pool", "start", "plain")
    (lease,) = vfpool("lease", "acquire", "plain", "--owner", "vm2")
    shown = vfpool("lease", "show", str(lease["id"]))
    path = tmp_path / "lease.json"
    path.write_text(json.dumps(shown))
    result = hostdev("", str(path))
    assert result.returncode == 0, result.stderr
    element = ET.fromstring(result.stdout)
    assert_interface(element, shown)
    assert element.find("source/address").get("bus") == "0x05"  # type: ignore[union-attr]


def test_leases_libvirt_cannot_take_are_refused(vfpool: Callable[..., Any]) -> None:
    vfpool("pool", "define", "tap", "--pf", "enp133s0f1", "--vfs", "2", "--mode", "macvtap")
    vfpool("pool", "start", "tap")
    (lease,) = vfpool("lease", "acquire", "tap", "--owner", "vm3")
    result = hostdev(json.dumps([lease]))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"error: lease {lease['id']} is in macvtap mode; a hostdev "
                             "interface needs a lease of a vfio pool\n")
    vfpool("lease", "release", str(lease["id"]), "--token", lease["token"])
    released = vfpool("lease", "list", "--all")
    result = hostdev(json.dumps(released))
    assert result.stderr == f"error: lease {lease['id']} is released, not active\n"
    assert hostdev("[]").stderr == "error: no lease in the input\n"
    assert hostdev("{not json").returncode == 2


def test_values_are_xml_escaped() -> None:
    lease = {"id": 1, "state": "active", "mode": "vfio", "mac": "a'b\"<c>&d", "vlan": None,
             "vf": {"pci": "0000:af:1f.7"}}
    result = hostdev(json.dumps(lease))
    assert result.returncode == 0, result.stderr
    element = ET.fromstring(result.stdout)
    assert element.find("mac").get("address") == "a'b\"<c>&d"  # type: ignore[union-attr]
    assert element.find("source/address").attrib == {  # type: ignore[union-attr]
        "type": "pci", "domain": "0x0000", "bus": "0xaf", "slot": "0x1f", "function": "0x7"}
