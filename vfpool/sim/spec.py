"""``PROFILE[@BDF][:numa=N][:totalvfs=N]`` specs and the PCI layout of the cards they name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vfpool.errors import InvalidInput
from vfpool.model.pci import PciAddress, predictable_name, vf_address
from vfpool.sim.profiles import PROFILES, NicProfile

_SPEC = re.compile(
    r"^(?P<profile>[a-z0-9][a-z0-9-]*)"
    r"(?:@(?P<bdf>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]))?"
    r"(?P<options>(?::[a-z_]+=[^:]*)*)$"
)
FIRST_AUTO_BUS = 0x05


@dataclass(frozen=True)
class NicSpec:
    profile: NicProfile
    pci: PciAddress | None  # PF0; None: the next free bus
    numa_node: int
    totalvfs: int  # per PF; firmware-set on mlx5 (8 or 16), raised on X710 (up to 128)

    @classmethod
    def parse(cls, text: str) -> NicSpec:
        match = _SPEC.match(text.strip())
        if match is None:
            raise InvalidInput(f"invalid NIC spec {text!r}: expected PROFILE[@BDF][:numa=N]"
                               "[:totalvfs=N], for example intel-82599@0000:05:00.0:numa=0")
        name = match["profile"]
        profile = PROFILES.get(name)
        if profile is None:
            raise InvalidInput(f"unknown NIC profile {name!r}; `vfpool sim profiles` lists "
                               f"them: {', '.join(sorted(PROFILES))}")
        options: dict[str, str] = {}
        for item in filter(None, match["options"].split(":")):
            key, _, value = item.partition("=")
            options[key] = value
        numa_node = _int_option(text, options.pop("numa", "0"), "numa", -1, 63)
        totalvfs = _int_option(text, options.pop("totalvfs", str(profile.totalvfs)),
                               "totalvfs", 1, 256)
        if options:
            raise InvalidInput(f"invalid NIC spec {text!r}: unknown option "
                               f"{sorted(options)[0]!r} (known: numa, totalvfs)")
        pci = PciAddress.parse(match["bdf"]) if match["bdf"] else None
        if pci is not None and pci.func + profile.pfs > 8:
            raise InvalidInput(f"invalid NIC spec {text!r}: {profile.pfs} PFs from function "
                               f"{pci.func} do not fit in one slot")
        return cls(profile, pci, numa_node, totalvfs)


def _int_option(spec: str, value: str, key: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidInput(f"invalid NIC spec {spec!r}: {key} must be an integer from {low} "
                           f"to {high}")
    return number


@dataclass(frozen=True)
class PfLayout:
    pci: PciAddress
    port: int  # the PF's position on the card
    offset: int
    stride: int
    totalvfs: int
    netdevs: tuple[str, ...]


@dataclass(frozen=True)
class CardLayout:
    spec: NicSpec
    pfs: tuple[PfLayout, ...]

    def routing_ids(self) -> set[int]:
        """Every routing id the card may ever use: its PFs and all VFs up to totalvfs."""
        ids = set()
        for pf in self.pfs:
            ids.add(pf.pci.routing_id)
            for index in range(pf.totalvfs):
                ids.add(vf_address(pf.pci, pf.offset, pf.stride, index).routing_id)
        return ids


def layout_card(spec: NicSpec, pf0: PciAddress) -> CardLayout:
    profile = spec.profile
    pfs = []
    first_vf_rid = pf0.routing_id + profile.offset
    for port in range(profile.pfs):
        pci = PciAddress(pf0.domain, pf0.bus, pf0.slot, pf0.func + port)
        if profile.layout == "interleaved":
            offset = profile.offset
        else:
            # Stride-1 cards place each PF's VFs after the previous PF's whole range.
            offset = first_vf_rid + port * spec.totalvfs * profile.stride - pci.routing_id
        base = predictable_name(pci, multifunction=profile.pfs > 1, port_name=profile.port_name)
        # mlx4 names its second port's netdev <name>d1.
        netdevs = (base, *(f"{base}d{extra}" for extra in range(1, profile.ports_per_pf)))
        pfs.append(PfLayout(pci, port, offset, profile.stride, spec.totalvfs, netdevs))
    layout = CardLayout(spec, tuple(pfs))
    if max(pf.pci.routing_id + pf.offset + (pf.totalvfs - 1) * pf.stride for pf in pfs) > 0xFFFF:
        raise InvalidInput(f"NIC {profile.name} at {pf0}: its VFs would run past bus ff")
    return layout


def layout_host(specs: list[NicSpec], reserved: set[int]) -> list[CardLayout]:
    """Place the cards: explicit addresses first, then the rest on the next free buses."""
    used = set(reserved)
    placed: dict[int, CardLayout] = {}
    for position, spec in enumerate(specs):
        if spec.pci is not None:
            placed[position] = _place(spec, spec.pci, used)
    for position, spec in enumerate(specs):
        if spec.pci is None:
            bus = max([FIRST_AUTO_BUS - 1, *(rid >> 8 for rid in used)]) + 1
            if bus > 0xFF:
                raise InvalidInput(f"no free PCI bus left for NIC {spec.profile.name}")
            placed[position] = _place(spec, PciAddress(0, bus, 0, 0), used)
    return [placed[position] for position in range(len(specs))]


def _place(spec: NicSpec, pf0: PciAddress, used: set[int]) -> CardLayout:
    layout = layout_card(spec, pf0)
    ids = layout.routing_ids()
    if ids & used:
        raise InvalidInput(f"NIC {spec.profile.name} at {pf0} overlaps the PCI addresses of "
                           "another device; pick another @BDF")
    used |= ids
    return layout
