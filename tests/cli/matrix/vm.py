"""The CLI matrix of `vfpool vm`: `vm args`, `vm launch --dry-run`, and the errors of `vm
launch`, `vm attach` and `vm detach` that come before any QEMU is needed (tests/qemu/ runs
them against a real QEMU). No vm command here leases or releases anything.
"""

from __future__ import annotations

from tests.cli.clitest import (
    DEAD_QMP_SOCKET,
    EMPTY_SIM,
    GUEST_LEASE_RELEASED,
    GUEST_LEASES,
    Category,
    no_lease_changes,
)

vm = Category("vm", setup=GUEST_LEASES, quiet=True, checks=(no_lease_changes,),
              doc="QEMU arguments and the launcher's errors")
CATEGORIES = [vm]

LAUNCH = ("vm", "launch", "--owner", "vm1")
NETDEV_MODE = ("error: lease 3 is in netdev mode; it has nothing to hand to QEMU (use "
               "`vfpool vm args` for its interface)")
REFUSED = ("error: cannot connect to QMP at {tmp}/qmp.sock: Failed to establish connection: "
           "[Errno 111] Connection refused")

vm.compare("args-json", "argv-vm-args.json", "vm", "args", "1", "2", "3", "--json")
vm.compare("args-text", "argv-vm-args.txt", "vm", "args", "1", "2", "3")
vm.valid("args-vfio", "vm", "args", "1", stdout="-device vfio-pci,host=0000:85:02.0,id=vfpool-1\n")
vm.valid("args-macvtap", "vm", "args", "2",
         stdout="-netdev 'tap,id=vfpool-2-net,fd=$TAPFD_2' -device "
                "virtio-net-pci,netdev=vfpool-2-net,mac=52:54:00:00:00:02,id=vfpool-2\n")
vm.valid("args-netdev", "vm", "args", "3", stdout="enp5s0f0v0 52:54:00:00:00:03\n")
vm.valid("args-netdev-json", "vm", "args", "3", "--json",
         stdout_has=('"argv": []', '"device_id": null', '"netdev": "enp5s0f0v0"'))
vm.invalid("args-unknown-lease", 3, "error: no lease 99", "vm", "args", "99")
vm.invalid("args-one-unknown", 3, "error: no lease 99", "vm", "args", "1", "99")
vm.invalid("args-released", 4, "error: lease 1 is released, not active", "vm", "args", "1",
           setup=GUEST_LEASE_RELEASED)
vm.invalid("args-none", 2, "error: missing argument LEASE_ID...", "vm", "args")
vm.invalid("args-not-a-number", 2,
           "error: invalid value for LEASE_ID: 'one' is not a whole number", "vm", "args", "one")
vm.valid("launch-dry-run-vfio", *LAUNCH, "--pool", "v", "--dry-run", "--", "-m", "1G",
         stdout_has=("qemu-system-x86_64 -name vm1 -qmp unix:",
                     ",server=on,wait=off -device vfio-pci,host=0000:85:02.1,id=vfpool-1 "
                     "-m 1G\n"))
vm.valid("launch-dry-run-macvtap", *LAUNCH, "--pool", "m", "--dry-run",
         stdout_has=(" -netdev 'tap,id=vfpool-1-net,fd=$TAPFD_1' -device "
                     "virtio-net-pci,netdev=vfpool-1-net,mac=",))
vm.valid("launch-dry-run-qemu", *LAUNCH, "--pool", "v", "--dry-run", "--qemu",
         "/opt/qemu/bin/qemu-system-x86_64", stdout_has=("/opt/qemu/bin/qemu-system-x86_64 "
                                                         "-name vm1 ",))
vm.valid("launch-dry-run-json", *LAUNCH, "--pool", "v", "--dry-run", "--json",
         stdout_has=('"exitcode": null', '"dry run: nothing was leased or started"',
                     '"vfio-pci,host=0000:85:02.1,id=vfpool-1"'))
vm.valid("launch-dry-run-netdev", *LAUNCH, "--pool", "n", "--dry-run",
         stdout_has=(",server=on,wait=off\n",))
vm.invalid("launch-inactive-pool", 4,
           "error: pool 'idle' is not active; start it with `vfpool pool start idle`", *LAUNCH,
           "--pool", "idle", "--", "-m", "64")
vm.invalid("launch-dry-run-inactive-pool", 4,
           "error: pool 'idle' is not active; start it with `vfpool pool start idle`", *LAUNCH,
           "--pool", "idle", "--dry-run")
vm.invalid("launch-unknown-pool", 3, "error: no pool named 'nope'", *LAUNCH, "--pool", "nope",
           setup=EMPTY_SIM)
vm.invalid("launch-exhausted", 5, "error: pool 'v' has 1 free VF(s); 2 requested", *LAUNCH,
           "--pool", "v", "--count", "2")
vm.invalid("launch-count-zero", 2, "error: --count must be 1-4096, not 0", *LAUNCH, "--pool", "v",
           "--count", "0")
vm.invalid("launch-owner-empty", 2, "error: owner must not be empty", "vm", "launch", "--owner", "",
           "--pool", "v", "--dry-run")
vm.invalid("launch-no-owner", 2, "error: missing option --owner OWNER", "vm", "launch", "--pool",
           "v")
vm.invalid("attach-unknown-lease", 3, "error: no lease 99", "vm", "attach", "{tmp}/qmp.sock", "99")
vm.invalid("attach-netdev-lease", 2, NETDEV_MODE, "vm", "attach", "{tmp}/qmp.sock", "3")
vm.invalid("attach-no-qmp-socket", 3, "error: no QMP socket at {tmp}/qmp.sock", "vm", "attach",
           "{tmp}/qmp.sock", "1", "--bus", "rp1")
vm.invalid("attach-released", 4, "error: lease 1 is released, not active", "vm", "attach",
           "{tmp}/qmp.sock", "1", setup=GUEST_LEASE_RELEASED)
vm.invalid("attach-dead-socket", 1, REFUSED, "vm", "attach", "{tmp}/qmp.sock", "2",
           setup=DEAD_QMP_SOCKET)
vm.invalid("attach-missing-lease-arg", 2, "error: missing argument LEASE_ID", "vm", "attach",
           "{tmp}/qmp.sock")
vm.invalid("detach-unknown-lease", 3, "error: no lease 99", "vm", "detach", "{tmp}/qmp.sock", "99")
vm.invalid("detach-no-qmp-socket", 3, "error: no QMP socket at {tmp}/qmp.sock", "vm", "detach",
           "{tmp}/qmp.sock", "2")
vm.invalid("detach-released", 4, "error: lease 1 is released, not active", "vm", "detach",
           "{tmp}/qmp.sock", "1", setup=GUEST_LEASE_RELEASED)
vm.invalid("detach-dead-socket", 1, REFUSED, "vm", "detach", "{tmp}/qmp.sock", "2",
           setup=DEAD_QMP_SOCKET)
vm.invalid("detach-bad-timeout", 2,
           "error: invalid value for --timeout: 'x' is not a number", "vm", "detach",
           "{tmp}/qmp.sock", "1", "--timeout", "x")
