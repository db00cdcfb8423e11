"""The CLI matrix of the host commands: `vfpool pf`, `sim` and `db`, `watch` and --version, on
the default simulated host."""

from __future__ import annotations

from tests.cli.clitest import Category

pf = Category("pf", doc="the host's SR-IOV PFs")
sim = Category("sim", doc="simulated hosts: create, reboot, fault")
db = Category("db", doc="the store's schema")
misc = Category("misc", doc="watch and --version")
fleet = Category("fleet", doc="the hosts sharing a store, and placement across them")
CATEGORIES = [pf, sim, db, misc, fleet]

pf.compare("pf-list", "pf-list.txt", "pf", "list")
pf.compare("pf-list-json", "pf-list.json", "pf", "list", "--json")
pf.compare("pf-show-netdev", "pf-show-enp5s0f0.txt", "pf", "show", "enp5s0f0")
pf.compare("pf-show-json", "pf-show-85-00-1.json", "pf", "show", "0000:85:00.1", "--json")
pf.valid("pf-show-short-bdf", "pf", "show", "85:00.0", stdout_has=("enp133s0f0",))
pf.invalid("pf-show-traversal", 2,
           "error: invalid PF '../../etc/passwd': expected a PCI address such as 0000:05:00.0 "
           "or an interface name such as enp5s0f0", "pf", "show", "../../etc/passwd")
pf.invalid("pf-show-unknown-name", 3,
           "error: no PF named 'enp9s0f0': no such PCI address or network interface on this "
           "host", "pf", "show", "enp9s0f0")
pf.invalid("pf-show-unknown-bdf", 3, "error: no PCI device 0000:99:00.0 on this host", "pf", "show",
           "0000:99:00.0")
pf.invalid("pf-show-not-sriov", 2,
           "error: 0000:00:1f.6 (eno1) is not SR-IOV capable (driver e1000e)", "pf", "show",
           "eno1")
pf.invalid("pf-show-virtual", 2,
           "error: interface lo is not a PCI device, so it cannot be a PF", "pf", "show", "lo")
pf.invalid("pf-show-bad-bdf-slot", 2,
           "error: invalid PCI address '0000:05:20.0': slot 0x20 is above 0x1f", "pf", "show",
           "0000:05:20.0")
pf.invalid("pf-show-missing-arg", 2, "error: missing argument PF", "pf", "show")
pf.invalid("pf-list-unknown-option", 2, "error: no such option: --bogus", "pf", "list", "--bogus")
sim.invalid("sim-dir-missing", 3,
            "error: {tmp}/nope is not a simulated host (no sim.json); create one with "
            "`vfpool sim create {tmp}/nope`", "--sim", "{tmp}/nope", "pf", "list", use_sim=False)
sim.compare("sim-profiles", "sim-profiles.txt", "sim", "profiles")
sim.valid("sim-profiles-json", "sim", "profiles", "--json", stdout_has=('"mellanox-cx3"',))
sim.valid("sim-create", "sim", "create", "{tmp}/new", "--nic", "intel-i350@0000:03:00.0", "--nic",
          "mellanox-cx3:numa=1", stdout_has=("enp3s0f0", "enp3s0f1", "enp5s0,enp5s0d1"),
          use_sim=False)
sim.valid("sim-create-json", "sim", "create", "{tmp}/new", "--nic", "mellanox-cx5", "--json",
          stdout_has=('"enp5s0f1np0"',), use_sim=False)
sim.invalid("sim-create-unknown-profile", 2,
            "error: unknown NIC profile 'intel-e1000'; `vfpool sim profiles` lists them: "
            "intel-82576, intel-82599, intel-e810, intel-i350, intel-x710, mellanox-cx3, "
            "mellanox-cx5", "sim", "create", "{tmp}/new", "--nic", "intel-e1000", use_sim=False)
sim.invalid("sim-create-bad-spec", 2,
            "error: invalid NIC spec 'intel-x710@05:00': expected PROFILE[@BDF][:numa=N]"
            "[:totalvfs=N], for example intel-82599@0000:05:00.0:numa=0", "sim", "create",
            "{tmp}/new", "--nic", "intel-x710@05:00", use_sim=False)
