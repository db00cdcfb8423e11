"""The QEMU command line is data: `build_qemu_argv`, `nic_args`, `device_add_arguments` and
`handoff_record` against golden files (tests/data/golden/argv-*; `--regenerate-output` rewrites
them), and `vfpool vm args` on a simulated host, where no kernel object is needed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.qemu.conftest import MACVTAP_MAC, NETDEV_MAC, VFIO_MAC, SimLeases
from vfpool.model.qemu import (
    NicHandoff,
    build_qemu_argv,
    device_add_arguments,
    handoff_record,
    nic_args,
    qemu_escape,
)

Golden = Callable[[str, str], None]

VFIO = NicHandoff(lease_id=7, mode="vfio", vf_pci="0000:85:02.0", mac="52:54:00:00:00:07")
MACVTAP = NicHandoff(lease_id=8, mode="macvtap", vf_pci="0000:85:02.1", mac="52:54:00:00:00:08",
                     netdev="enp133s0f0v1", macvtap="vfpmvt8", tap_fd=5)
MACVTAP_VHOST = NicHandoff(lease_id=9, mode="macvtap", vf_pci="0000:85:02.2",
                           mac="52:54:00:00:00:09", netdev="enp133s0f0v2", macvtap="vfpmvt9",
                           tap_fd=6, vhost_fd=7)
MACVTAP_UNOPENED = NicHandoff(lease_id=10, mode="macvtap", vf_pci="0000:85:02.3",
                              mac="52:54:00:00:00:0a", netdev="enp133s0f0v3", macvtap="vfpmvt10")
NETDEV = NicHandoff(lease_id=11, mode="netdev", vf_pci="0000:05:10.0", mac="52:54:00:00:00:0b",
                    netdev="enp5s0f0v0")
QMP = "/run/vfpool/vm1/qmp.sock"


def lines(argv: list[str]) -> str:
    """One argument a line: a diff of two command lines then shows the argument that moved."""
    return "".join(f"{arg}\n" for arg in argv)


def as_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


ARGV_CASES = {
    "vfio": dict(nics=[VFIO], extra=[]),
    "macvtap": dict(nics=[MACVTAP], extra=[]),
    "macvtap-vhost": dict(nics=[MACVTAP_VHOST], extra=[]),
    "macvtap-placeholder": dict(nics=[MACVTAP_UNOPENED], extra=[]),
    "netdev": dict(nics=[NETDEV], extra=["-m", "1G"]),
    "mixed": dict(nics=[VFIO, MACVTAP, MACVTAP_VHOST, NETDEV],
                  extra=["-m", "1G", "-accel", "kvm", "disk.img"]),
}


@pytest.mark.parametrize("case", sorted(ARGV_CASES))
def test_build_qemu_argv(case: str, golden: Golden) -> None:
    argv = build_qemu_argv(name="vm1", qmp_socket=QMP, **ARGV_CASES[case])  # type: ignore[arg-type]
    golden(f"argv-{case}.txt", lines(argv))


def test_build_qemu_argv_puts_vfpool_first_and_the_callers_arguments_last() -> None:
    argv = build_qemu_argv(name="vm1", qmp_socket=QMP, nics=[VFIO, MACVTAP],
                           extra=["-device", "e1000"], binary="/opt/qemu/bin/qemu-kvm")
    assert argv[:5] == ["/opt/qemu/bin/qemu-kvm", "-name", "vm1", "-qmp",
                        f"unix:{QMP},server=on,wait=off"]
    assert argv[-2:] == ["-device", "e1000"]
    assert argv[5:-2] == nic_args(VFIO) + nic_args(MACVTAP)


def test_build_qemu_argv_doubles_commas(golden: Golden) -> None:
    argv = build_qemu_argv(name="tenant,a vm", qmp_socket="/run/a,b/qmp.sock", nics=[VFIO],
                           extra=["-m", "1G"])
    assert argv[1:5] == ["-name", "tenant,,a vm", "-qmp",
                         "unix:/run/a,,b/qmp.sock,server=on,wait=off"]
    golden("argv-comma-name.txt", lines(argv))


@pytest.mark.parametrize(("value", "escaped"), [("vm1", "vm1"), ("a,b", "a,,b"),
                                                (",", ",,"), ("a,,b", "a,,,,b"), ("", "")])
def test_qemu_escape(value: str, escaped: str) -> None:
    assert qemu_escape(value) == escaped


def test_nic_args_netdev_gives_qemu_nothing() -> None:
    assert nic_args(NETDEV) == []


def test_nic_args_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown hand-off mode 'sriov'"):
        nic_args(NicHandoff(1, "sriov", "0000:05:10.0", "52:54:00:00:00:01"))


def test_device_add_arguments(golden: Golden) -> None:
    document: dict[str, Any] = {}
    for label, nic, bus in (("vfio", VFIO, None), ("vfio-bus", VFIO, "rp1"),
                            ("macvtap", MACVTAP, None), ("macvtap-bus", MACVTAP, "rp1"),
                            ("macvtap-vhost-bus", MACVTAP_VHOST, "pcie.0")):
        netdev, device = device_add_arguments(nic, bus)
        document[label] = {"netdev_add": netdev, "device_add": device}
    assert document["vfio"]["netdev_add"] is None
    assert "bus" not in document["macvtap"]["device_add"]
    assert document["macvtap-bus"]["device_add"]["bus"] == "rp1"
    # The hotplugged NIC gets the same id `vm detach` removes and the fd name `getfd` registers.
    assert document["macvtap"]["netdev_add"] == {"type": "tap", "id": "vfpool-8-net",
                                                 "fd": "vfpool-8-tap"}
    golden("argv-device-add.json", as_json(document))


def test_device_add_arguments_netdev_mode() -> None:
    with pytest.raises(ValueError, match="a lease in netdev mode has nothing to hand to QEMU"):
        device_add_arguments(NETDEV, "rp1")


def test_handoff_record(golden: Golden) -> None:
    records = [handoff_record(nic) for nic in (VFIO, MACVTAP, MACVTAP_VHOST, MACVTAP_UNOPENED,
                                               NETDEV)]
    assert [record["device_id"] for record in records] == [
        "vfpool-7", "vfpool-8", "vfpool-9", "vfpool-10", None]
    assert all(record["argv"] == nic_args(nic) for record, nic in zip(
        records, (VFIO, MACVTAP, MACVTAP_VHOST, MACVTAP_UNOPENED, NETDEV), strict=True))
    golden("argv-handoff.json", as_json(records))


# --------------------------------------------------------------------------- vm args
def test_vm_args_json(sim_leases: SimLeases, cli: Callable[..., CliResult],
                      golden: Golden) -> None:
    ids = sim_leases.lease_ids
    result = cli("--sim", str(sim_leases.root), "vm", "args", str(ids["vfio"]),
                 str(ids["macvtap"]), str(ids["netdev"]), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    records = json.loads(result.stdout)
    assert [record["mac"] for record in records] == [VFIO_MAC, MACVTAP_MAC, NETDEV_MAC]
    assert [record["mode"] for record in records] == ["vfio", "macvtap", "netdev"]
    assert records[1]["macvtap"] == f"vfpmvt{ids['macvtap']}"
    golden("argv-vm-args.json", result.stdout)


def test_vm_args_text(sim_leases: SimLeases, cli: Callable[..., CliResult],
                      golden: Golden) -> None:
    ids = sim_leases.lease_ids
    result = cli("--sim", str(sim_leases.root), "vm", "args", str(ids["vfio"]),
                 str(ids["macvtap"]), str(ids["netdev"]))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[2] == f"enp5s0f0v0 {NETDEV_MAC}"
    golden("argv-vm-args.txt", result.stdout)


def test_vm_args_makes_no_macvtap(sim_leases: SimLeases, cli: Callable[..., CliResult]) -> None:
    """`vm args` only shows what `vm launch` would make; the lease records no macvtap."""
    from vfpool.service.context import open_context
    from vfpool.store import Lease

    result = cli("--sim", str(sim_leases.root), "vm", "args", str(sim_leases.lease_ids["macvtap"]))
    assert result.exit_code == 0, result.stderr
    with open_context(sim=sim_leases.root) as ctx, ctx.store.session() as session:
        lease = session.get_one(Lease, sim_leases.lease_ids["macvtap"])
        assert "macvtap" not in (lease.applied_config or {})
