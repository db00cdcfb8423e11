#!/usr/bin/env python3
"""Turn vfpool leases into libvirt <interface type='hostdev'> XML: a hand-off to libvirt.

    vfpool lease acquire tenant-a --owner vm1 --json > leases.json
    vfpool-libvirt-hostdev.py leases.json --lease 7 > vf.xml
    virsh attach-device vm1 vf.xml --live

Reads the JSON of `vfpool lease acquire --json` or `lease list --json` (a list) or of
`lease show --json` (one lease) from FILE or stdin. Prints one <interface> for one lease, and
a <devices> element around them for several, ready to paste into a domain's <devices>.

managed='no': vfpool has already bound the VF to vfio-pci (pool mode vfio) and restores its
driver on release, so libvirt must not rebind it. The MAC and VLAN repeat what vfpool applied
through the PF. Detach the device in libvirt before `vfpool lease release`.
Exit status: 0, or 2 for input that is not an active vfio lease.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from typing import Any

_PCI = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([01][0-9a-fA-F])\.([0-7])$")


class LeaseError(ValueError):
    """The input is not what this script can hand to libvirt; the user must act."""


def interface(lease: dict[str, Any]) -> ET.Element:
    """The <interface type='hostdev'> element for one active vfio lease."""
    lease_id = lease.get("id")
    if lease.get("state") != "active":
        raise LeaseError(f"lease {lease_id} is {lease.get('state')}, not active")
    if lease.get("mode") != "vfio":
        raise LeaseError(f"lease {lease_id} is in {lease.get('mode')} mode; a hostdev "
                         "interface needs a lease of a vfio pool")
    pci = (lease.get("vf") or {}).get("pci") or ""
    match = _PCI.match(pci)
    if match is None:
        raise LeaseError(f"lease {lease_id}: VF PCI address {pci!r} is not DDDD:BB:SS.F")
    domain, bus, slot, function = match.groups()
    element = ET.Element("interface", type="hostdev", managed="no")
    source = ET.SubElement(element, "source")
    ET.SubElement(source, "address", type="pci", domain=f"0x{domain.lower()}",
                  bus=f"0x{bus.lower()}", slot=f"0x{slot.lower()}", function=f"0x{function}")
    if lease.get("mac"):
        ET.SubElement(element, "mac", address=str(lease["mac"]))
    if lease.get("vlan") is not None:
        vlan = ET.SubElement(element, "vlan")
        ET.SubElement(vlan, "tag", id=str(int(lease["vlan"])))
    ET.SubElement(element, "driver", name="vfio")
    # A user alias ("ua-" prefix) lets `virsh detach-device-alias` find the device later.
    ET.SubElement(element, "alias", name=f"ua-vfpool-lease-{int(str(lease_id))}")
    return element


def render(document: Any, lease_id: int | None = None) -> str:
    leases = document if isinstance(document, list) else [document]
    if not all(isinstance(lease, dict) for lease in leases):
        raise LeaseError("expected the JSON of `vfpool lease acquire/list/show --json`")
    if lease_id is not None:
        leases = [lease for lease in leases if lease.get("id") == lease_id]
    if not leases:
        raise LeaseError("no lease in the input" if lease_id is None
                         else f"lease {lease_id} is not in the input")
    elements = [interface(lease) for lease in leases]
    if len(elements) == 1:
        root = elements[0]
    else:
        root = ET.Element("devices")
        root.extend(elements)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=argparse.FileType("r"), default=sys.stdin,
                        help="vfpool lease JSON (default: stdin)")
    parser.add_argument("--lease", type=int, metavar="ID", help="only this lease")
    args = parser.parse_args(argv)
    try:
        document = json.load(args.file)
        sys.stdout.write(render(document, args.lease))
    except (json.JSONDecodeError, LeaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
