"""Model names from a pci.ids file (the format of /usr/share/misc/pci.ids)."""

from __future__ import annotations

from pathlib import Path


def parse_pci_ids(text: str) -> dict[tuple[int, int], str]:
    """``{(vendor, device): device name}`` from pci.ids text.

    Vendor lines start at column 0 (``8086  Intel Corporation``), device lines with one tab,
    subsystem lines with two; the ``C`` class section at the end is not about devices.
    """
    names: dict[tuple[int, int], str] = {}
    vendor: int | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            break
        if not line.startswith("\t"):
            head = line[:4]
            vendor = int(head, 16) if _is_hex4(head) else None
        elif vendor is not None and not line.startswith("\t\t"):
            head = line[1:5]
            if _is_hex4(head):
                names[(vendor, int(head, 16))] = line[5:].strip()
    return names


def _is_hex4(text: str) -> bool:
    return len(text) == 4 and all(ch in "0123456789abcdefABCDEF" for ch in text)


class PciIds:
    """Lazily parsed: a ``pf list`` that never asks for a name never reads the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._names: dict[tuple[int, int], str] | None = None

    def device_name(self, vendor: int, device: int) -> str | None:
        if self._names is None:
            try:
                text = self.path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._names = parse_pci_ids(text)
        return self._names.get((vendor, device))
