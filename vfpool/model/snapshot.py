"""Plain-data snapshots of what the host has. host/ produces them; model/ and service/ decide."""

from __future__ import annotations

from dataclasses import dataclass, field

from vfpool.model.pci import PciAddress


@dataclass(frozen=True)
class Netdev:
    name: str
    ifindex: int | None
    mac: str | None
    operstate: str  # "up", "down", "unknown", … as in /sys/class/net/<if>/operstate
    mtu: int | None


@dataclass(frozen=True)
class VfSnapshot:
    index: int
    pci: PciAddress
    driver: str | None
    netdevs: tuple[Netdev, ...] = ()

    @property
    def netdev(self) -> str | None:
        return self.netdevs[0].name if self.netdevs else None


@dataclass(frozen=True)
class PfSnapshot:
    pci: PciAddress
    vendor: int
    device: int
    driver: str | None
    totalvfs: int
    numvfs: int
    offset: int
    stride: int
    vf_device: int | None
    numa_node: int | None  # None when the kernel says -1 (unknown)
    drivers_autoprobe: bool
    netdevs: tuple[Netdev, ...] = ()
    vfs: tuple[VfSnapshot, ...] = field(default=())
    model: str | None = None

    @property
    def netdev(self) -> str | None:
        """The first port's netdev; a PF serving two ports (mlx4) has more in ``netdevs``."""
        return self.netdevs[0].name if self.netdevs else None

    @property
    def link(self) -> str | None:
        return self.netdevs[0].operstate if self.netdevs else None

    @property
    def label(self) -> str:
        """``0000:05:00.0 (enp5s0f0)``: how messages name a PF."""
        return f"{self.pci} ({self.netdev})" if self.netdev else str(self.pci)


@dataclass(frozen=True)
class PciFunction:
    """Any PCI function, SR-IOV or not, as far as PF resolution needs to know it."""

    pci: PciAddress
    driver: str | None
    netdevs: tuple[str, ...]
    sriov: bool
    physfn: PciAddress | None  # set for a VF


@dataclass(frozen=True)
class PfLink:
    """What the lease path needs of a PF, read without the rest of it: its address, driver
    and netdev names (sorted, as in ``PfSnapshot.netdevs``)."""

    pci: PciAddress
    driver: str | None
    netdevs: tuple[str, ...]

    @property
    def netdev(self) -> str | None:
        return self.netdevs[0] if self.netdevs else None

    @property
    def label(self) -> str:
        """As ``PfSnapshot.label``."""
        return f"{self.pci} ({self.netdev})" if self.netdev else str(self.pci)
