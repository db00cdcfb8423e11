"""What vfpool knows about each PF driver (SRIOV-FACTS.md). Pure data.

This is vfpool's own knowledge, kept apart from the simulator's profiles on purpose: the sim is
the world that this table is checked against, so a wrong entry here shows up as a failing test
instead of being mirrored by the sim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParamKind = Literal["scalar", "mlx4-array"]


@dataclass(frozen=True)
class DriverInfo:
    name: str
    sysfs_resize: bool = True  # has sriov_configure; False → ENOENT on sriov_numvfs writes
    module_param: str | None = None  # sizes VFs at module load
    param_kind: ParamKind | None = None
    vf_limit: int | None = None  # the driver's own cap (igb: 7)
    vf_driver: str | None = None  # the net driver its VFs bind to
    # VF config fields the driver rejects with EOPNOTSUPP.
    unsupported_vf_fields: frozenset[str] = frozenset()

    @property
    def module_resize(self) -> bool:
        return self.module_param is not None


DRIVERS: dict[str, DriverInfo] = {
    info.name: info
    for info in (
        # drivers/net/ethernet/intel/igb/igb_main.c:
        # - igb_pci_enable_sriov(): more than 7 VFs is EPERM; igb_probe_vfs() caps max_vfs at 7.
        # - igb_netdev_ops: no ndo_set_vf_link_state (EOPNOTSUPP, seen on the real igb).
        # - igb_ndo_set_vf_bw(): a nonzero min_tx_rate is EINVAL; max_tx_rate only on the 82576
        #   (any other part is EOPNOTSUPP) and only with the PF link up (EINVAL when down).
        DriverInfo("igb", module_param="max_vfs", param_kind="scalar", vf_limit=7,
                   vf_driver="igbvf",
                   unsupported_vf_fields=frozenset({"link_state", "min_tx_rate"})),
        # ixgbe/ixgbe_sriov.c: ixgbe_pci_sriov_enable() and IXGBE_MAX_VFS_DRV_LIMIT (63);
        # ixgbe_ndo_set_vf_bw(): a nonzero min_tx_rate is EINVAL (and max_tx_rate needs the
        # link up at 10 Gb/s); ixgbe_ndo_set_vf_link_state() exists.
        DriverInfo("ixgbe", module_param="max_vfs", param_kind="scalar", vf_limit=63,
                   vf_driver="ixgbevf", unsupported_vf_fields=frozenset({"min_tx_rate"})),
        # i40e/i40e_virtchnl_pf.c i40e_ndo_set_vf_bw(): "Invalid min tx rate" (EINVAL); sysfs
        # only (i40e_pci_sriov_configure()); trust, spoofchk and link state are implemented.
        DriverInfo("i40e", vf_driver="iavf", unsupported_vf_fields=frozenset({"min_tx_rate"})),
        # ice/ice_sriov.c: ice_sriov_configure(), ice_set_vf_bw() takes min and max,
        # ice_set_vf_link_state() and ice_set_vf_trust() exist.
        DriverInfo("ice", vf_driver="iavf"),
        # mellanox/mlx5/core/sriov.c mlx5_core_sriov_configure(); en_main.c has
        # mlx5e_set_vf_rate (min and max), _link_state, _trust and _spoofchk.
        DriverInfo("mlx5_core", vf_driver="mlx5_core"),
        # mellanox/mlx4/main.c: num_vfs/probe_vf module parameters, no sriov_configure (ENOENT
        # on sriov_numvfs); mlx4/cmd.c mlx4_set_vf_rate(): a min_tx_rate is EPROTONOSUPPORT;
        # en_netdev.c mlx4_netdev_ops_master has no ndo_set_vf_trust (EOPNOTSUPP).
        DriverInfo("mlx4_core", sysfs_resize=False, module_param="num_vfs",
                   param_kind="mlx4-array", vf_driver="mlx4_core",
                   unsupported_vf_fields=frozenset({"min_tx_rate", "trust"})),
        DriverInfo("be2net", module_param="num_vfs", param_kind="scalar", vf_driver="be2net"),
        DriverInfo("bnxt_en", vf_driver="bnxt_en"),
    )
}

# PF device ids of the igb parts whose VFs can be rate limited: igb_ndo_set_vf_bw() answers
# EOPNOTSUPP unless hw->mac.type is e1000_82576 (igb/e1000_hw.h: the 82576 family).
IGB_82576_DEVICES = frozenset({0x10C9, 0x10E6, 0x10E7, 0x10E8, 0x150A, 0x1518, 0x1526,
                               0x150D})


def driver_info(name: str | None) -> DriverInfo:
    """Known drivers from the table; any other driver is assumed to resize through sysfs."""
    if name is None:
        return DriverInfo("(none)", sysfs_resize=False)
    return DRIVERS.get(name, DriverInfo(name))


def module_options(info: DriverInfo, count: int, *, probe: bool) -> str:
    """The ``options`` line's arguments for ``count`` VFs on every port the driver serves.

    mlx4_core's num_vfs/probe_vf take one number for "this many on both ports"; probe_vf=0
    leaves the VFs unbound in the host, which is what vfio hand-off wants.
    """
    if info.module_param is None:
        raise ValueError(f"driver {info.name} has no VF module parameter")
    if info.param_kind == "mlx4-array":
        return f"num_vfs={count} probe_vf={count if probe else 0}"
    return f"{info.module_param}={count}"