sim.invalid("sim-create-bad-numa", 2,
            "error: invalid NIC spec 'intel-x710:numa=x': numa must be an integer from -1 to 63",
            "sim", "create", "{tmp}/new", "--nic", "intel-x710:numa=x", use_sim=False)
sim.invalid("sim-create-overlap", 2,
            "error: NIC intel-x710 at 0000:05:00.0 overlaps the PCI addresses of another "
            "device; pick another @BDF", "sim", "create", "{tmp}/new", "--nic",
            "intel-82599@0000:05:00.0", "--nic", "intel-x710@0000:05:00.0", use_sim=False)
sim.invalid("sim-create-exists", 4,
            "error: {sim} already exists and is not empty; pass --force to rebuild the "
            "simulated host there", "sim", "create", "{sim}")
sim.valid("sim-create-force", "sim", "create", "{sim}", "--force", stdout_has=("enp5s0f0",))
sim.invalid("sim-create-force-not-sim", 4,
            "error: refusing to replace {tmp}: it is not a simulated host (no sim.json)", "sim",
            "create", "{tmp}", "--force", use_sim=False)
sim.valid("sim-reboot", "sim", "reboot", "{sim}")
sim.invalid("sim-reboot-not-sim", 3,
            "error: {tmp} is not a simulated host (no sim.json); create one with "
            "`vfpool sim create {tmp}`", "sim", "reboot", "{tmp}", use_sim=False)
sim.valid("sim-fault", "sim", "fault", "{sim}", "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs",
          "--errno", "EIO")
sim.invalid("sim-fault-two-kinds", 2,
            "error: give exactly one of --errno, --ignore, --no-netdev and --hang", "sim", "fault",
            "{sim}", "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "--errno", "EIO", "--ignore")
sim.valid("sim-fault-clear", "sim", "fault", "{sim}", "--clear")
sim.invalid("sim-fault-unknown-errno", 2,
            "error: unknown errno 'EWHAT'; use a name such as EIO or EBUSY", "sim", "fault",
            "{sim}", "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "--errno", "EWHAT")
sim.invalid("sim-fault-outside", 2, "error: fault target /etc/passwd is outside the simulated "
            "host", "sim", "fault", "{sim}", "/etc/passwd", "--errno", "EIO")
db.valid("db-upgrade", "--db", "sqlite:///{tmp}/x.db", "db", "upgrade",
         stdout_has=("empty -> 0008",), use_sim=False)
db.valid("db-current", "db", "current", stdout_has=("(head 0008)",))
db.valid("db-current-json-fresh", "db", "current", "--json",
         stdout_has=('"current": null', '"up_to_date": false'))
db.valid("db-current-after-use", "--db", "sqlite:///{tmp}/x.db", "db", "upgrade", "--json",
         stdout_has=('"to": "0008"',), use_sim=False)
db.invalid("db-bad-url", 1, "error: cannot open database nonsense://: Can't load plugin: "
        "sqlalchemy.dialects:nonsense", "--db", "nonsense://", "db", "current", use_sim=False)
misc.invalid("watch-sim", 2, "error: vfpool watch follows this machine's udev, and a simulated "
             "host has none: run it without --sim (or VFPOOL_SIM)", "watch")
misc.valid("version", "--version", stdout_has=("vfpool ",), use_sim=False)

# --- fleet: a store no host has written to has no hosts, and no placement
fleet.valid("host-list-json-empty", "host", "list", "--json", stdout_has=("[]",))
fleet.invalid("fleet-place-nowhere", 5, "error: no host's pool 'tenant' has 1 free VFs now",
              "fleet", "place", "tenant", "--count", "1")
fleet.invalid("fleet-place-no-count", 2, "error: missing option --count K", "fleet", "place",
              "tenant")
fleet.invalid("fleet-place-bad-name", 2,
              "error: invalid pool name 'a/b': use 1 to 64 letters, digits, '_', '.' or '-', "
              "starting with a letter or digit", "fleet", "place", "a/b", "--count", "1")
