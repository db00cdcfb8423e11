"""Reading the guest's kernel back, independently of vfpool, and resetting it between tests.

Everything a test asserts about the host comes from here: ``ip -j -d link`` (iproute2's own
netlink reader), sysfs files read directly, and ``/proc/modules``; never from vfpool's reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

PF_ADDRESSES = ("0000:00:03.0", "0000:00:03.1")
DEVICES = Path("/sys/bus/pci/devices")
CACHE = Path(__file__).resolve().parents[3] / ".cache" / "realkernel"
RESULTS = Path(os.environ.get("VFPOOL_REALKERNEL_RESULTS", "/nonexistent"))
MODPROBE_CONF = Path("/etc/modprobe.d/vfpool-igb.conf")

# Where the guest's time goes, by kind ("run ip", "wait the PF's netdev", "baseline", ...):
# [count, seconds]. The guest conftest writes it to records/timing-N.json at session end.
TIMES: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def timed(kind: str, started: float) -> None:
    entry = TIMES[kind]
    entry[0] += 1
    entry[1] += time.monotonic() - started


def uptime() -> float:
    """The guest's uptime, the clock of the console's rk-guest lines."""
    return float(Path("/proc/uptime").read_text().split()[0])


def run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    timed(f"run {' '.join(argv[:2]) if argv[0] in ('ip', 'udevadm', 'modprobe') else argv[0]}",
          started)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): "
                             f"{result.stderr.strip()}")
    return result


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll with a deadline (udev and the VF drivers act asynchronously); fail naming it."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {timeout:g} s")
            time.sleep(0.2)
    finally:
        timed(f"wait {what}", started)


def read(path: Path | str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def attr(bdf: str, name: str) -> str | None:
    return read(DEVICES / bdf / name)


def driver(bdf: str) -> str | None:
    link = DEVICES / bdf / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def numvfs(pf: str) -> int:
    return int(attr(pf, "sriov_numvfs") or 0)


def virtfns(pf: str) -> list[str]:
    """The VF addresses from the PF's virtfnN links, in index order."""
    folder = DEVICES / pf
    links = sorted((int(name[6:]), name) for name in os.listdir(folder)
                   if name.startswith("virtfn"))
    return [os.path.basename(os.readlink(folder / name)) for _, name in links]


def netdevs_of(bdf: str) -> list[str]:
    folder = DEVICES / bdf / "net"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def pf_netdev(pf: str) -> str:
    names = netdevs_of(pf)
    assert names, f"PF {pf} has no netdev"
    return names[0]


def ip_links() -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = json.loads(run("ip", "-j", "-d", "link", "show").stdout)
    return links


def ip_link(name: str) -> dict[str, Any]:
    [link] = json.loads(run("ip", "-j", "-d", "link", "show", "dev", name).stdout)
    return dict(link)


def vfinfo(pf: str) -> dict[int, dict[str, Any]]:
    """The PF's VF list as `ip -j -d link` prints it, by VF index, flattened: mac, vlan, qos,
    spoofchk, trust, link_state, max_tx_rate, min_tx_rate."""
    found = {}
    for entry in ip_link(pf_netdev(pf)).get("vfinfo_list", []):
        vlans = [v for v in entry.get("vlan_list", []) if v]
        rate = entry.get("rate", {})
        found[entry["vf"]] = {
            "mac": entry.get("address"),
            "vlan": vlans[0].get("vlan", 0) if vlans else 0,
            "qos": vlans[0].get("qos", 0) if vlans else 0,
            "spoofchk": entry.get("spoofchk"), "trust": entry.get("trust"),
            "link_state": entry.get("link_state"),
            "max_tx_rate": rate.get("max_tx", 0), "min_tx_rate": rate.get("min_tx", 0)}
    return found


def loaded(module: str) -> bool:
    return any(line.split()[0] == module for line in Path("/proc/modules").read_text()
               .splitlines())


