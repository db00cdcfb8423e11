"""The CLI matrix of `vfpool lease` and `vfpool reconcile` (issue 4), after the setups of
tests/cli/clitest.py: pools started, a lease held, released or reacquired, a full pool.

Lease records printed as JSON carry the lease keys, and only `lease acquire` shows a token.
"""

from __future__ import annotations

from tests.cli.clitest import (
    EMPTY_SIM,
    LEASE_HELD,
    LEASE_REACQUIRED,
    LEASE_RELEASED,
    NET_FULL,
    POOLS_STARTED,
    Category,
    lease_records,
)

lease = Category("lease", setup=POOLS_STARTED, quiet=True, checks=(lease_records,),
                 doc="acquire, release, list and show")
reconcile = Category("reconcile", setup=LEASE_HELD, quiet=True,
                     doc="the store against the host")
CATEGORIES = [lease, reconcile]

VF0 = "0000:05:10.0"  # VF 0 of enp5s0f0
OWNER_129 = "o" * 129
ACQUIRE = ("lease", "acquire")
RELEASE = ("lease", "release")

lease.valid("acquire-table", *ACQUIRE, "net", "--owner", "vm1",
            stdout_has=("ID  POOL  OWNER  STATE   MODE    VF            NETDEV      MAC",
                        f"net   vm1    active  netdev  {VF0}  enp5s0f0v0", "lease 1 token: "))
lease.valid("acquire-json", *ACQUIRE, "net", "--owner", "vm1", "--json",
            stdout_has=('"state": "active"', '"vlan": 10', '"numa_met": null',
                        '"netdev": "enp5s0f0v0"'))
lease.valid("acquire-count", *ACQUIRE, "net", "--owner", "vm1", "--count", "2", "--json",
            stdout_has=('"index": 0', '"index": 1'))
lease.valid("acquire-mac", *ACQUIRE, "net", "--owner", "vm1", "--mac", "52:54:00:AB:CD:EF",
            "--json", stdout_has=('"mac": "52:54:00:ab:cd:ef"',))
lease.valid("acquire-vlan", *ACQUIRE, "net", "--owner", "vm1", "--vlan", "4094", "--json",
            stdout_has=('"vlan": 4094',))
lease.valid("acquire-vfio", *ACQUIRE, "v", "--owner", "vm1", "--json",
            stdout_has=('"mode": "vfio"', '"netdev": null'))
lease.valid("acquire-numa-met", *ACQUIRE, "v", "--owner", "vm1", "--numa-node", "1", "--json",
            stdout_has=('"numa_met": true', '"numa_node": 1'))
lease.valid("acquire-numa-not-met", *ACQUIRE, "net", "--owner", "vm1", "--numa-node", "1", "--json",
            stdout_has=('"numa_met": false', '"numa_node": 0'),
            stderr="note: not all VFs are on NUMA node 1; the pool had no free VF there")
lease.valid("acquire-owner-128", *ACQUIRE, "net", "--owner", "o" * 128, "--json",
            stdout_has=(f'"owner": "{"o" * 128}"',))
lease.valid("acquire-after-release", *ACQUIRE, "net", "--owner", "vm1", "--json",
            stdout_has=(f'"pci": "{VF0}"',), setup=LEASE_RELEASED)
lease.invalid("acquire-unknown-pool", 3, "error: no pool named 'nope'", *ACQUIRE, "nope", "--owner",
              "vm1", setup=EMPTY_SIM)
lease.invalid("acquire-inactive-pool", 4,
              "error: pool 'idle' is not active; start it with `vfpool pool start idle`", *ACQUIRE,
              "idle", "--owner", "vm1")
lease.invalid("acquire-exhausted-count", 5, "error: pool 'net' has 2 free VF(s); 3 requested",
              *ACQUIRE, "net", "--owner", "vm1", "--count", "3")
lease.invalid("acquire-exhausted", 5, "error: pool 'net' has 0 free VF(s); 1 requested", *ACQUIRE,
              "net", "--owner", "vm3", setup=NET_FULL)
lease.invalid("acquire-owner-empty", 2, "error: owner must not be empty", *ACQUIRE, "net",
              "--owner", "")
lease.invalid("acquire-owner-too-long", 2,
              "error: owner is 129 characters long; at most 128 are allowed", *ACQUIRE, "net",
              "--owner", OWNER_129)
lease.invalid("acquire-owner-control-char", 2,
              "error: owner 'vm\\x07' contains characters that are not printable", *ACQUIRE, "net",
              "--owner", "vm\x07")
lease.invalid("acquire-owner-newline", 2,
              "error: owner 'vm\\n1' contains characters that are not printable", *ACQUIRE, "net",
              "--owner", "vm\n1")
lease.invalid("acquire-mac-multicast", 2,
              "error: MAC 01:00:5e:00:00:01 is a multicast address; give a unicast address",
              *ACQUIRE, "net", "--owner", "vm1", "--mac", "01:00:5e:00:00:01")
