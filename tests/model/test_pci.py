"""PCI address math: BDF parsing and printing, routing ids, VF addresses, netdev names."""

from __future__ import annotations

import pytest

from vfpool.errors import InvalidInput
from vfpool.model.pci import PciAddress, predictable_name, vf_address

# (text as a user or sysfs spells it, (domain, bus, slot, func), canonical form)
VALID_BDFS = [
    ("0000:05:00.0", (0, 0x05, 0x00, 0), "0000:05:00.0"),
    ("0000:05:00.1", (0, 0x05, 0x00, 1), "0000:05:00.1"),
    ("05:00.0", (0, 0x05, 0x00, 0), "0000:05:00.0"),
    ("85:02.0", (0, 0x85, 0x02, 0), "0000:85:02.0"),
    ("0000:85:1F.7", (0, 0x85, 0x1F, 7), "0000:85:1f.7"),
    ("0000:af:00.1", (0, 0xAF, 0x00, 1), "0000:af:00.1"),
    ("0000:AF:00.1", (0, 0xAF, 0x00, 1), "0000:af:00.1"),
    ("0000:01:01.2", (0, 0x01, 0x01, 2), "0000:01:01.2"),
    ("0001:3b:00.0", (1, 0x3B, 0x00, 0), "0001:3b:00.0"),
    ("ABCD:ef:1f.7", (0xABCD, 0xEF, 0x1F, 7), "abcd:ef:1f.7"),
    ("ffff:ff:1f.7", (0xFFFF, 0xFF, 0x1F, 7), "ffff:ff:1f.7"),
    ("0000:00:1f.6", (0, 0x00, 0x1F, 6), "0000:00:1f.6"),
    (" 0000:05:00.0\n", (0, 0x05, 0x00, 0), "0000:05:00.0"),  # as read from a file
]

INVALID_BDFS = [
    "05:00",  # no function
    "0000:05:00.8",  # function is 0-7
    "0000:05:20.0",  # slot is 0-0x1f
    "05:20.0",
    "zz:00.0",
    "../x",
    "../../etc/passwd",
    "0000:05:00.0/../..",
    "",
    "   ",
    "0000:5:00.0",  # bus needs two digits
    "00000:05:00.0",  # domain has four
    "0000:05:00:0",
    "0000-05-00.0",
    "0000:05:00.0.0",
    "enp5s0f0",
    "0000:05:0g.0",
]


@pytest.mark.parametrize(("text", "fields", "canonical"), VALID_BDFS)
def test_parse_valid_bdf(text: str, fields: tuple[int, int, int, int], canonical: str) -> None:
    address = PciAddress.parse(text)
    assert (address.domain, address.bus, address.slot, address.func) == fields
    assert str(address) == canonical
    assert PciAddress.looks_like(text)


@pytest.mark.parametrize(("text", "fields", "canonical"), VALID_BDFS)
def test_format_parse_round_trip(text: str, fields: tuple[int, int, int, int],
                                 canonical: str) -> None:
    address = PciAddress(*fields)
    assert str(address) == canonical
    assert PciAddress.parse(str(address)) == address


