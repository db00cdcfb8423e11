"""pci.ids parsing, and the model names it gives PF snapshots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vfpool.host.pciids import PciIds, parse_pci_ids
from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.sim.host import SimHost

# An excerpt of /usr/share/misc/pci.ids in its real format.
EXCERPT = """\
#
#	List of PCI ID's
#
#	Version: 2024.02.02
#	Date:    2024-02-02 03:15:01
#

# Vendors, devices and subsystems. Please keep sorted.

# Syntax:
# vendor  vendor_name
#	device  device_name				<-- single tab
#		subvendor subdevice  subsystem_name	<-- two tabs

0001  SafeNet (wrong ID)
0e11  Compaq Computer Corporation
	0001  PCI to EISA Bridge
8086  Intel Corporation
	10c9  82576 Gigabit Network Connection
		103c 31ff  Gigabit ET Quad Port Server Adapter
		8086 a03c  Gigabit ET Dual Port Server Adapter
	10ca  82576 Virtual Function
	10ed  82599 Ethernet Controller Virtual Function
	10fb  82599ES 10-Gigabit SFI/SFP+ Network Connection
		1028 1f72  Ethernet 10G 4P X520/I350 rNDC
		8086 000c  Ethernet Server Adapter X520-2
	1521  I350 Gigabit Network Connection
		8086 5001  Ethernet Server Adapter I350-T4
	1572  Ethernet Controller X710 for 10GbE SFP+
15b3  Mellanox Technologies
	1003  MT27500 Family [ConnectX-3]
	1017  MT27800 Family [ConnectX-5]
		15b3 0020  ConnectX-5 EN network interface card, 10/25GbE dual-port SFP28
	1018  MT27800 Family [ConnectX-5 Virtual Function]
ffff  Illegal Vendor ID

# List of known device classes, subclasses and programming interfaces

# Syntax:
# C class	class_name
#	subclass	subclass_name  		<-- single tab
#		prog-if  prog-if_name  	<-- two tabs

C 00  Unclassified device
	00  Non-VGA unclassified device
C 02  Network controller
	00  Ethernet controller
	80  Network controller
C 0c  Serial bus controller
	03  USB controller
		30  XHCI