lease.invalid("acquire-mac-broadcast", 2,
              "error: MAC ff:ff:ff:ff:ff:ff is the broadcast address; give a unicast address",
              *ACQUIRE, "net", "--owner", "vm1", "--mac", "ff:ff:ff:ff:ff:ff")
lease.invalid("acquire-mac-zero", 2,
              "error: MAC 00:00:00:00:00:00 is all-zero; give a unicast address", *ACQUIRE, "net",
              "--owner", "vm1", "--mac", "00:00:00:00:00:00")
lease.invalid("acquire-mac-malformed", 2,
              "error: invalid MAC address '52:54:00:12:34:5g': expected six hex bytes such as "
              "52:54:00:12:34:56", *ACQUIRE, "net", "--owner", "vm1", "--mac", "52:54:00:12:34:5g")
lease.invalid("acquire-mac-in-use", 4,
              "error: MAC 52:54:00:00:00:01 is already used by lease {lease} of 'vm1'", *ACQUIRE,
              "v", "--owner", "vm2", "--mac", "52:54:00:00:00:01", setup=LEASE_HELD)
lease.invalid("acquire-mac-with-count", 2, "error: --mac names one VF; it cannot go with --count 2",
              *ACQUIRE, "net", "--owner", "vm1", "--mac", "52:54:00:00:00:02", "--count", "2")
lease.invalid("acquire-vlan-zero", 2, "error: VLAN 0 is outside 1-4094", *ACQUIRE, "net", "--owner",
              "vm1", "--vlan", "0")
lease.invalid("acquire-vlan-4095", 2, "error: VLAN 4095 is outside 1-4094", *ACQUIRE, "net",
              "--owner", "vm1", "--vlan", "4095")
lease.invalid("acquire-vlan-negative", 2, "error: VLAN -5 is outside 1-4094", *ACQUIRE, "net",
              "--owner", "vm1", "--vlan", "-5")
lease.invalid("acquire-count-zero", 2, "error: --count must be 1-4096, not 0", *ACQUIRE, "net",
              "--owner", "vm1", "--count", "0")
lease.invalid("acquire-count-negative", 2, "error: --count must be 1-4096, not -1", *ACQUIRE, "net",
              "--owner", "vm1", "--count", "-1")
lease.invalid("acquire-count-not-a-number", 2,
              "error: invalid value for --count: 'two' is not a whole number", *ACQUIRE, "net",
              "--owner", "vm1", "--count", "two")
lease.invalid("acquire-numa-negative", 2, "error: NUMA node -1 is outside 0-1023", *ACQUIRE, "net",
              "--owner", "vm1", "--numa-node", "-1")
lease.invalid("acquire-no-owner", 2, "error: missing option --owner OWNER", *ACQUIRE, "net")
lease.invalid("acquire-no-pool", 2, "error: missing argument POOL", *ACQUIRE)
lease.valid("release-token", *RELEASE, "{lease}", "--token", "{token}",
            stdout_has=("released lease {lease} ({vf})",), setup=LEASE_HELD)
lease.valid("release-json", *RELEASE, "{lease}", "--token", "{token}", "--json",
            stdout_has=('"state": "released"', '"token": null'), stdout_lacks=("{token}",),
            setup=LEASE_HELD)
lease.valid("release-owner", *RELEASE, "--owner", "vm1",
            stdout_has=("released lease 1 (0000:05:10.0)",), stdout_lacks=("lease 2",),
            setup=NET_FULL)
lease.valid("release-force", *RELEASE, "{lease}", "--force",
            stdout_has=("released lease {lease} ({vf})",), setup=LEASE_HELD)
lease.valid("release-newer-lease", *RELEASE, "{lease_b}", "--token", "{token_b}",
            stdout_has=("released lease {lease_b} ({vf})",), setup=LEASE_REACQUIRED)
lease.invalid("release-wrong-token", 6, "error: wrong token for lease {lease}", *RELEASE, "{lease}",
              "--token", "not-the-token", setup=LEASE_HELD)
lease.invalid("release-no-token", 2,
              "error: releasing lease {lease} needs its --token (or --force for administrators)",
              *RELEASE, "{lease}", setup=LEASE_HELD)
lease.invalid("release-unknown-lease", 3, "error: no lease 99", *RELEASE, "99", "--token",
              "{token}", setup=LEASE_HELD)
lease.invalid("release-unknown-lease-force", 3, "error: no lease 99", *RELEASE, "99", "--force",
              setup=EMPTY_SIM)
lease.invalid("release-nothing", 2, "error: give a LEASE_ID or --owner OWNER", *RELEASE,
              setup=LEASE_HELD)
lease.invalid("release-id-and-owner", 2, "error: give a LEASE_ID or --owner OWNER", *RELEASE,
              "{lease}", "--owner", "vm1", setup=LEASE_HELD)
