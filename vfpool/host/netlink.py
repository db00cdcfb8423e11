"""VF configuration through the PF, over rtnetlink, and netdev MTU and link state.

``vfpool.ports.NetlinkPort`` is what the services use; ``PyRoute2Netlink`` speaks to the
kernel, and the simulator implements the same port. Kernel errors arrive as ``OSError`` with
the errno (EOPNOTSUPP for a field the driver lacks, EINVAL for a bad VF index or value).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from vfpool.errors import KernelRefusal
from vfpool.host import rtnl
from vfpool.model.vfconfig import LINK_STATE_CODES, VfConfig
from vfpool.ports import VF_FIELDS


def vf_request(index: int, field: str, config: VfConfig) -> dict[str, Any]:
    """The ``vf=`` argument of ``IPRoute.link("set", …)`` for one field group."""
    if field == "mac":
        return {"vf": index, "mac": config.mac}
    if field == "vlan":
        return {"vf": index, "vlan": {"vlan": config.vlan or 0, "qos": config.qos or 0}}
    if field == "rate":
        return {"vf": index, "rate": {"min_tx_rate": config.min_tx_rate or 0,
                                      "max_tx_rate": config.max_tx_rate or 0}}
    if field in ("spoofchk", "trust"):
        return {"vf": index, field: int(bool(getattr(config, field)))}
    if field == "link_state":
        return {"vf": index, "link_state": LINK_STATE_CODES[config.link_state or "auto"]}
    raise ValueError(f"unknown VF field {field!r}")


def fields_for(config: VfConfig) -> list[str]:
    """The field groups that ``config`` sets, in ``VF_FIELDS`` order."""
    wanted = config.set_fields()
    groups = []
    for field in VF_FIELDS:
        keys = {"vlan": ("vlan", "qos"), "rate": ("min_tx_rate", "max_tx_rate")}.get(
            field, (field,))
        if any(key in wanted for key in keys):
            groups.append(field)
    return groups


def pf_driver(pf_netdev: str, root: Path = Path("/")) -> str | None:
    """The driver behind a PF netdev (``/sys/class/net/PF/device/driver``), if any."""
    try:
        return os.path.basename(os.readlink(root / "sys/class/net" / pf_netdev /
                                            "device/driver"))
    except OSError:
        return None


def refusal(exc: OSError, pf_netdev: str, index: int, field: str, config: VfConfig,
            root: Path = Path("/")) -> KernelRefusal:
    """The kernel's refusal of one VF field as an OSError whose text names the PF's driver
    and, where the driver's rule is known, why (the errno alone rarely says)."""
    code = exc.errno or errno.EIO
    driver = pf_driver(pf_netdev, root)
    who = f"driver {driver}" if driver else f"PF {pf_netdev} (no driver bound)"
    why = ""
    if code == errno.EOPNOTSUPP:
        why = f"; {driver or 'it'} does not implement VF {field}"
    elif field == "rate" and code == errno.EINVAL:
        operstate = _read_text(root / "sys/class/net" / pf_netdev / "operstate")
        speed = _read_text(root / "sys/class/net" / pf_netdev / "speed")
        if driver == "igb" and config.min_tx_rate:
            # igb_ndo_set_vf_bw(): a nonzero min_tx_rate is always EINVAL.
            why = "; igb has no minimum VF rate (min_tx_rate must be 0)"
        elif operstate != "up":
            why = f"; the PF link is {operstate or 'unknown'}, and {driver} refuses VF rates " \
                  "until it is up"
        elif speed and speed.lstrip("-").isdigit() and int(speed) > 0 and \
                (config.max_tx_rate or 0) > int(speed):
            why = f"; {config.max_tx_rate} Mbit/s is above the PF's link speed ({speed})"
    return KernelRefusal(code, f"{who} refused {field} on VF {index} of {pf_netdev}: "
                               f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"
                               f"{why}", driver=driver, why=why)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class PyRoute2Netlink:
    """The real kernel: writes through pyroute2's IPRoute (``ipr_factory`` is the test seam),
    the VF table read over a plain rtnetlink socket (``vfpool.host.rtnl`` says why)."""

    def __init__(self, ipr_factory: Any = None) -> None:
        if ipr_factory is None:
            from pyroute2 import IPRoute

            ipr_factory = IPRoute
        self._factory = ipr_factory

    def _call(self, action: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._factory()
        try:
            return action(ipr)
        except NetlinkError as exc:
            raise OSError(exc.code, errno.errorcode.get(exc.code, str(exc.code))) from exc
        finally:
            ipr.close()

    @staticmethod
    def _index(ipr: Any, netdev: str) -> int:
        found = ipr.link_lookup(ifname=netdev)
        if not found:
            raise OSError(errno.ENODEV, f"no network interface {netdev}")
        return int(found[0])

    def vf_configs(self, pf_netdev: str) -> dict[int, VfConfig]:
        return rtnl.vf_table(rtnl.read_link(pf_netdev))

    def vf_config(self, pf_netdev: str, index: int) -> VfConfig | None:
        return rtnl.vf_table(rtnl.read_link(pf_netdev), only=index).get(index)

    def set_vf(self, pf_netdev: str, index: int, field: str, config: VfConfig) -> None:
        request = vf_request(index, field, config)
        try:
            self._call(lambda ipr: ipr.link("set", index=self._index(ipr, pf_netdev),
                                            vf=request))
        except OSError as exc:
            # The chain keeps pyroute2's NetlinkError as the cause, as _call() made it.
            raise refusal(exc, pf_netdev, index, field, config) from exc.__cause__ or exc

    def set_link(self, netdev: str, *, mtu: int | None = None, up: bool | None = None) -> None:
        arguments: dict[str, Any] = {}
        if mtu is not None:
            arguments["mtu"] = mtu
        if up is not None:
            arguments["state"] = "up" if up else "down"
        if arguments:
            self._call(lambda ipr: ipr.link("set", index=self._index(ipr, netdev), **arguments))