"""

EXPECTED = {
    (0x0E11, 0x0001): "PCI to EISA Bridge",
    (0x8086, 0x10C9): "82576 Gigabit Network Connection",
    (0x8086, 0x10CA): "82576 Virtual Function",
    (0x8086, 0x10ED): "82599 Ethernet Controller Virtual Function",
    (0x8086, 0x10FB): "82599ES 10-Gigabit SFI/SFP+ Network Connection",
    (0x8086, 0x1521): "I350 Gigabit Network Connection",
    (0x8086, 0x1572): "Ethernet Controller X710 for 10GbE SFP+",
    (0x15B3, 0x1003): "MT27500 Family [ConnectX-3]",
    (0x15B3, 0x1017): "MT27800 Family [ConnectX-5]",
    (0x15B3, 0x1018): "MT27800 Family [ConnectX-5 Virtual Function]",
}


def test_parse_excerpt_gives_exactly_the_devices() -> None:
    # Subsystem lines, comments, vendor names and the class section contribute nothing.
    assert parse_pci_ids(EXCERPT) == EXPECTED


def test_subsystem_lines_do_not_rename_their_device() -> None:
    names = parse_pci_ids(EXCERPT)
    assert names[(0x8086, 0x10FB)] != "Ethernet Server Adapter X520-2"
    assert (0x8086, 0x000C) not in names
    assert (0x1028, 0x1F72) not in names


def test_class_section_is_not_read_as_devices() -> None:
    names = parse_pci_ids(EXCERPT)
    assert not any(vendor == 0xFFFF for vendor, _ in names)
    assert all(name not in ("Ethernet controller", "Network controller", "USB controller")
               for name in names.values())


def test_class_section_ends_parsing() -> None:
    # A device line after a class header belongs to the class section, never to a vendor.
    text = "8086  Intel Corporation\n\t10fb  82599ES\nC 02  Network controller\n\t1572  X\n"
    assert parse_pci_ids(text) == {(0x8086, 0x10FB): "82599ES"}


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("# only a comment\n", {}),
    ("\t10fb  device before any vendor\n", {}),
    ("8086  Intel Corporation\n\t10FB  Upper Case Hex\n", {(0x8086, 0x10FB): "Upper Case Hex"}),
    ("8086  Intel Corporation\r\n\t10fb  82599ES\r\n", {(0x8086, 0x10FB): "82599ES"}),
    ("zzzz  Not a vendor\n\t10fb  orphan\n", {}),
    ("8086  Intel Corporation\n\tzzzz  bad id\n\t1572  X710\n", {(0x8086, 0x1572): "X710"}),
])
def test_parse_edge_cases(text: str, expected: dict[tuple[int, int], str]) -> None:
    assert parse_pci_ids(text) == expected


def test_pciids_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pci.ids"
    path.write_text(EXCERPT)
    ids = PciIds(path)
    assert ids.device_name(0x8086, 0x1572) == "Ethernet Controller X710 for 10GbE SFP+"
    assert ids.device_name(0x8086, 0x9999) is None
    assert ids.device_name(0x1234, 0x1572) is None


def test_pciids_missing_file_is_none(tmp_path: Path) -> None:
    ids = PciIds(tmp_path / "no" / "pci.ids")
    assert ids.device_name(0x8086, 0x10FB) is None


def test_pciids_reads_lazily(tmp_path: Path) -> None:
    path = tmp_path / "pci.ids"
    ids = PciIds(path)  # nothing there yet: construction reads nothing
    path.write_text(EXCERPT)
    assert ids.device_name(0x15B3, 0x1003) == "MT27500 Family [ConnectX-3]"


def test_pciids_tolerates_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pci.ids"
    path.write_bytes(b"8086  Intel\n\t10fb  Caf\xe9 NIC\n\t1572  X710\n")
    ids = PciIds(path)
    assert ids.device_name(0x8086, 0x1572) == "X710"
    assert ids.device_name(0x8086, 0x10FB) == "Caf\ufffd NIC"


def test_sim_pci_ids_reach_the_pf_model(make_sim: Callable[..., SimHost]) -> None:
    sim = make_sim("mellanox-cx3@0000:07:00.0", "intel-e810@0000:3b:00.0")
    ids = parse_pci_ids((sim.root / "usr/share/misc/pci.ids").read_text())
    assert ids == {
        (0x8086, 0x15B7): "Ethernet Connection (2) I219-LM",
        (0x8086, 0x159B): "Ethernet Controller E810-XXV for SFP",
        (0x8086, 0x1889): "Ethernet Adaptive Virtual Function",
        (0x15B3, 0x1003): "MT27500 Family [ConnectX-3]",
        (0x15B3, 0x1004): "MT27500/MT27520 Family [ConnectX-3/ConnectX-3 Pro Virtual Function]",
    }
    models = {str(pf.pci): pf.model for pf in Sysfs(sim).pfs()}
    assert models == {
        "0000:07:00.0": "MT27500 Family [ConnectX-3]",
        "0000:3b:00.0": "Ethernet Controller E810-XXV for SFP",
        "0000:3b:00.1": "Ethernet Controller E810-XXV for SFP",
    }


def test_pf_model_comes_from_the_file(sim: SimHost) -> None:
    # The model is looked up, not copied from the profile: edit the file and it follows.
    path = sim.root / "usr/share/misc/pci.ids"
    path.write_text("8086  Intel Corporation\n\t10fb  Renamed 82599\n")
    models = [pf.model for pf in Sysfs(sim).pfs()]
    assert models == ["Renamed 82599", "Renamed 82599", None, None]
    path.unlink()
    assert [pf.model for pf in Sysfs(sim).pfs()] == [None, None, None, None]
    assert Sysfs(sim).pf(PciAddress.parse("0000:85:00.0")).driver == "i40e"
