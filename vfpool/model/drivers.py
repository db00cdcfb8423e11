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
        DriverInfo("igb", module_param="max_vfs", param_kind="scalar", vf_limit=7,
                   vf_driver="igbvf", unsupported_vf_fields=frozenset({"link_state"})),
        DriverInfo("ixgbe", module_param="max_vfs", param_kind="scalar", vf_limit=63,
                   vf_driver="ixgbevf"),
        DriverInfo("i40e", vf_driver="iavf", unsupported_vf_fields=frozenset({"min_tx_rate"})),
        DriverInfo("ice", vf_driver="iavf"),
        DriverInfo("mlx5_core", vf_driver="mlx5_core"),
        DriverInfo("mlx4_core", sysfs_resize=False, module_param="num_vfs",
                   param_kind="mlx4-array", vf_driver="mlx4_core"),
        DriverInfo("be2net", module_param="num_vfs", param_kind="scalar", vf_driver="be2net"),
        DriverInfo("bnxt_en", vf_driver="bnxt_en"),
    )
}


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