def macvtaps() -> list[str]:
    # No macvtap class (the module never loaded) or an empty one: none, without an `ip` process.
    folder = Path("/sys/class/macvtap")
    if not folder.is_dir() or not os.listdir(folder):
        return []
    return [link["ifname"] for link in ip_links()
            if link.get("linkinfo", {}).get("info_kind") == "macvtap"]


def is_up(netdev: str) -> bool:
    """IFF_UP, read from sysfs (no `ip` process: each costs about a second under TCG)."""
    return bool(int(read(f"/sys/class/net/{netdev}/flags") or "0", 16) & 0x1)


def baseline() -> None:
    """The state every test starts from: igb (no options) and igbvf loaded, both PFs up with
    no VFs and autoprobe on, no vfpool modprobe.d file, vfio-pci unloaded, no macvtap.

    Only what differs from that state is changed: a module reload, a process or a udev settle
    each cost seconds under TCG, and most tests leave most of it as they found it."""
    started = time.monotonic()
    try:
        _baseline()
    finally:
        timed("baseline", started)


def _baseline() -> None:
    for name in macvtaps():
        run("ip", "link", "del", name, check=False)
    param = read("/sys/module/igb/parameters/max_vfs")
    settle = False
    if MODPROBE_CONF.exists() or not loaded("igb") or param not in (None, "0"):
        MODPROBE_CONF.unlink(missing_ok=True)
        run("modprobe", "-r", "igb", check=False)
        run("modprobe", "igb")
        settle = True
    wait_for("both igb PFs with netdevs", lambda: all(netdevs_of(pf) for pf in PF_ADDRESSES))
    for pf in PF_ADDRESSES:
        if numvfs(pf):
            (DEVICES / pf / "sriov_numvfs").write_text("0\n")
            settle = True
        if attr(pf, "sriov_drivers_autoprobe") != "1":
            (DEVICES / pf / "sriov_drivers_autoprobe").write_text("1\n")
    if settle:
        # udev renames fresh netdevs (eth0 -> enp0s3f0) just after they appear, and handles
        # the removed VFs' events; let it finish before the names are used.
        run("udevadm", "settle", "--timeout=120", check=False)
    # settle misses an event udevd has not read yet, and a test that reloaded igb itself may
    # leave its netdevs still to be renamed (CI once found eth0 gone between reading the name
    # and `ip link set eth0 up`): wait for udev's entry of each PF netdev, which udev writes
    # after the rename. Cheap when there is nothing to wait for.
    wait_for("udev done with both PFs' netdevs", lambda: all(
        Path(f"/run/udev/data/n{read(f'/sys/class/net/{name}/ifindex')}").exists()
        for pf in PF_ADDRESSES for name in netdevs_of(pf)))
    for pf in PF_ADDRESSES:
        if not is_up(pf_netdev(pf)):
            run("ip", "link", "set", pf_netdev(pf), "up")
    if loaded("vfio_pci"):
        run("modprobe", "-r", "vfio-pci", check=False)
    if not loaded("igbvf"):
        run("modprobe", "igbvf")
    wait_for("both PFs up", lambda: all(read(f"/sys/class/net/{pf_netdev(pf)}/operstate")
                                        == "up" for pf in PF_ADDRESSES))


def record(name: str, data: object) -> None:
    """Leave a JSON record in the results share for the host-side checks."""
    folder = RESULTS / "records"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temporary, folder / f"{name}.json")


def qemu_env() -> dict[str, str]:
    """The cached QEMU 10 (the host's / shows the cache at the same path)."""
    return {"QEMU_MODULE_DIR": str(CACHE / "qemu/usr/lib/x86_64-linux-gnu/qemu")}


QEMU = CACHE / "qemu/usr/bin/qemu-system-x86_64"
QEMU_FIRMWARE = ["-L", str(CACHE / "qemu/usr/share/seabios"), "-L",
                 str(CACHE / "qemu/usr/share/qemu"), "-L", "/usr/share/qemu"]
