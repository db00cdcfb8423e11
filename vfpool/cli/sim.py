"""`vfpool sim`: build and drive simulated hosts."""

from __future__ import annotations

import errno as errno_module
from pathlib import Path

import typer

from vfpool.cli.core import VfpoolTyper
from vfpool.cli.render import emit, emit_json, note, table
from vfpool.errors import InvalidInput
from vfpool.host.identity import NAME, write_identity
from vfpool.host.sysfs import valid_ifname
from vfpool.sim.host import FaultKind, SimHost
from vfpool.sim.profiles import PROFILES

app = VfpoolTyper(help="Simulated SR-IOV hosts for tests and the demo.")


@app.command("create")
def create(
    directory: Path = typer.Argument(..., metavar="DIR", help="Where to build the host tree."),
    nics: list[str] = typer.Option([], "--nic", metavar="PROFILE[@BDF][:numa=N][:totalvfs=N]",
                                   help="A NIC to install; repeat for more. Default: a "
                                        "dual-port 82599 on NUMA 0 and an X710 on NUMA 1."),
    force: bool = typer.Option(False, "--force", help="Replace an existing simulated host."),
    netns: str | None = typer.Option(None, "--netns", metavar="NAME",
                                     help="A network namespace whose links stand in for the "
                                          "VF netdevs (for real macvtap and QEMU tests)."),
    hostname: str | None = typer.Option(None, "--hostname", metavar="NAME",
                                        help="The host's name in a shared store (default: "
                                             "DIR's name); it also gets a random machine id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Build a simulated host from NIC profiles.

    \b
    Example:
      vfpool sim create /tmp/host --nic intel-i350@0000:03:00.0 --nic mellanox-cx3
    """
    if netns is not None and not valid_ifname(netns):
        raise InvalidInput(f"invalid network namespace name {netns!r}")
    name = hostname if hostname is not None else directory.resolve().name
    if not NAME.fullmatch(name):
        raise InvalidInput(f"invalid --hostname {name!r}: use letters, digits, '.', '_' and "
                           "'-', starting with a letter or digit")
    host = SimHost.create(directory, nics or None, force=force, netns=netns)
    write_identity(host.root, name)
    state = host.state()
    pfs = [{"pci": pci, "profile": pf["profile"], "netdevs": pf["netdevs"],
            "numa_node": pf["numa_node"], "totalvfs": pf["totalvfs"]}
           for pci, pf in sorted(state["pfs"].items())]
    if as_json:
        emit_json({"root": str(host.root), "boot_id": host.boot_id(), "pfs": pfs})
        return
    emit(table(["PCI", "NETDEV", "PROFILE", "NUMA", "TOTALVFS"],
               [[pf["pci"], ",".join(pf["netdevs"]), pf["profile"], pf["numa_node"],
                 pf["totalvfs"]] for pf in pfs]))
    note(f"simulated host ready at {host.root}; use --sim {directory} or VFPOOL_SIM")


@app.command("profiles")
def profiles(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the NIC profiles a simulated host can have.

    \b
    Example:
      vfpool sim profiles --json
    """
    rows = [{"name": p.name, "card": p.card, "vendor": f"{p.vendor:04x}",
             "device": f"{p.pf_device:04x}", "vf_device": f"{p.vf_device:04x}",
             "driver": p.pf_driver, "vf_driver": p.vf_driver, "pfs": p.pfs,
             "ports_per_pf": p.ports_per_pf, "totalvfs": p.totalvfs, "offset": p.offset,
             "stride": p.stride, "module_param": p.module_param, "sysfs": p.sysfs_resize}
            for p in PROFILES.values()]
    if as_json:
        emit_json(rows)
        return
    emit(table(["PROFILE", "DRIVER", "ID", "PFS", "TOTALVFS", "OFFSET/STRIDE", "RESIZE", "CARD"],
               [[r["name"], r["driver"], f"{r['vendor']}:{r['device']}", r["pfs"],
                 r["totalvfs"], f"{r['offset']}/{r['stride']}",
                 "+".join(filter(None, ["sysfs" if r["sysfs"] else "",
                                        str(r["module_param"] or "")])), r["card"]]
                for r in rows]))


@app.command("reboot")
def reboot(directory: Path = typer.Argument(..., metavar="DIR")) -> None:
    """Reboot a simulated host: sysfs-sized VFs are gone, module-param VFs come back, and the
    boot id changes.

    \b
    Example:
      vfpool sim reboot /tmp/host
    """
    host = SimHost(directory)
    host.reboot()
    note(f"rebooted {host.root}; boot id {host.boot_id()}")


@app.command("fault")
def fault(
    directory: Path = typer.Argument(..., metavar="DIR"),
    target: str | None = typer.Argument(None, metavar="PATH|modprobe:MODULE|netlink:PF_NETDEV",
                                        help="A sysfs file relative to DIR, modprobe:MODULE, "
                                             "or netlink:PF_NETDEV for VF config."),
    errno: str | None = typer.Option(None, "--errno", help="Fail with this errno (EIO, EBUSY…)."),
    ignore: bool = typer.Option(False, "--ignore", help="Report success and do nothing."),
    no_netdev: bool = typer.Option(False, "--no-netdev",
                                   help="VFs appear without netdevs (sriov_numvfs only)."),
    hang: bool = typer.Option(False, "--hang",
                              help="Block the write until `sim fault DIR --clear`."),
    count: int = typer.Option(1, "--count", min=1, max=1_000_000,
                               help="How many writes misbehave."),
    clear: bool = typer.Option(False, "--clear", help="Remove every injected fault."),
) -> None:
    """Make the next writes to a file of a simulated host fail.

    \b
    Example:
      vfpool sim fault /tmp/host sys/bus/pci/devices/0000:05:00.0/sriov_numvfs --errno EIO
    """
    choices: list[tuple[FaultKind, bool]] = [("errno", errno is not None), ("ignore", ignore),
                                             ("no-netdev", no_netdev), ("hang", hang)]
    kinds = [kind for kind, chosen in choices if chosen]
    if clear:
        if kinds or target is not None:
            raise InvalidInput("--clear takes no PATH and no fault kind")
        SimHost(directory).clear_faults()
        note("cleared all faults")
        return
    if target is None:
        raise InvalidInput("missing PATH|modprobe:MODULE|netlink:PF_NETDEV")
    if len(kinds) != 1:
        raise InvalidInput("give exactly one of --errno, --ignore, --no-netdev and --hang")
    code = None
    if errno is not None:
        code = getattr(errno_module, errno.upper(), None) if not errno.isdigit() else int(errno)
        if not isinstance(code, int) or not 0 < code < 4096:  # the kernel's MAX_ERRNO
            raise InvalidInput(f"unknown errno {errno!r}; use a name such as EIO or EBUSY")
    made = SimHost(directory).inject_fault(target, kind=kinds[0], errno_code=code, count=count)
    note(f"the next {made.remaining} write(s) to {made.target} will {made.kind}"
         + (f" {errno}" if errno else ""))
