"""Builders of plain model inputs for tests/model/: PF and VF snapshots, pool memberships and
live leases, with no host, simulator or store behind them."""

from __future__ import annotations

from collections.abc import Iterable

from vfpool.model.pci import PciAddress, vf_address
from vfpool.model.plan import PfUse
from vfpool.model.pool import VfRange
from vfpool.model.snapshot import Netdev, PfSnapshot, VfSnapshot
from vfpool.store.states import LiveLease, Method, Mode

# An 82599-like dual-port NIC (ixgbe): VFs at routing id + 0x80, stride 2.
PF0 = PciAddress.parse("0000:05:00.0")
PF1 = PciAddress.parse("0000:05:00.1")
OFFSET, STRIDE = 0x80, 2


def vf_pci(pf: PciAddress, index: int) -> PciAddress:
    return vf_address(pf, OFFSET, STRIDE, index)


def netdev(name: str, operstate: str = "down") -> Netdev:
    return Netdev(name, None, None, operstate, 1500)


def vf(pf: PciAddress, index: int, *, with_netdev: bool = True) -> VfSnapshot:
    """VF ``index`` of ``pf``: bound to ixgbevf with a netdev, or unbound without one (as a
    vfio hand-off or autoprobe off leaves it)."""
    if not with_netdev:
        return VfSnapshot(index, vf_pci(pf, index), None)
    name = f"enp5s0f{pf.func}v{index}"
    return VfSnapshot(index, vf_pci(pf, index), "ixgbevf", (netdev(name),))


def pf(pci: PciAddress = PF0, numvfs: int = 0, *, present: int | None = None,
       bare: Iterable[int] = (), autoprobe: bool = True, driver: str = "ixgbe",
       link: str = "down", totalvfs: int = 63) -> PfSnapshot:
    """A PF with ``numvfs`` VFs, of which the first ``present`` (all by default) exist; the
    indices in ``bare`` have no netdev. ``link`` is the operstate of its own netdev."""
    unbound = set(bare)
    count = numvfs if present is None else present
    return PfSnapshot(
        pci=pci, vendor=0x8086, device=0x10FB, driver=driver, totalvfs=totalvfs,
        numvfs=numvfs, offset=OFFSET, stride=STRIDE, vf_device=0x10ED, numa_node=0,
        drivers_autoprobe=autoprobe, netdevs=(netdev(f"enp5s0f{pci.func}", link),),
        vfs=tuple(vf(pci, index, with_netdev=index not in unbound) for index in range(count)))


def use(pool: str, pool_id: int, vfs: int, *, active: bool = False, mode: Mode = Mode.NETDEV,
        method: Method = Method.SYSFS, vf_range: str | None = None) -> PfUse:
    return PfUse(pool, pool_id, active, mode, method,
                 VfRange.parse(vf_range, "test") if vf_range else None, vfs)


def lease(lease_id: int, pool: str, owner: str, on: PciAddress, index: int) -> LiveLease:
    return LiveLease(lease_id, pool, owner, str(on), str(vf_pci(on, index)), index)
