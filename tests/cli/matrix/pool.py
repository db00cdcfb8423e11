"""The CLI matrix of `vfpool pool` (issue 3): define, dumpconfig, start, destroy, undefine,
autostart, resize, list and info, on the default host and on mlx4 and igb hosts."""

from __future__ import annotations

from tests.cli.clitest import (
    IGB_8_HOST,
    IGB_82576_HOST,
    IGB_HOST,
    IGB_POOL_A,
    MACVTAP_A,
    MLX4_HOST,
    MLX4_POOL_M,
    POOL_A,
    POOL_A_DEFINED,
    POOL_A_STARTED,
    POOL_B,
    POOL_B_DEFINED,
    POOL_B_STARTED,
    POOLS_AUTOSTART,
    POOLS_LISTED,
    REBOOT,
    TENANT_A,
    Category,
    define,
    expect,
    fault,
    start,
)

pool = Category("pool", doc="pool definitions and their life cycle")
CATEGORIES = [pool]

NUMVFS0 = "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs"
NAME_RULE = ("use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
FILE = ('name = "filed"\nvfs = 2\nmode = "netdev"\nautostart = true\n'
        'pf = [{ pci = "enp5s0f1" }, { pci = "0000:85:00.0", range = "0-7" }]\n'
        '[defaults]\nvlan = 7\nspoofchk = true\n')
EIO_MESSAGE = ("writing sriov_numvfs=4 on PF 0000:05:00.0 (enp5s0f0) failed with EIO "
               "(Input/output error): the device or its firmware failed; check `dmesg`, then "
               "retry")

# --- define
pool.valid("define", *POOL_A,
           stdout_has=("defined pool a (inactive); start it with `vfpool pool start a`",))
pool.compare("define-json", "pool-define.json",
             *define("tenant-a", "enp5s0f0", "enp133s0f1#8-15", vfs=4,
                     extra=("--mode", "macvtap", "--vlan", "100", "--qos", "2", "--no-trust",
                            "--spoofchk", "--max-tx-rate", "1000", "--mtu", "9000", "--json")))
pool.valid("define-by-pci", *define("a", "0000:85:00.1"), stdout_has=("defined pool a",))
pool.valid("define-name-64", *define("a" * 64, "enp5s0f0"), stdout_has=("a" * 64,))
pool.valid("define-disjoint-range", *define("high", "enp133s0f1#8-15"),
           stdout_has=("defined pool high",), steps=(define("low", "enp133s0f1#0-7"),))
pool.valid("define-method-module-param-ixgbe",
           *define("a", "enp5s0f0", extra=("--method", "module-param")),
           stdout_has=("defined pool a",))
pool.valid("define-mlx4-auto", *define("m", "enp5s0"), stdout_has=("defined pool m",),
           setup=MLX4_HOST)
pool.valid("define-igb", *define("i", "enp5s0f0", "enp5s0f1", vfs=7),
           stdout_has=("defined pool i",), setup=IGB_82576_HOST)
pool.valid("define-file", "pool", "define", "--file", "{tmp}/p.toml",
           stdout_has=("defined pool filed (inactive)",), files=(("{tmp}/p.toml", FILE),))
pool.compare("define-file-dumpconfig", "pool-dumpconfig-file.toml", "pool", "dumpconfig", "filed",
             files=(("{tmp}/p.toml", FILE),), steps=(("pool", "define", "--file", "{tmp}/p.toml"),))
pool.valid("define-file-rename", "pool", "define", "renamed", "--file", "{tmp}/p.toml",
           stdout_has=("defined pool renamed (inactive)",), files=(("{tmp}/p.toml", FILE),))
# define: exit 2
pool.invalid("define-bad-name", 2, f"error: invalid pool name 'a b': {NAME_RULE}",
             *define("a b", "enp5s0f0"))
pool.invalid("define-name-65", 2, f"error: invalid pool name '{'a' * 65}': {NAME_RULE}",
             *define("a" * 65, "enp5s0f0"))
pool.invalid("define-name-leading-dot", 2, f"error: invalid pool name '.a': {NAME_RULE}",
             *define(".a", "enp5s0f0"))
pool.invalid("define-name-slash", 2, f"error: invalid pool name 'a/b': {NAME_RULE}",
             *define("a/b", "enp5s0f0"))
pool.invalid("define-missing-pf", 2,
             "error: invalid --pf 'enp9s0f0': no PF named 'enp9s0f0': no such PCI address "
             "or network interface on this host", *define("a", "enp9s0f0"))
pool.invalid("define-missing-bdf", 2,
             "error: invalid --pf '0000:99:00.0': no PCI device 0000:99:00.0 on this host",
             *define("a", "0000:99:00.0"))
pool.invalid("define-not-sriov", 2,
             "error: 0000:00:1f.6 (eno1) is not SR-IOV capable (driver e1000e)",
             *define("a", "eno1"))
pool.invalid("define-virtual-netdev", 2,
             "error: interface lo is not a PCI device, so it cannot be a PF", *define("a", "lo"))
pool.invalid("define-vf-as-pf", 2,
             "error: 0000:05:10.0 (enp5s0f0v0) is a VF of PF 0000:05:00.0, not a PF",
             *define("b", "enp5s0f0v0"),
             steps=(define("a", "enp5s0f0", vfs=2, extra=("--mode", "netdev")), start("a")))
pool.invalid("define-bad-pf-text", 2,
             "error: invalid PF '../x': expected a PCI address such as 0000:05:00.0 or an "
             "interface name such as enp5s0f0", *define("a", "../x"))
pool.invalid("define-vfs-above-totalvfs", 2,
             "error: PF 0000:05:00.0 (enp5s0f0) supports at most 63 VFs; 64 requested",
             *define("a", "enp5s0f0", vfs=64))
pool.invalid("define-vfs-above-range", 2,
             "error: --vfs 9 does not fit VF range 8-15 of PF 0000:85:00.1 (enp133s0f1), "
             "which holds 8 VFs", *define("a", "enp133s0f1#8-15", vfs=9))
pool.invalid("define-range-past-totalvfs", 2,
             "error: VF range 60-64 of PF 0000:85:00.1 (enp133s0f1) goes past its 64 VFs "
             "(0-63)", *define("a", "enp133s0f1#60-64", vfs=1))
pool.invalid("define-range-reversed", 2,
             "error: invalid VF range '7-3' in 'enp5s0f0#7-3': 7 is above 3",
             *define("a", "enp5s0f0#7-3", vfs=1))
pool.invalid("define-range-garbage", 2,
             "error: invalid VF range 'x' in 'enp5s0f0#x': expected START-END, such as "
             "0-7", *define("a", "enp5s0f0#x", vfs=1))
pool.invalid("define-pf-twice", 2,
             "error: PF 0000:05:00.0 (enp5s0f0) is listed twice (enp5s0f0 and "
             "0000:05:00.0); give each PF once", *define("a", "enp5s0f0", "0000:05:00.0"))
pool.invalid("define-vfs-0", 2, "error: --vfs must be 1-65535, not 0",
             *define("a", "enp5s0f0", vfs=0))
pool.invalid("define-vlan-0", 2, "error: VLAN 0 is outside 1-4094",
             *define("a", "enp5s0f0", extra=("--vlan", "0")))
pool.invalid("define-vlan-4095", 2, "error: VLAN 4095 is outside 1-4094",
             *define("a", "enp5s0f0", extra=("--vlan", "4095")))
pool.invalid("define-vlan-not-a-number", 2,
             "error: invalid value for --vlan: 'abc' is not a whole number",
             *define("a", "enp5s0f0", extra=("--vlan", "abc")))
pool.invalid("define-qos-8", 2, "error: QoS 8 is outside 0-7",
             *define("a", "enp5s0f0", extra=("--vlan", "5", "--qos", "8")))
pool.invalid("define-qos-negative", 2, "error: QoS -1 is outside 0-7",
             *define("a", "enp5s0f0", extra=("--vlan", "5", "--qos", "-1")))
pool.invalid("define-qos-without-vlan", 2, "error: QoS needs a VLAN: give --vlan too",
             *define("a", "enp5s0f0", extra=("--qos", "3")))
pool.invalid("define-min-above-max-rate", 2,
             "error: min TX rate 200 Mbps is above max TX rate 100 Mbps",
             *define("a", "enp5s0f0",
                     extra=("--min-tx-rate", "200", "--max-tx-rate", "100")))
pool.invalid("define-mtu-67", 2, "error: MTU 67 is outside 68-9216",
             *define("a", "enp5s0f0", extra=("--mtu", "67")))
pool.invalid("define-mtu-9217", 2, "error: MTU 9217 is outside 68-9216",
             *define("a", "enp5s0f0", extra=("--mtu", "9217")))
pool.invalid("define-bad-mode", 2, "error: invalid mode 'tap': use one of vfio, macvtap, netdev",
             *define("a", "enp5s0f0", extra=("--mode", "tap")))
pool.invalid("define-bad-method", 2,
             "error: invalid method 'ioctl': use one of auto, sysfs, module-param",
             *define("a", "enp5s0f0", extra=("--method", "ioctl")))
pool.invalid("define-mlx4-sysfs", 2,
             "error: driver mlx4_core cannot resize through sysfs; use --method "
             "module-param", *define("m", "enp5s0", extra=("--method", "sysfs")), setup=MLX4_HOST)
pool.invalid("define-i40e-module-param", 2,
             "error: driver i40e has no module parameter for VFs; use --method sysfs",
             *define("a", "enp133s0f0", extra=("--method", "module-param")))
pool.invalid("define-x710-min-tx-rate", 2,
             "error: driver i40e cannot set min_tx_rate on its VFs (PF 0000:85:00.0 "
             "(enp133s0f0))", *define("a", "enp133s0f0", extra=("--min-tx-rate", "10")))
pool.invalid("define-igb-above-7", 2,
             "error: driver igb allows at most 7 VFs per PF; PF 0000:05:00.0 (enp5s0f0) "
             "would need 8", *define("i", "enp5s0f0", vfs=8), setup=IGB_8_HOST)
pool.invalid("define-no-pf", 2, "error: a pool needs at least one --pf (or --select)", "pool",
             "define", "a", "--vfs", "1")
pool.invalid("define-no-vfs", 2, "error: missing --vfs N: how many VFs per PF", "pool", "define",
             "a", "--pf", "enp5s0f0")
pool.invalid("define-no-name", 2, "error: missing pool NAME (or give --file)", "pool", "define",
             "--pf", "enp5s0f0", "--vfs", "1")
pool.invalid("define-file-and-flags", 2,
             "error: give either --file or --pf/--select/--vfs, not both", "pool", "define",
             "--file", "{tmp}/p.toml", "--vfs", "3",
             files=(("{tmp}/p.toml", FILE),))
pool.invalid("define-file-missing", 2,
             "error: cannot read {tmp}/nope.toml: No such file or directory", "pool", "define",
             "--file", "{tmp}/nope.toml")
pool.invalid("define-file-unknown-key", 2, "error: {tmp}/p.toml: unknown key 'size'", "pool",
             "define", "--file", "{tmp}/p.toml",
             files=(("{tmp}/p.toml",
                     'name = "p"\nvfs = 1\nsize = 2\npf = [{ pci = "enp5s0f0" }]\n'),))
pool.invalid("define-file-bad-vlan", 2, "error: VLAN 5000 is outside 1-4094", "pool", "define",
             "--file", "{tmp}/p.toml",
             files=(("{tmp}/p.toml", FILE.replace("vlan = 7", "vlan = 5000")),))
# define: exit 4
pool.invalid("define-pf-in-pool", 4, "error: PF 0000:05:00.0 (enp5s0f0) is already in pool 'a'",
             *define("b", "0000:05:00.0"), setup=POOL_A_DEFINED)
pool.invalid("define-whole-pf-after-range", 4,
             "error: PF 0000:85:00.1 (enp133s0f1) is already in pool 'b'",
             *define("c", "enp133s0f1", vfs=1), setup=POOL_B_DEFINED)
pool.invalid("define-range-overlap", 4,
             "error: VF range 4-9 of PF 0000:85:00.1 (enp133s0f1) overlaps range 0-7 of "
             "pool 'low'", *define("x", "enp133s0f1#4-9", vfs=2),
             steps=(define("low", "enp133s0f1#0-7"),))
pool.invalid("define-name-exists", 4, "error: pool 'a' already exists", *define("a", "enp5s0f1"),
             setup=POOL_A_DEFINED)
pool.invalid("define-igb-scalar-conflict", 4,
             "error: driver igb's max_vfs parameter sizes every igb port alike, but pool "
             "'a' needs 3 VFs per PF and pool 'b' needs 2",
             *define("b", "enp5s0f1", vfs=2, extra=("--method", "module-param")),
             setup=IGB_POOL_A)
pool.invalid("define-file-conflict", 4, "error: PF 0000:05:00.1 (enp5s0f1) is already in pool 'x'",
             "pool", "define", "--file", "{tmp}/p.toml", steps=(define("x", "enp5s0f1"),),
             files=(("{tmp}/p.toml", FILE),))
# --- dumpconfig
pool.compare("dumpconfig", "pool-dumpconfig.toml", "pool", "dumpconfig", "tenant-a",
             steps=(define("tenant-a", "enp5s0f0", "enp5s0f1#8-15",
                           extra=("--mode", "macvtap", "--vlan", "100", "--qos", "2", "--trust",
                                  "--no-spoofchk", "--max-tx-rate", "1000", "--mtu",
                                  "9000")),
                    ("pool", "autostart", "tenant-a")))
pool.compare("dumpconfig-mlx4", "pool-dumpconfig-mlx4.toml", "pool", "dumpconfig", "m",
             steps=(define("m", "enp5s0#0-15", vfs=8, extra=("--mode", "netdev")),),
             setup=MLX4_HOST)
pool.invalid("dumpconfig-unknown", 3, "error: no pool named 'nope'", "pool", "dumpconfig", "nope")
pool.invalid("dumpconfig-no-name", 2, "error: missing argument NAME", "pool", "dumpconfig")
# --- start
pool.valid("start", *start("a"), stdout_has=("started pool a: 4 VFs, 4 free\n",),
           setup=POOL_A_DEFINED)
pool.compare("start-json", "pool-start.json", *start("b", "--json"), setup=POOL_B_DEFINED)
pool.valid("start-already-active", *start("a"),
           stdout_has=("pool a is already active; nothing to do\n",), setup=POOL_A_STARTED)
pool.valid("start-after-keep-vfs", *start("a"), stdout_has=("started pool a",),
           setup=POOL_A_STARTED, steps=(("pool", "destroy", "a", "--keep-vfs"),))
pool.valid("start-shared-pf", *start("low"), stdout_has=("started pool low: 4 VFs",),
           steps=(define("low", "enp133s0f1#0-7"), POOL_B, start("b")))
pool.invalid("start-unknown", 3, "error: no pool named 'nope'", *start("nope"))
pool.invalid("start-no-name", 2, "error: give a pool NAME or --autostarted", "pool", "start")
pool.invalid("start-name-and-autostarted", 2, "error: give a pool NAME or --autostarted",
             *start("a", "--autostarted"), setup=POOL_A_DEFINED)
pool.invalid("start-eio", 1, f"error: {EIO_MESSAGE}", *start("a"),
             setup=POOL_A_DEFINED, steps=(fault(NUMVFS0, "--errno", "EIO"),))
pool.valid("start-after-eio", *start("a"), stdout_has=("started pool a: 4 VFs",),
           setup=POOL_A_DEFINED, steps=(fault(NUMVFS0, "--errno", "EIO"), expect(1, *start("a"))))
pool.invalid("start-vfs-never-appear", 1,
             "error: PF 0000:05:00.0 (enp5s0f0) (after 0.5 s) did not reach the desired "
             "state (sriov_numvfs: desired 4, current 0; VFs present: desired 4, current "
             "0)", *start("a", "--timeout", "0.5"), setup=POOL_A_DEFINED,
             steps=(fault(NUMVFS0, "--ignore"),))
pool.invalid("start-netdevs-never-appear", 1,
             "error: PF 0000:05:00.0 (enp5s0f0) (after 0.5 s) did not reach the desired "
             "state (VFs without a netdev: desired 0, current 4)", *start("a", "--timeout", "0.5"),
             setup=MACVTAP_A, steps=(fault(NUMVFS0, "--no-netdev"),))
pool.valid("start-mlx4", *start("m"), stdout_has=("started pool m: 4 VFs, 4 free",),
           setup=MLX4_POOL_M)
pool.invalid("start-mlx4-modprobe-fails", 1,
             "error: `modprobe -r mlx4_core` failed with exit code 1: modprobe: ERROR: "
             "could not remove 'mlx4_core': Input/output error; restored the previous "
             "{sim}/etc/modprobe.d/vfpool-mlx4_core.conf and reloaded the driver with it",
             *start("m"),
             setup=MLX4_POOL_M, steps=(fault("modprobe:mlx4_core", "--errno", "EIO"),))
pool.valid("start-after-modprobe-failure", *start("m"),
           stdout_has=("started pool m: 4 VFs, 4 free",),
           setup=MLX4_POOL_M,
           steps=(fault("modprobe:mlx4_core", "--errno", "EIO"), expect(1, *start("m"))))
pool.valid("start-after-vfs-never-appear", *start("a", "--timeout", "0.5"),
           stdout_has=("started pool a: 4 VFs",),
           setup=MACVTAP_A,
           steps=(fault(NUMVFS0, "--no-netdev"), expect(1, *start("a", "--timeout", "0.5"))))
pool.invalid("start-igb-disruption", 4,
             "error: reloading igb takes down every port it serves: interfaces enp5s0f1 "
             "are up and not in an active vfpool pool; pass --allow-disruption to reload "
             "anyway", *start("a"),
             setup=IGB_POOL_A)
pool.valid("start-igb-allow-disruption", *start("a", "--allow-disruption"),
           stdout_has=("started pool a: 3 VFs, 3 free",),
           setup=IGB_POOL_A)
# --- start --autostarted
pool.valid("autostarted-none", "pool", "start", "--autostarted",
           stdout_has=("no autostart pools\n",))
pool.compare("autostarted-after-reboot", "pool-start-autostarted.txt", "pool", "start",
             "--autostarted",
             setup=POOLS_AUTOSTART, steps=(start("a"), start("b"), REBOOT))
pool.compare("autostarted-json", "pool-start-autostarted.json", "pool", "start", "--autostarted",
             "--json",
             setup=POOLS_AUTOSTART, steps=(start("b"),))
pool.invalid("autostarted-one-fails", 1, f"error: pool a: {EIO_MESSAGE}",
             *("pool", "start", "--autostarted"),
             stdout_has=(f"a: failed: {EIO_MESSAGE}\nb: started\n",),
             setup=POOLS_AUTOSTART, steps=(fault(NUMVFS0, "--errno", "EIO"),))
# --- destroy
pool.valid("destroy", "pool", "destroy", "a", stdout_has=("destroyed pool a\n",),
           setup=POOL_A_STARTED)
pool.compare("destroy-json", "pool-destroy.json", "pool", "destroy", "b", "--json",
             setup=POOL_B_STARTED)
pool.valid("destroy-keep-vfs", "pool", "destroy", "a", "--keep-vfs",
           stdout_has=("destroyed pool a\n",), setup=POOL_A_STARTED)
pool.valid("destroy-force-no-leases", "pool", "destroy", "a", "--force",
           stdout_has=("destroyed pool a\n",), setup=POOL_A_STARTED)
# No destroy-side disruption case here: a reload leaves igb's ports down (as the real igb
# does), so the guard is met at start (start-igb-disruption above);
# tests/pools/test_module_param.py brings the port back up to check it at destroy.
pool.valid("destroy-igb-allow-disruption", "pool", "destroy", "a", "--allow-disruption",
           stdout_has=("destroyed pool a\n",),
           setup=IGB_POOL_A, steps=(start("a", "--allow-disruption"),))
pool.valid("destroy-mlx4", "pool", "destroy", "m", stdout_has=("destroyed pool m\n",),
           setup=MLX4_POOL_M, steps=(start("m"),))
pool.invalid("destroy-inactive", 4, "error: pool 'a' is not active", "pool", "destroy", "a",
             setup=POOL_A_DEFINED)
pool.invalid("destroy-unknown", 3, "error: no pool named 'nope'", "pool", "destroy", "nope")
# --- undefine
pool.valid("undefine", "pool", "undefine", "a", stdout_has=("undefined pool a\n",),
           setup=POOL_A_DEFINED)
pool.valid("undefine-after-destroy", "pool", "undefine", "a", stdout_has=("undefined pool a\n",),
           setup=POOL_A_STARTED, steps=(("pool", "destroy", "a"),))
pool.invalid("undefine-active", 4, "error: pool 'a' is active; destroy it before undefining it",
             "pool", "undefine", "a", setup=POOL_A_STARTED)
pool.invalid("undefine-unknown", 3, "error: no pool named 'nope'", "pool", "undefine", "nope")
# --- autostart
pool.valid("autostart", "pool", "autostart", "a", stdout_has=("pool a will be started at boot\n",),
           setup=POOL_A_DEFINED)
pool.valid("autostart-disable", "pool", "autostart", "a", "--disable",
           stdout_has=("pool a will not be started at boot\n",),
           setup=POOL_A_DEFINED, steps=(("pool", "autostart", "a"),))
pool.compare("autostart-json", "pool-autostart.json", "pool", "autostart", "a", "--json",
             setup=POOL_A_DEFINED)
pool.invalid("autostart-unknown", 3, "error: no pool named 'nope'", "pool", "autostart", "nope")
# --- resize
pool.valid("resize-inactive", "pool", "resize", "a", "--vfs", "6",
           stdout_has=("pool a now has 6 VFs per PF\n",), setup=POOL_A_DEFINED)
pool.compare("resize-active-json", "pool-resize.json", "pool", "resize", "b", "--vfs", "5",
             "--json", setup=POOL_B_STARTED)
pool.valid("resize-active-shrink", "pool", "resize", "a", "--vfs", "1",
           stdout_has=("pool a now has 1 VFs per PF\n",), setup=POOL_A_STARTED)
pool.valid("resize-mlx4", "pool", "resize", "m", "--vfs", "6",
           stdout_has=("pool m now has 6 VFs per PF\n",), setup=MLX4_POOL_M,
           steps=(start("m"),))
pool.invalid("resize-0", 2, "error: --vfs must be 1-65535, not 0", "pool", "resize", "a", "--vfs",
             "0", setup=POOL_A_DEFINED)
pool.invalid("resize-above-totalvfs", 2,
             "error: PF 0000:05:00.0 (enp5s0f0) supports at most 63 VFs; 64 requested", "pool",
             "resize", "a", "--vfs", "64", setup=POOL_A_STARTED)
pool.invalid("resize-above-range", 2,
             "error: --vfs 9 does not fit VF range 8-15 of PF 0000:85:00.1 (enp133s0f1), "
             "which holds 8 VFs", "pool", "resize", "b", "--vfs", "9", setup=POOL_B_DEFINED)
pool.invalid("resize-igb-scalar-conflict", 4,
             "error: driver igb's max_vfs parameter sizes every igb port alike, but pool "
             "'a' needs 3 VFs per PF and pool 'b' needs 4", "pool", "resize", "b", "--vfs", "4",
             setup=IGB_POOL_A,
             steps=(define("b", "enp5s0f1", vfs=3, extra=("--method", "module-param")),))
pool.invalid("resize-eio", 1,
             "error: writing sriov_numvfs=0 on PF 0000:05:00.0 (enp5s0f0) failed with EIO "
             "(Input/output error): the device or its firmware failed; check `dmesg`, then "
             "retry", "pool", "resize", "a", "--vfs", "6",
             setup=POOL_A_STARTED, steps=(fault(NUMVFS0, "--errno", "EIO"),))
pool.invalid("resize-unknown", 3, "error: no pool named 'nope'", "pool", "resize", "nope", "--vfs",
             "2")
pool.invalid("resize-no-vfs", 2, "error: missing option --vfs N", "pool", "resize", "a",
             setup=POOL_A_DEFINED)
# --- list and info
pool.compare("list", "pool-list.txt", "pool", "list",
             setup=POOLS_LISTED)
pool.compare("list-all", "pool-list-all.txt", "pool", "list", "--all",
             setup=POOLS_LISTED)
pool.compare("list-all-json", "pool-list-all.json", "pool", "list", "--all", "--json",
             setup=POOL_A_DEFINED, steps=(POOL_B, start("b")))
pool.compare("list-empty", "pool-list-empty.txt", "pool", "list")
pool.compare("list-needs-start", "pool-list-needs-start.txt", "pool", "list",
             setup=POOL_A_DEFINED, steps=(POOL_B, start("a"), start("b"), REBOOT))
pool.compare("info", "pool-info.txt", "pool", "info", "tenant-a",
             setup=TENANT_A)
pool.compare("info-json", "pool-info.json", "pool", "info", "tenant-a", "--json",
             setup=TENANT_A)
pool.compare("info-needs-start", "pool-info-needs-start.txt", "pool", "info", "a",
             setup=POOL_A_STARTED, steps=(REBOOT,))
pool.compare("info-needs-start-json", "pool-info-needs-start.json", "pool", "info", "a", "--json",
             setup=POOL_A_STARTED, steps=(REBOOT,))
pool.compare("info-mlx4-json", "pool-info-mlx4.json", "pool", "info", "m", "--json",
             setup=MLX4_HOST, steps=(define("m", "enp5s0", extra=("--mode", "netdev")), start("m")))
pool.compare("info-igb-json", "pool-info-igb.json", "pool", "info", "i", "--json",
             setup=IGB_HOST,
             steps=(define("i", "enp5s0f0", "enp5s0f1", vfs=3,
                           extra=("--method", "module-param", "--mode", "netdev")),
                    start("i")))
pool.invalid("info-unknown", 3, "error: no pool named 'nope'", "pool", "info", "nope")
# --- show (the verb; `pool info` above is its alias)
pool.valid("show-json", "pool", "show", "a", "--json", stdout_has=('"name": "a"',),
           setup=POOL_A_STARTED)
pool.invalid("show-unknown", 3, "error: no pool named 'nope'", "pool", "show", "nope")
pool.valid("show-json-before-command", "--json", "pool", "show", "a",
           stdout_has=('"name": "a"', '"pfs": ['), setup=POOL_A_DEFINED)
pool.valid("info-alias-json", "pool", "info", "a", "--json",
           stdout_has=('"name": "a"', '"state": "inactive"', '"autostart": false',
                       '"method": "auto"', '"mode": ', '"pfs": [', '"vfs": {',
                       '"defaults": {'), setup=POOL_A_DEFINED)
pool.invalid("show-missing-name", 2, "error: missing argument NAME", "pool", "show")
pool.invalid("typo", 2, "error: no such command 'shwo'; did you mean 'show'?",
             "pool", "shwo", "a")
