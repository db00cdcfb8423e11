"""The CLI matrix for `vfpool pool` (issue 3): valid, invalid and compare cases.

Each case runs `vfpool --sim {sim} ARGS` against a fresh simulated host with its own database:
the default host (a dual-port 82599 and a dual-port X710) unless the case names NIC profiles.
A case may first write files under {tmp} and run setup commands (each must exit 0), such as
defining and starting a pool, injecting a fault or rebooting the host. Invalid cases assert
the exact error line; compare cases assert stdout against tests/data/golden/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from tests.cli.test_matrix import Case, _fill, check_result, compare, invalid, valid
from tests.conftest import CliResult
from vfpool.cli.main import app
from vfpool.sim.host import SimHost


@dataclass(frozen=True)
class PoolCase:
    case: Case
    setup: tuple[tuple[str, ...], ...] = ()
    nics: tuple[str, ...] = ()  # NIC profiles of the host; () = the default host
    files: tuple[tuple[str, str], ...] = ()  # (name under {tmp}, text), written first

    # What the meta-test in test_matrix.py reads from every matrix module's CASES.
    @property
    def name(self) -> str:
        return self.case.name

    @property
    def args(self) -> tuple[str, ...]:
        return self.case.args


def given(case: Case, *setup: tuple[str, ...], nics: tuple[str, ...] = (),
          files: tuple[tuple[str, str], ...] = ()) -> PoolCase:
    return PoolCase(case, setup, nics, files)


def plain(case: Case) -> PoolCase:
    return PoolCase(case)


def define(name: str, *pfs: str, vfs: int = 4, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    pf_args = [arg for pf in pfs for arg in ("--pf", pf)]
    return ("pool", "define", name, *pf_args, "--vfs", str(vfs), *extra)


def start(name: str, *extra: str) -> tuple[str, ...]:
    return ("pool", "start", name, *extra)


def fault(target: str, *kind: str) -> tuple[str, ...]:
    return ("sim", "fault", "{sim}", target, *kind)


def expect(exit_code: int, *args: str) -> tuple[str, ...]:
    """A setup step that must fail with ``exit_code`` (a step without this must exit 0)."""
    return (f"exit={exit_code}", *args)


REBOOT = ("sim", "reboot", "{sim}")
NUMVFS0 = "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs"
A = define("a", "enp5s0f0")
B = define("b", "enp133s0f1#8-15", vfs=2, extra=("--mode", "netdev"))
CX3 = ("mellanox-cx3", "intel-82599")
I350 = ("intel-i350",)
NAME_RULE = ("use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
FILE = ('name = "filed"\nvfs = 2\nmode = "netdev"\nautostart = true\n'
        'pf = [{ pci = "enp5s0f1" }, { pci = "0000:85:00.0", range = "0-7" }]\n'
        '[defaults]\nvlan = 7\nspoofchk = true\n')
EIO_MESSAGE = ("writing sriov_numvfs=4 on PF 0000:05:00.0 (enp5s0f0) failed with EIO "
               "(Input/output error): the device or its firmware failed; check `dmesg`, then "
               "retry")

CASES = [
    # --- define
    plain(valid("define", *A, stdout_has=(
        "defined pool a (inactive); start it with `vfpool pool start a`",))),
    plain(compare("define-json", "pool-define.json", *define(
        "tenant-a", "enp5s0f0", "enp133s0f1#8-15", vfs=4,
        extra=("--mode", "macvtap", "--vlan", "100", "--qos", "2", "--no-trust", "--spoofchk",
               "--max-tx-rate", "1000", "--mtu", "9000", "--json")))),
    plain(valid("define-by-pci", *define("a", "0000:85:00.1"), stdout_has=("defined pool a",))),
    plain(valid("define-name-64", *define("a" * 64, "enp5s0f0"), stdout_has=("a" * 64,))),
    given(valid("define-disjoint-range", *define("high", "enp133s0f1#8-15"),
                stdout_has=("defined pool high",)), define("low", "enp133s0f1#0-7")),
    plain(valid("define-method-module-param-ixgbe",
                *define("a", "enp5s0f0", extra=("--method", "module-param")),
                stdout_has=("defined pool a",))),
    given(valid("define-mlx4-auto", *define("m", "enp5s0"), stdout_has=("defined pool m",)),
          nics=CX3),
    given(valid("define-igb", *define("i", "enp5s0f0", "enp5s0f1", vfs=7),
                stdout_has=("defined pool i",)), nics=("intel-82576",)),
    given(valid("define-file", "pool", "define", "--file", "{tmp}/p.toml",
                stdout_has=("defined pool filed (inactive)",)), files=(("p.toml", FILE),)),
    given(compare("define-file-dumpconfig", "pool-dumpconfig-file.toml", "pool", "dumpconfig",
                  "filed"),
          ("pool", "define", "--file", "{tmp}/p.toml"), files=(("p.toml", FILE),)),
    given(valid("define-file-rename", "pool", "define", "renamed", "--file", "{tmp}/p.toml",
                stdout_has=("defined pool renamed (inactive)",)), files=(("p.toml", FILE),)),
    # define: exit 2
    plain(invalid("define-bad-name", 2, f"error: invalid pool name 'a b': {NAME_RULE}",
                  *define("a b", "enp5s0f0"))),
    plain(invalid("define-name-65", 2, f"error: invalid pool name '{'a' * 65}': {NAME_RULE}",
                  *define("a" * 65, "enp5s0f0"))),
    plain(invalid("define-name-leading-dot", 2, f"error: invalid pool name '.a': {NAME_RULE}",
                  *define(".a", "enp5s0f0"))),
    plain(invalid("define-name-slash", 2, f"error: invalid pool name 'a/b': {NAME_RULE}",
                  *define("a/b", "enp5s0f0"))),
    plain(invalid("define-missing-pf", 2,
                  "error: invalid --pf 'enp9s0f0': no PF named 'enp9s0f0': no such PCI address "
                  "or network interface on this host", *define("a", "enp9s0f0"))),
    plain(invalid("define-missing-bdf", 2,
                  "error: invalid --pf '0000:99:00.0': no PCI device 0000:99:00.0 on this host",
                  *define("a", "0000:99:00.0"))),
    plain(invalid("define-not-sriov", 2,
                  "error: 0000:00:1f.6 (eno1) is not SR-IOV capable (driver e1000e)",
                  *define("a", "eno1"))),
    plain(invalid("define-virtual-netdev", 2,
                  "error: interface lo is not a PCI device, so it cannot be a PF",
                  *define("a", "lo"))),
    given(invalid("define-vf-as-pf", 2,
                  "error: 0000:05:10.0 (enp5s0f0v0) is a VF of PF 0000:05:00.0, not a PF",
                  *define("b", "enp5s0f0v0")),
          define("a", "enp5s0f0", vfs=2, extra=("--mode", "netdev")), start("a")),
    plain(invalid("define-bad-pf-text", 2,
                  "error: invalid PF '../x': expected a PCI address such as 0000:05:00.0 or an "
                  "interface name such as enp5s0f0", *define("a", "../x"))),
    plain(invalid("define-vfs-above-totalvfs", 2,
                  "error: PF 0000:05:00.0 (enp5s0f0) supports at most 63 VFs; 64 requested",
                  *define("a", "enp5s0f0", vfs=64))),
    plain(invalid("define-vfs-above-range", 2,
                  "error: --vfs 9 does not fit VF range 8-15 of PF 0000:85:00.1 (enp133s0f1), "
                  "which holds 8 VFs", *define("a", "enp133s0f1#8-15", vfs=9))),
    plain(invalid("define-range-past-totalvfs", 2,
                  "error: VF range 60-64 of PF 0000:85:00.1 (enp133s0f1) goes past its 64 VFs "
                  "(0-63)", *define("a", "enp133s0f1#60-64", vfs=1))),
    plain(invalid("define-range-reversed", 2,
                  "error: invalid VF range '7-3' in 'enp5s0f0#7-3': 7 is above 3",
                  *define("a", "enp5s0f0#7-3", vfs=1))),
    plain(invalid("define-range-garbage", 2,
                  "error: invalid VF range 'x' in 'enp5s0f0#x': expected START-END, such as "
                  "0-7", *define("a", "enp5s0f0#x", vfs=1))),
    plain(invalid("define-pf-twice", 2,
                  "error: PF 0000:05:00.0 (enp5s0f0) is listed twice (enp5s0f0 and "
                  "0000:05:00.0); give each PF once", *define("a", "enp5s0f0", "0000:05:00.0"))),
    plain(invalid("define-vfs-0", 2, "error: --vfs must be 1-65535, not 0",
                  *define("a", "enp5s0f0", vfs=0))),
    plain(invalid("define-vlan-0", 2, "error: VLAN 0 is outside 1-4094",
                  *define("a", "enp5s0f0", extra=("--vlan", "0")))),
    plain(invalid("define-vlan-4095", 2, "error: VLAN 4095 is outside 1-4094",
                  *define("a", "enp5s0f0", extra=("--vlan", "4095")))),
    plain(invalid("define-vlan-not-a-number", 2,
                  "error: Invalid value for '--vlan': Input should be a valid integer, unable "
                  "to parse string as an integer",
                  *define("a", "enp5s0f0", extra=("--vlan", "abc")))),
    plain(invalid("define-qos-8", 2, "error: QoS 8 is outside 0-7",
                  *define("a", "enp5s0f0", extra=("--vlan", "5", "--qos", "8")))),
    plain(invalid("define-qos-negative", 2, "error: QoS -1 is outside 0-7",
                  *define("a", "enp5s0f0", extra=("--vlan", "5", "--qos", "-1")))),
    plain(invalid("define-qos-without-vlan", 2, "error: QoS needs a VLAN: give --vlan too",
                  *define("a", "enp5s0f0", extra=("--qos", "3")))),
    plain(invalid("define-min-above-max-rate", 2,
                  "error: min TX rate 200 Mbps is above max TX rate 100 Mbps",
                  *define("a", "enp5s0f0",
                          extra=("--min-tx-rate", "200", "--max-tx-rate", "100")))),
    plain(invalid("define-mtu-67", 2, "error: MTU 67 is outside 68-9216",
                  *define("a", "enp5s0f0", extra=("--mtu", "67")))),
    plain(invalid("define-mtu-9217", 2, "error: MTU 9217 is outside 68-9216",
                  *define("a", "enp5s0f0", extra=("--mtu", "9217")))),
    plain(invalid("define-bad-mode", 2,
                  "error: invalid mode 'tap': use one of vfio, macvtap, netdev",
                  *define("a", "enp5s0f0", extra=("--mode", "tap")))),
    plain(invalid("define-bad-method", 2,
                  "error: invalid method 'ioctl': use one of auto, sysfs, module-param",
                  *define("a", "enp5s0f0", extra=("--method", "ioctl")))),
    given(invalid("define-mlx4-sysfs", 2,
                  "error: driver mlx4_core cannot resize through sysfs; use --method "
                  "module-param", *define("m", "enp5s0", extra=("--method", "sysfs"))),
          nics=CX3),
    plain(invalid("define-i40e-module-param", 2,
                  "error: driver i40e has no module parameter for VFs; use --method sysfs",
                  *define("a", "enp133s0f0", extra=("--method", "module-param")))),
    plain(invalid("define-x710-min-tx-rate", 2,
                  "error: driver i40e cannot set min_tx_rate on its VFs (PF 0000:85:00.0 "
                  "(enp133s0f0))", *define("a", "enp133s0f0", extra=("--min-tx-rate", "10")))),
    given(invalid("define-igb-above-7", 2,
                  "error: driver igb allows at most 7 VFs per PF; PF 0000:05:00.0 (enp5s0f0) "
                  "would need 8", *define("i", "enp5s0f0", vfs=8)),
          nics=("intel-i350:totalvfs=8",)),
    plain(invalid("define-no-pf", 2, "error: a pool needs at least one --pf",
                  "pool", "define", "a", "--vfs", "1")),
    plain(invalid("define-no-vfs", 2, "error: missing --vfs N: how many VFs per PF",
                  "pool", "define", "a", "--pf", "enp5s0f0")),
    plain(invalid("define-no-name", 2, "error: missing pool NAME (or give --file)",
                  "pool", "define", "--pf", "enp5s0f0", "--vfs", "1")),
    given(invalid("define-file-and-flags", 2,
                  "error: give either --file or --pf/--vfs, not both",
                  "pool", "define", "--file", "{tmp}/p.toml", "--vfs", "3"),
          files=(("p.toml", FILE),)),
    plain(invalid("define-file-missing", 2,
                  "error: cannot read {tmp}/nope.toml: No such file or directory",
                  "pool", "define", "--file", "{tmp}/nope.toml")),
    given(invalid("define-file-unknown-key", 2, "error: {tmp}/p.toml: unknown key 'size'",
                  "pool", "define", "--file", "{tmp}/p.toml"),
          files=(("p.toml", 'name = "p"\nvfs = 1\nsize = 2\npf = [{ pci = "enp5s0f0" }]\n'),)),
    given(invalid("define-file-bad-vlan", 2, "error: VLAN 5000 is outside 1-4094",
                  "pool", "define", "--file", "{tmp}/p.toml"),
          files=(("p.toml", FILE.replace("vlan = 7", "vlan = 5000")),)),
    # define: exit 4
    given(invalid("define-pf-in-pool", 4,
                  "error: PF 0000:05:00.0 (enp5s0f0) is already in pool 'a'",
                  *define("b", "0000:05:00.0")), A),
    given(invalid("define-whole-pf-after-range", 4,
                  "error: PF 0000:85:00.1 (enp133s0f1) is already in pool 'b'",
                  *define("c", "enp133s0f1", vfs=1)), B),
    given(invalid("define-range-overlap", 4,
                  "error: VF range 4-9 of PF 0000:85:00.1 (enp133s0f1) overlaps range 0-7 of "
                  "pool 'low'", *define("x", "enp133s0f1#4-9", vfs=2)),
          define("low", "enp133s0f1#0-7")),
    given(invalid("define-name-exists", 4, "error: pool 'a' already exists",
                  *define("a", "enp5s0f1")), A),
    given(invalid("define-igb-scalar-conflict", 4,
                  "error: driver igb's max_vfs parameter sizes every igb port alike, but pool "
                  "'a' needs 3 VFs per PF and pool 'b' needs 2",
                  *define("b", "enp5s0f1", vfs=2, extra=("--method", "module-param"))),
          define("a", "enp5s0f0", vfs=3, extra=("--method", "module-param")), nics=I350),
    given(invalid("define-file-conflict", 4,
                  "error: PF 0000:05:00.1 (enp5s0f1) is already in pool 'x'",
                  "pool", "define", "--file", "{tmp}/p.toml"),
          define("x", "enp5s0f1"), files=(("p.toml", FILE),)),
    # --- dumpconfig
    given(compare("dumpconfig", "pool-dumpconfig.toml", "pool", "dumpconfig", "tenant-a"),
          define("tenant-a", "enp5s0f0", "enp5s0f1#8-15",
                 extra=("--mode", "macvtap", "--vlan", "100", "--qos", "2", "--trust",
                        "--no-spoofchk", "--max-tx-rate", "1000",
                        "--mtu", "9000")), ("pool", "autostart", "tenant-a")),
    given(compare("dumpconfig-mlx4", "pool-dumpconfig-mlx4.toml", "pool", "dumpconfig", "m"),
          define("m", "enp5s0#0-15", vfs=8, extra=("--mode", "netdev")), nics=CX3),
    plain(invalid("dumpconfig-unknown", 3, "error: no pool named 'nope'",
                  "pool", "dumpconfig", "nope")),
    plain(invalid("dumpconfig-no-name", 2, "error: Missing argument 'NAME'.",
                  "pool", "dumpconfig")),
    # --- start
    given(valid("start", *start("a"), stdout_has=("started pool a: 4 VFs, 4 free\n",)), A),
    given(compare("start-json", "pool-start.json", *start("b", "--json")), B),
    given(valid("start-already-active", *start("a"),
                stdout_has=("pool a is already active; nothing to do\n",)), A, start("a")),
    given(valid("start-after-keep-vfs", *start("a"), stdout_has=("started pool a",)),
          A, start("a"), ("pool", "destroy", "a", "--keep-vfs")),
    given(valid("start-shared-pf", *start("low"), stdout_has=("started pool low: 4 VFs",)),
          define("low", "enp133s0f1#0-7"), B, start("b")),
    plain(invalid("start-unknown", 3, "error: no pool named 'nope'", *start("nope"))),
    plain(invalid("start-no-name", 2, "error: give a pool NAME or --autostarted",
                  "pool", "start")),
    given(invalid("start-name-and-autostarted", 2, "error: give a pool NAME or --autostarted",
                  *start("a", "--autostarted")), A),
    given(invalid("start-eio", 1, f"error: {EIO_MESSAGE}", *start("a")),
          A, fault(NUMVFS0, "--errno", "EIO")),
    given(valid("start-after-eio", *start("a"), stdout_has=("started pool a: 4 VFs",)),
          A, fault(NUMVFS0, "--errno", "EIO"), expect(1, *start("a"))),
    given(invalid("start-vfs-never-appear", 1,
                  "error: PF 0000:05:00.0 (enp5s0f0) (after 0.5 s) did not reach the desired "
                  "state (sriov_numvfs: desired 4, current 0; VFs present: desired 4, current "
                  "0)", *start("a", "--timeout", "0.5")), A, fault(NUMVFS0, "--ignore")),
    given(invalid("start-netdevs-never-appear", 1,
                  "error: PF 0000:05:00.0 (enp5s0f0) (after 0.5 s) did not reach the desired "
                  "state (VFs without a netdev: desired 0, current 4)",
                  *start("a", "--timeout", "0.5")),
          define("a", "enp5s0f0", extra=("--mode", "macvtap")), fault(NUMVFS0, "--no-netdev")),
    given(valid("start-mlx4", *start("m"), stdout_has=("started pool m: 4 VFs, 4 free",)),
          define("m", "enp5s0"), nics=CX3),
    given(invalid("start-mlx4-modprobe-fails", 1,
                  "error: `modprobe -r mlx4_core` failed with exit code 1: modprobe: ERROR: "
                  "could not remove 'mlx4_core': Input/output error; restored the previous "
                  "{sim}/etc/modprobe.d/vfpool-mlx4_core.conf and reloaded the driver with it",
                  *start("m")),
          define("m", "enp5s0"), fault("modprobe:mlx4_core", "--errno", "EIO"), nics=CX3),
    given(valid("start-after-modprobe-failure", *start("m"),
                stdout_has=("started pool m: 4 VFs, 4 free",)),
          define("m", "enp5s0"), fault("modprobe:mlx4_core", "--errno", "EIO"),
          expect(1, *start("m")), nics=CX3),
    given(valid("start-after-vfs-never-appear", *start("a", "--timeout", "0.5"),
                stdout_has=("started pool a: 4 VFs",)),
          define("a", "enp5s0f0", extra=("--mode", "macvtap")), fault(NUMVFS0, "--no-netdev"),
          expect(1, *start("a", "--timeout", "0.5"))),
    given(invalid("start-igb-disruption", 4,
                  "error: reloading igb takes down every port it serves: interfaces enp5s0f1 "
                  "are up and not in an active vfpool pool; pass --allow-disruption to reload "
                  "anyway",
                  *start("a")),
          define("a", "enp5s0f0", vfs=3, extra=("--method", "module-param")), nics=I350),
    given(valid("start-igb-allow-disruption", *start("a", "--allow-disruption"),
                stdout_has=("started pool a: 3 VFs, 3 free",)),
          define("a", "enp5s0f0", vfs=3, extra=("--method", "module-param")), nics=I350),
    # --- start --autostarted
    plain(valid("autostarted-none", "pool", "start", "--autostarted",
                stdout_has=("no autostart pools\n",))),
    given(compare("autostarted-after-reboot", "pool-start-autostarted.txt",
                  "pool", "start", "--autostarted"),
          A, B, ("pool", "autostart", "a"), ("pool", "autostart", "b"), start("a"), start("b"),
          REBOOT),
    given(compare("autostarted-json", "pool-start-autostarted.json",
                  "pool", "start", "--autostarted", "--json"),
          A, B, ("pool", "autostart", "a"), ("pool", "autostart", "b"), start("b")),
    given(Case("autostarted-one-fails", ("pool", "start", "--autostarted"), exit_code=1,
               stderr=f"error: pool a: {EIO_MESSAGE}",
               stdout_has=(f"a: failed: {EIO_MESSAGE}\nb: started\n",)),
          A, B, ("pool", "autostart", "a"), ("pool", "autostart", "b"),
          fault(NUMVFS0, "--errno", "EIO")),
    # --- destroy
    given(valid("destroy", "pool", "destroy", "a", stdout_has=("destroyed pool a\n",)),
          A, start("a")),
    given(compare("destroy-json", "pool-destroy.json", "pool", "destroy", "b", "--json"),
          B, start("b")),
    given(valid("destroy-keep-vfs", "pool", "destroy", "a", "--keep-vfs",
                stdout_has=("destroyed pool a\n",)), A, start("a")),
    given(valid("destroy-force-no-leases", "pool", "destroy", "a", "--force",
                stdout_has=("destroyed pool a\n",)), A, start("a")),
    # No destroy-side case here: a reload leaves igb's ports down (as the real igb does), so
    # the guard is met at start (start-igb-disruption above); tests/pools/test_module_param.py
    # brings the port back up to check it at destroy.
    given(valid("destroy-igb-allow-disruption", "pool", "destroy", "a", "--allow-disruption",
                stdout_has=("destroyed pool a\n",)),
          define("a", "enp5s0f0", vfs=3, extra=("--method", "module-param")),
          start("a", "--allow-disruption"), nics=I350),
    given(valid("destroy-mlx4", "pool", "destroy", "m", stdout_has=("destroyed pool m\n",)),
          define("m", "enp5s0"), start("m"), nics=CX3),
    given(invalid("destroy-inactive", 4, "error: pool 'a' is not active",
                  "pool", "destroy", "a"), A),
    plain(invalid("destroy-unknown", 3, "error: no pool named 'nope'",
                  "pool", "destroy", "nope")),
    # --- undefine
    given(valid("undefine", "pool", "undefine", "a", stdout_has=("undefined pool a\n",)), A),
    given(valid("undefine-after-destroy", "pool", "undefine", "a",
                stdout_has=("undefined pool a\n",)), A, start("a"), ("pool", "destroy", "a")),
    given(invalid("undefine-active", 4,
                  "error: pool 'a' is active; destroy it before undefining it",
                  "pool", "undefine", "a"), A, start("a")),
    plain(invalid("undefine-unknown", 3, "error: no pool named 'nope'",
                  "pool", "undefine", "nope")),
    # --- autostart
    given(valid("autostart", "pool", "autostart", "a",
                stdout_has=("pool a will be started at boot\n",)), A),
    given(valid("autostart-disable", "pool", "autostart", "a", "--disable",
                stdout_has=("pool a will not be started at boot\n",)),
          A, ("pool", "autostart", "a")),
    given(compare("autostart-json", "pool-autostart.json", "pool", "autostart", "a", "--json"),
          A),
    plain(invalid("autostart-unknown", 3, "error: no pool named 'nope'",
                  "pool", "autostart", "nope")),
    # --- resize
    given(valid("resize-inactive", "pool", "resize", "a", "--vfs", "6",
                stdout_has=("pool a now has 6 VFs per PF\n",)), A),
    given(compare("resize-active-json", "pool-resize.json",
                  "pool", "resize", "b", "--vfs", "5", "--json"), B, start("b")),
    given(valid("resize-active-shrink", "pool", "resize", "a", "--vfs", "1",
                stdout_has=("pool a now has 1 VFs per PF\n",)), A, start("a")),
    given(valid("resize-mlx4", "pool", "resize", "m", "--vfs", "6",
                stdout_has=("pool m now has 6 VFs per PF\n",)),
          define("m", "enp5s0"), start("m"), nics=CX3),
    given(invalid("resize-0", 2, "error: --vfs must be 1-65535, not 0",
                  "pool", "resize", "a", "--vfs", "0"), A),
    given(invalid("resize-above-totalvfs", 2,
                  "error: PF 0000:05:00.0 (enp5s0f0) supports at most 63 VFs; 64 requested",
                  "pool", "resize", "a", "--vfs", "64"), A, start("a")),
    given(invalid("resize-above-range", 2,
                  "error: --vfs 9 does not fit VF range 8-15 of PF 0000:85:00.1 (enp133s0f1), "
                  "which holds 8 VFs", "pool", "resize", "b", "--vfs", "9"), B),
    given(invalid("resize-igb-scalar-conflict", 4,
                  "error: driver igb's max_vfs parameter sizes every igb port alike, but pool "
                  "'a' needs 3 VFs per PF and pool 'b' needs 4",
                  "pool", "resize", "b", "--vfs", "4"),
          define("a", "enp5s0f0", vfs=3, extra=("--method", "module-param")),
          define("b", "enp5s0f1", vfs=3, extra=("--method", "module-param")), nics=I350),
    given(invalid("resize-eio", 1,
                  "error: writing sriov_numvfs=0 on PF 0000:05:00.0 (enp5s0f0) failed with EIO "
                  "(Input/output error): the device or its firmware failed; check `dmesg`, then "
                  "retry", "pool", "resize", "a", "--vfs", "6"),
          A, start("a"), fault(NUMVFS0, "--errno", "EIO")),
    plain(invalid("resize-unknown", 3, "error: no pool named 'nope'",
                  "pool", "resize", "nope", "--vfs", "2")),
    given(invalid("resize-no-vfs", 2, "error: Missing option '--vfs'.", "pool", "resize", "a"),
          A),
    # --- list and info
    given(compare("list", "pool-list.txt", "pool", "list"),
          A, B, define("c", "enp133s0f0", vfs=2), start("a"), start("b"),
          ("pool", "autostart", "b")),
    given(compare("list-all", "pool-list-all.txt", "pool", "list", "--all"),
          A, B, define("c", "enp133s0f0", vfs=2), start("a"), start("b"),
          ("pool", "autostart", "b")),
    given(compare("list-all-json", "pool-list-all.json", "pool", "list", "--all", "--json"),
          A, B, start("b")),
    plain(compare("list-empty", "pool-list-empty.txt", "pool", "list")),
    given(compare("list-needs-start", "pool-list-needs-start.txt", "pool", "list"),
          A, B, start("a"), start("b"), REBOOT),
    given(compare("info", "pool-info.txt", "pool", "info", "tenant-a"),
          define("tenant-a", "enp5s0f0", "enp133s0f1#8-15",
                 extra=("--mode", "macvtap", "--vlan", "100", "--mtu", "9000")),
          start("tenant-a")),
    given(compare("info-json", "pool-info.json", "pool", "info", "tenant-a", "--json"),
          define("tenant-a", "enp5s0f0", "enp133s0f1#8-15",
                 extra=("--mode", "macvtap", "--vlan", "100", "--mtu", "9000")),
          start("tenant-a")),
    given(compare("info-needs-start", "pool-info-needs-start.txt", "pool", "info", "a"),
          A, start("a"), REBOOT),
    given(compare("info-needs-start-json", "pool-info-needs-start.json",
                  "pool", "info", "a", "--json"), A, start("a"), REBOOT),
    given(compare("info-mlx4-json", "pool-info-mlx4.json", "pool", "info", "m", "--json"),
          define("m", "enp5s0", extra=("--mode", "netdev")), start("m"), nics=CX3),
    given(compare("info-igb-json", "pool-info-igb.json", "pool", "info", "i", "--json"),
          define("i", "enp5s0f0", "enp5s0f1", vfs=3,
                 extra=("--method", "module-param", "--mode", "netdev")), start("i"),
          nics=I350),
    plain(invalid("info-unknown", 3, "error: no pool named 'nope'", "pool", "info", "nope")),
]


@pytest.mark.parametrize("pool_case", CASES, ids=[c.case.name for c in CASES])
def test_cli(pool_case: PoolCase, cli: Callable[..., CliResult],
             make_sim: Callable[..., SimHost], tmp_path: Path,
             golden: Callable[[str, str], None]) -> None:
    case = pool_case.case
    root = make_sim(*pool_case.nics).root
    for name, text in pool_case.files:
        (tmp_path / name).write_text(text)
    for step in pool_case.setup:
        wanted = 0
        if step[0].startswith("exit="):
            wanted, step = int(step[0].removeprefix("exit=")), step[1:]
        result = cli("--sim", str(root), *[_fill(arg, root, tmp_path) for arg in step])
        assert result.exit_code == wanted, f"setup {step}: {result.stderr}"
    args = [_fill(arg, root, tmp_path) for arg in case.args]
    result = cli("--sim", str(root), *args)
    check_result(result, case, lambda text: _fill(text, root, tmp_path), golden)


def test_every_pool_command_has_a_case() -> None:
    group = typer.main.get_command(app).commands["pool"]  # type: ignore[attr-defined]
    tested = {c.case.args[1] for c in CASES if c.case.args[0] == "pool"}
    assert set(group.commands) - tested == set()
    # And every invalid case pins its exact error text.
    assert all(c.case.stderr is not None for c in CASES if c.case.exit_code != 0)
