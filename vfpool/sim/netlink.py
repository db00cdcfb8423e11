"""The simulated rtnetlink: VF configuration through the PF, and netdev MTU and link state.

``Netlink`` answers as rtnetlink's do_setvfinfo() and each PF driver's ndo_set_vf_* callbacks
do, on a ``Tree`` whose state the caller has locked. The tables below are the sim's own
beliefs about the drivers, each with its source; they are deliberately kept apart from
``vfpool.model.drivers`` so that the two can be checked against each other.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Literal

from vfpool.errors import NotFound
from vfpool.model.vfconfig import LINK_STATE_CODES, VfConfig
from vfpool.sim import link
from vfpool.sim.profiles import NicProfile
from vfpool.sim.tree import Tree, oserror, vf_mac, write

# VF config fields a PF driver has no ndo_set_vf_* callback for: rtnetlink's do_setvfinfo()
# (net/core/rtnetlink.c) answers EOPNOTSUPP. Rates are per part and per value: _rate_errno().
UNSUPPORTED_VF_FIELDS = {
    # igb_netdev_ops (igb/igb_main.c) has no ndo_set_vf_link_state; checked on the real igb.
    "igb": {"link_state"},
    # mlx4_netdev_ops_master (mlx4/en_netdev.c) has no ndo_set_vf_trust.
    "mlx4_core": {"trust"},
}
# PF drivers whose ndo_set_vf_mac() leaves a bound VF driver with its old MAC until the VF
# driver is probed again: igb_ndo_set_vf_mac() (igb/igb_main.c) and ixgbe_ndo_set_vf_mac()
# (ixgbe/ixgbe_sriov.c) both say "Reload the VF driver to make this change effective"; seen
# on the real igb. i40e and ice reset the VF themselves, so its driver takes the MAC at once.
MAC_AT_VF_PROBE = frozenset({"igb", "ixgbe"})
VF_DEFAULTS = {"vlan": 0, "qos": 0, "spoofchk": True, "trust": False, "link_state": "auto",
               "min_tx_rate": 0, "max_tx_rate": 0}


class Netlink:
    """rtnetlink's side of the sim, on a locked ``Tree``."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.state = tree.state

    def _pf_by_netdev(self, netdev: str) -> str:
        bdf = self.tree.pf_by_netdev(netdev)
        if bdf is None:
            raise oserror(errno.ENODEV, netdev)
        return bdf

    def _vf_config(self, pf_bdf: str, index: int, vf_bdf: str) -> dict[str, Any]:
        config = dict(VF_DEFAULTS)
        config["mac"] = vf_mac(self.tree.profile(pf_bdf), vf_bdf)
        config.update(self.state["vf_config"].get(f"{pf_bdf}/{index}", {}))
        return config

    def vf_configs(self, pf_netdev: str) -> dict[int, VfConfig]:
        pf_bdf = self._pf_by_netdev(pf_netdev)
        return {index: VfConfig.from_dict(self._vf_config(pf_bdf, index, vf_bdf))
                for index, vf_bdf in self.tree.vfs_of(pf_bdf)}

    def vf_config(self, pf_netdev: str, index: int) -> VfConfig | None:
        pf_bdf = self._pf_by_netdev(pf_netdev)
        vf_bdf = self.tree.vf_of(pf_bdf, index)
        if vf_bdf is None:
            return None
        return VfConfig.from_dict(self._vf_config(pf_bdf, index, vf_bdf))

    def set_vf(self, pf_netdev: str, index: int, field: str, config: VfConfig) -> None:
        """rtnetlink do_setvfinfo() and the PF driver's ndo_set_vf_* callbacks."""
        tree = self.tree
        key = f"netlink:{pf_netdev}"
        pf_bdf = self._pf_by_netdev(pf_netdev)
        vf_bdf = tree.vf_of(pf_bdf, index)
        if vf_bdf is None:
            raise oserror(errno.EINVAL, key)  # a VF index at or above numvfs
        profile = tree.profile(pf_bdf)
        driver = profile.pf_driver
        unsupported = UNSUPPORTED_VF_FIELDS.get(driver, set())
        changes: dict[str, Any] = {}
        if field == "mac":
            mac = config.mac or "00:00:00:00:00:00"
            if int(mac[:2], 16) & 1:
                raise oserror(errno.EINVAL, key)  # is_valid_ether_addr()
            changes["mac"] = mac
            # igb_ndo_set_vf_mac(): a valid MAC sets IGB_VF_FLAG_PF_SET_MAC, a zero one clears
            # it (so that a libvirt-style restore of a zero MAC gives the VF its own back).
            changes["mac_admin"] = mac != "00:00:00:00:00:00"
        elif field == "vlan":
            if (config.vlan or 0) > 4095 or (config.qos or 0) > 7:
                raise oserror(errno.EINVAL, key)
            changes.update(vlan=config.vlan or 0, qos=config.qos or 0)
        elif field == "rate":
            refused = _rate_errno(profile, self.state["pfs"][pf_bdf],
                                  config.min_tx_rate or 0, config.max_tx_rate or 0)
            if refused:
                raise oserror(refused, key)
            changes.update(min_tx_rate=config.min_tx_rate or 0,
                           max_tx_rate=config.max_tx_rate or 0)
        elif field in ("spoofchk", "trust"):
            if field in unsupported:
                raise oserror(errno.EOPNOTSUPP, key)
            changes[field] = bool(getattr(config, field))
        elif field == "link_state":
            if "link_state" in unsupported:
                raise oserror(errno.EOPNOTSUPP, key)
            if (config.link_state or "auto") not in LINK_STATE_CODES:
                raise oserror(errno.EINVAL, key)
            changes["link_state"] = config.link_state or "auto"
        else:
            raise oserror(errno.EINVAL, key)
        self.state["vf_config"].setdefault(f"{pf_bdf}/{index}", {}).update(changes)
        net = tree.dev(vf_bdf) / "net"
        if "mac" in changes and driver not in MAC_AT_VF_PROBE and net.is_dir():
            # The VF driver picks up the MAC the PF assigned (igb and ixgbe: only when the
            # VF driver is probed again, see model/drivers.py).
            for name in os.listdir(net):
                write(net / name / "address", f"{changes['mac']}\n")

    def set_link(self, netdev: str, *, mtu: int | None = None, up: bool | None = None) -> None:
        net = self.tree.root / "sys/class/net" / netdev
        if not net.exists():
            raise oserror(errno.ENODEV, netdev)
        if mtu is not None:
            if not 68 <= mtu <= 9216:
                raise oserror(errno.EINVAL, netdev)
            write(net / "mtu", f"{mtu}\n")
        if up is not None:
            pf_bdf = self.tree.pf_by_netdev(netdev)
            if pf_bdf is None:
                write(net / "operstate", "up\n" if up else "down\n")
            else:
                link.set_admin(self.tree.root, self.state["pfs"][pf_bdf], up)

    def set_operstate(self, netdev: str, operstate: Literal["up", "down"]) -> None:
        """A PF port's link going down (its cable pulled, or the switch port down), or up
        again: cable in and the port up, as an admin would leave it."""
        pf_bdf = self.tree.pf_by_netdev(netdev)
        if pf_bdf is None:
            raise NotFound(f"no PF netdev {netdev!r} on the simulated host")
        pf = self.state["pfs"][pf_bdf]
        if operstate == "up":
            pf["admin"] = True
        link.set_cable(self.tree.root, pf, operstate == "up")

    def set_link_bounce(self, netdev: str, seconds: float | None) -> None:
        """How long the PF port's carrier stays down after a sizing bounce; None: it does not
        come back by itself (a link partner that never renegotiates)."""
        pf_bdf = self.tree.pf_by_netdev(netdev)
        if pf_bdf is None:
            raise NotFound(f"no PF netdev {netdev!r} on the simulated host")
        self.state["pfs"][pf_bdf]["bounce"] = seconds