lease.invalid("release-owner-unknown", 3, "error: owner 'vm9' holds no leases", *RELEASE, "--owner",
              "vm9", setup=LEASE_HELD)
lease.invalid("release-owner-empty", 2, "error: owner must not be empty", *RELEASE, "--owner", "",
              setup=LEASE_HELD)
lease.invalid("release-twice", 4,
              "error: lease {lease} is released, not active; nothing to release", *RELEASE,
              "{lease}", "--token", "{token}", setup=LEASE_RELEASED)
lease.invalid("release-late", 4, "error: lease {lease} is released, not active; nothing to release",
              *RELEASE, "{lease}", "--token", "{token}", setup=LEASE_REACQUIRED)
lease.invalid("release-late-force", 4,
              "error: lease {lease} is released, not active; nothing to release", *RELEASE,
              "{lease}", "--force", setup=LEASE_REACQUIRED)
lease.invalid("release-id-not-a-number", 2,
              "error: invalid value for LEASE_ID: 'first' is not a whole number", *RELEASE,
              "first", "--token", "{token}",
              setup=LEASE_HELD)
lease.compare("list", "lease-list.txt", "lease", "list", setup=LEASE_HELD)
lease.compare("list-all", "lease-list-all.txt", "lease", "list", "--all", setup=LEASE_REACQUIRED)
lease.valid("list-json", "lease", "list", "--json",
            stdout_has=('"id": {lease}', '"token": null', '"mac": "52:54:00:00:00:01"'),
            stdout_lacks=("{token}",), setup=LEASE_HELD)
lease.valid("list-pool", "lease", "list", "--pool", "net", stdout_has=("vm1",), setup=LEASE_HELD)
lease.valid("list-other-pool", "lease", "list", "--pool", "v", "--json", stdout_has=("[]",),
            setup=LEASE_HELD)
lease.valid("list-owner", "lease", "list", "--owner", "vm1", "--json",
            stdout_has=('"owner": "vm1"',), setup=LEASE_HELD)
lease.valid("list-other-owner", "lease", "list", "--owner", "vm2",
            stdout_has=("ID  POOL  OWNER  STATE  MODE  VF  NETDEV  MAC  VLAN  NUMA",),
            stdout_lacks=("vm1",), setup=LEASE_HELD,
            stderr="no leases match; `vfpool lease list --all` includes released ones; lease a "
                   "VF with `vfpool lease acquire POOL --owner OWNER`")
lease.valid("list-released-hidden", "lease", "list", "--json", stdout_has=("[]",),
            setup=LEASE_RELEASED)
lease.valid("list-all-json", "lease", "list", "--all", "--json",
            stdout_has=('"state": "released"',), stdout_lacks=("{token}",), setup=LEASE_RELEASED)
lease.valid("list-empty", "lease", "list", "--json", stdout_has=("[]",), setup=EMPTY_SIM)
lease.invalid("list-unknown-pool", 3, "error: no pool named 'nope'", "lease", "list", "--pool",
              "nope", setup=LEASE_HELD)
lease.valid("show", "lease", "show", "{lease}",
            stdout_has=("owner        vm1", "mac          52:54:00:00:00:01",
                        "vf           0 0000:05:10.0 (enp5s0f0v0)",
                        "\nFIELD            SAVED              APPLIED\n",
                        "\nmac              00:00:00:00:00:00  52:54:00:00:00:01\n"),
            stdout_lacks=("{token}", "{'", "None"), setup=LEASE_HELD)
lease.valid("show-json", "lease", "show", "{lease}", "--json",
            stdout_has=('"saved_config": {', '"applied_config": {', '"token": null'),
            stdout_lacks=("{token}",), setup=LEASE_HELD)
lease.valid("show-released", "lease", "show", "{lease}", "--json",
            stdout_has=('"state": "released"',), setup=LEASE_RELEASED)
lease.invalid("show-unknown", 3, "error: no lease 99", "lease", "show", "99", setup=LEASE_HELD)
lease.invalid("show-not-a-number", 2,
              "error: invalid value for LEASE_ID: 'one' is not a whole number", "lease", "show",
              "one", setup=LEASE_HELD)
lease.invalid("show-missing", 2, "error: missing argument LEASE_ID", "lease", "show",
              setup=LEASE_HELD)
reconcile.valid("reconcile", "reconcile", stdout_has=("nothing to repair",))
reconcile.valid("reconcile-after-release", "reconcile", stdout_has=("nothing to repair",),
                setup=LEASE_REACQUIRED)
reconcile.valid("reconcile-dry-run", "reconcile", "--dry-run", stdout_has=("nothing to repair",))
reconcile.valid("reconcile-json", "reconcile", "--json",
                stdout_has=('"findings": []', '"dry_run": false'))
reconcile.invalid("reconcile-unknown-option", 2, "error: no such option: --bogus", "reconcile",
                  "--bogus", setup=EMPTY_SIM)