@pytest.mark.parametrize("text", INVALID_BDFS)
def test_parse_invalid_bdf(text: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        PciAddress.parse(text)
    assert excinfo.value.exit_code == 2
    assert isinstance(excinfo.value, ValueError)
    assert repr(text) in str(excinfo.value)


def test_parse_error_names_the_slot_limit() -> None:
    with pytest.raises(InvalidInput, match="slot 0x20 is above 0x1f"):
        PciAddress.parse("0000:05:20.0")


@pytest.mark.parametrize("fields", [(0x10000, 0, 0, 0), (0, 0x100, 0, 0), (0, 0, 0x20, 0),
                                    (0, 0, 0, 8), (-1, 0, 0, 0), (0, 0, 0, -1)])
def test_constructor_rejects_out_of_range_fields(fields: tuple[int, int, int, int]) -> None:
    with pytest.raises(InvalidInput):
        PciAddress(*fields)


def test_addresses_sort_by_domain_bus_slot_function() -> None:
    texts = ["0000:85:00.0", "0001:00:00.0", "0000:05:10.2", "0000:05:00.1", "0000:05:10.0"]
    ordered = sorted(PciAddress.parse(text) for text in texts)
    assert [str(a) for a in ordered] == ["0000:05:00.1", "0000:05:10.0", "0000:05:10.2",
                                         "0000:85:00.0", "0001:00:00.0"]


# (address, routing id = bus << 8 | slot << 3 | func)
ROUTING_IDS = [
    ("0000:00:00.0", 0x0000),
    ("0000:05:00.0", 0x0500),
    ("0000:05:00.1", 0x0501),
    ("0000:05:10.0", 0x0580),
    ("0000:05:10.2", 0x0582),
    ("0000:85:02.0", 0x8510),
    ("0000:01:01.2", 0x010A),
    ("0000:ff:1f.7", 0xFFFF),
    ("0003:3b:00.0", 0x3B00),
]


@pytest.mark.parametrize(("text", "rid"), ROUTING_IDS)
def test_routing_id_round_trip(text: str, rid: int) -> None:
    address = PciAddress.parse(text)
    assert address.routing_id == rid
    assert PciAddress.from_routing_id(address.domain, rid) == address


@pytest.mark.parametrize("rid", [-1, 0x10000, 0x1FFFF])
def test_routing_id_outside_16_bits(rid: int) -> None:
    with pytest.raises(InvalidInput, match="16-bit"):
        PciAddress.from_routing_id(0, rid)


# (PF, offset, stride, VF index, VF address): the cards' real numbering
VF_ADDRESSES = [
    ("0000:05:00.0", 128, 2, 0, "0000:05:10.0"),  # 82599 PF0
    ("0000:05:00.0", 128, 2, 1, "0000:05:10.2"),
    ("0000:05:00.0", 128, 2, 4, "0000:05:11.0"),
    ("0000:05:00.0", 128, 2, 62, "0000:05:1f.4"),
    ("0000:05:00.1", 128, 2, 0, "0000:05:10.1"),  # 82599 PF1 interleaves with PF0
    ("0000:05:00.1", 128, 2, 1, "0000:05:10.3"),
    ("0000:03:00.0", 128, 4, 1, "0000:03:10.4"),  # I350
    ("0000:85:00.0", 16, 1, 0, "0000:85:02.0"),  # X710 PF0
    ("0000:85:00.0", 16, 1, 63, "0000:85:09.7"),
    ("0000:85:00.1", 79, 1, 0, "0000:85:0a.0"),  # X710 PF1 after PF0's 64
    ("0000:01:00.0", 2, 1, 0, "0000:01:00.2"),  # ConnectX-5 PF0
    ("0000:01:00.1", 9, 1, 0, "0000:01:01.2"),  # ConnectX-5 PF1
    ("0000:07:00.0", 1, 1, 0, "0000:07:00.1"),  # ConnectX-3
    ("0000:05:1f.0", 128, 2, 0, "0000:06:0f.0"),  # a VF range may cross into the next bus
    ("0002:05:00.0", 128, 2, 1, "0002:05:10.2"),  # the domain is kept
]


@pytest.mark.parametrize(("pf", "offset", "stride", "index", "expected"), VF_ADDRESSES)
def test_vf_address(pf: str, offset: int, stride: int, index: int, expected: str) -> None:
    assert str(vf_address(PciAddress.parse(pf), offset, stride, index)) == expected


def test_vf_address_past_bus_ff_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        vf_address(PciAddress.parse("0000:ff:1f.0"), 128, 2, 0)


# (address, multifunction, port_name, name)
NETDEV_NAMES = [
    ("0000:05:00.0", True, "", "enp5s0f0"),
    ("0000:05:00.1", True, "", "enp5s0f1"),
    ("0000:85:00.0", True, "", "enp133s0f0"),  # bus in decimal
    ("0000:85:00.1", True, "", "enp133s0f1"),
    ("0000:01:00.0", True, "np0", "enp1s0f0np0"),  # mlx5 phys_port_name
    ("0000:05:00.0", False, "", "enp5s0"),  # single-function: no f<N>
    ("0000:07:00.0", False, "", "enp7s0"),
    ("0000:0a:1f.3", True, "", "enp10s31f3"),  # slot in decimal
    ("0001:05:00.0", True, "", "enP1p5s0f0"),
    ("0010:05:00.0", False, "", "enP16p5s0"),  # domain in decimal too
]


@pytest.mark.parametrize(("text", "multifunction", "port_name", "name"), NETDEV_NAMES)
def test_predictable_name(text: str, multifunction: bool, port_name: str, name: str) -> None:
    address = PciAddress.parse(text)
    assert predictable_name(address, multifunction=multifunction, port_name=port_name) == name
