"""PCI address math: parsing, routing ids and VF addresses. Pure code, no I/O."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from vfpool.errors import InvalidInput

_BDF = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<slot>[0-9a-fA-F]{2})"
    r"\.(?P<func>[0-7])$"
)


@dataclass(frozen=True, order=True)
class PciAddress:
    """A PCI function address (domain:bus:slot.function), printed as ``0000:05:00.0``."""

    domain: int
    bus: int
    slot: int
    func: int

    def __post_init__(self) -> None:
        if not (0 <= self.domain <= 0xFFFF and 0 <= self.bus <= 0xFF and 0 <= self.slot <= 0x1F
                and 0 <= self.func <= 7):
            raise InvalidInput(f"PCI address out of range: {self.domain:x}:{self.bus:x}:"
                               f"{self.slot:x}.{self.func:x}")

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``0000:05:00.0`` or the short ``05:00.0`` (domain 0)."""
        match = _BDF.match(text.strip())
        if match is None:
            raise InvalidInput(f"invalid PCI address {text!r}: expected DDDD:BB:SS.F, "
                               "for example 0000:05:00.0")
        slot = int(match["slot"], 16)
        if slot > 0x1F:
            raise InvalidInput(f"invalid PCI address {text!r}: slot {slot:#x} is above 0x1f")
        return cls(int(match["domain"] or "0", 16), int(match["bus"], 16), slot,
                   int(match["func"]))

    @classmethod
    def looks_like(cls, text: str) -> bool:
        return _BDF.match(text.strip()) is not None

    @property
    def routing_id(self) -> int:
        """``(bus << 8) | devfn``, the id the SR-IOV offset and stride are added to."""
        return (self.bus << 8) | (self.slot << 3) | self.func

    @classmethod
    def from_routing_id(cls, domain: int, rid: int) -> PciAddress:
        if not 0 <= rid <= 0xFFFF:
            raise InvalidInput(f"routing id {rid:#x} is outside the 16-bit PCI space")
        return cls(domain, rid >> 8, (rid & 0xFF) >> 3, rid & 7)

    @functools.cached_property
    def text(self) -> str:
        """``0000:05:00.0``, formatted once per address (a pool start of 1,024 VFs formats
        each a few times: for its row, its lock, its messages)."""
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.func:x}"

    def __str__(self) -> str:
        return self.text


def vf_address(pf: PciAddress, offset: int, stride: int, index: int) -> PciAddress:
    """The address of VF ``index``: ``rid = pf_rid + offset + index * stride``."""
    return PciAddress.from_routing_id(pf.domain, pf.routing_id + offset + index * stride)


def predictable_name(address: PciAddress, *, multifunction: bool = True,
                     port_name: str = "") -> str:
    """systemd's path-based name: ``0000:05:00.0`` → ``enp5s0f0`` (bus and slot in decimal).

    A single-function device drops the ``f<N>`` part; ``port_name`` is the driver's
    phys_port_name suffix (mlx5: ``np0``).
    """
    prefix = "enp" if address.domain == 0 else f"enP{address.domain}p"
    name = f"{prefix}{address.bus}s{address.slot}"
    if multifunction:
        name += f"f{address.func}"
    return name + port_name