def _rate_errno(profile: NicProfile, pf: dict[str, Any], min_rate: int,
                max_rate: int) -> int | None:
    """The PF driver's ndo_set_vf_rate() for one VF: None when it takes the rates, else the
    errno it returns. Checked against the real igb (82576) in tests/realkernel."""
    driver, link_up, speed = profile.pf_driver, link.carrier(pf), profile.link_mbps
    if profile.vf_rate == "none":
        return errno.EOPNOTSUPP  # igb_ndo_set_vf_bw(): every igb part but the 82576
    if driver == "igb":
        # igb_ndo_set_vf_bw(): min_tx_rate, link down (STATUS.LU clear), above the link speed.
        if min_rate or not link_up or max_rate > speed:
            return errno.EINVAL
    elif driver == "ixgbe":
        # ixgbe_ndo_set_vf_bw() (ixgbe_sriov.c): link up at 10 Gb/s, no min_tx_rate, and a
        # max_tx_rate of 0 or in (10, link speed].
        if not link_up or speed != 10000 or min_rate or (
                max_rate and (max_rate <= 10 or max_rate > speed)):
            return errno.EINVAL
    elif driver == "i40e":
        # i40e_ndo_set_vf_bw() (i40e_virtchnl_pf.c): "Invalid min tx rate", and
        # i40e_set_bw_limit(): above the link speed.
        if min_rate or max_rate > speed:
            return errno.EINVAL
    elif driver == "mlx4_core" and min_rate:
        return errno.EPROTONOSUPPORT  # mlx4_set_vf_rate(): "Minimum BW share not supported"
    elif driver in ("ice", "mlx5_core") and max_rate and min_rate > max_rate:
        return errno.EINVAL  # ice_set_vf_bw(), mlx5 esw_qos: min above max
    return None
