"""A VF's configuration as the PF holds it, plus MAC and owner rules. Pure code."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from typing import Any

from vfpool.errors import InvalidInput

LINK_STATES = {0: "auto", 1: "enable", 2: "disable"}
LINK_STATE_CODES = {name: code for code, name in LINK_STATES.items()}
ZERO_MAC = "00:00:00:00:00:00"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
OWNER_MAX = 128


@dataclass(frozen=True)
class VfConfig:
    """What ``ip link show <pf>`` prints for one VF. None: unknown or not reported."""

    mac: str | None = None
    vlan: int | None = None  # 0: untagged
    qos: int | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: str | None = None  # auto, enable, disable
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None

    def as_dict(self) -> dict[str, Any]:
        # Its fields are plain values: no need for dataclasses.asdict()'s deep copy, which
        # was a tenth of the lease path's own CPU.
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> VfConfig:
        return cls(**{key: value for key, value in (data or {}).items() if key in _FIELDS})

    def set_fields(self) -> dict[str, Any]:
        return {key: value for key, value in self.as_dict().items() if value is not None}

    def differences(self, current: VfConfig) -> dict[str, tuple[object, object]]:
        """Fields this (desired) config sets that ``current`` does not have."""
        return {key: (value, getattr(current, key)) for key, value in self.set_fields().items()
                if getattr(current, key) != value}


_FIELDS = tuple(field.name for field in fields(VfConfig))


def normalize_mac(text: str) -> str:
    mac = text.strip().lower().replace("-", ":")
    if not _MAC.match(mac):
        raise InvalidInput(f"invalid MAC address {text!r}: expected six hex bytes such as "
                           "52:54:00:12:34:56")
    return mac


def validate_lease_mac(text: str) -> str:
    """A MAC a lease may use: unicast, and neither broadcast nor all-zero."""
    mac = normalize_mac(text)
    if mac == ZERO_MAC:
        raise InvalidInput(f"MAC {mac} is all-zero; give a unicast address")
    if mac == "ff:ff:ff:ff:ff:ff":
        raise InvalidInput(f"MAC {mac} is the broadcast address; give a unicast address")
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"MAC {mac} is a multicast address; give a unicast address")
    return mac


def generated_mac(pool: str, owner: str, index: int, attempt: int = 0) -> str:
    """A locally administered unicast MAC, stable for (pool, owner, VF index)."""
    digest = hashlib.sha256(f"{pool}\0{owner}\0{index}\0{attempt}".encode()).digest()
    first = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{byte:02x}" for byte in (first, *digest[1:6]))


def validate_owner(owner: str) -> str:
    if not owner:
        raise InvalidInput("owner must not be empty")
    if len(owner) > OWNER_MAX:
        raise InvalidInput(f"owner is {len(owner)} characters long; at most {OWNER_MAX} are "
                           "allowed")
    if not owner.isprintable():
        raise InvalidInput(f"owner {owner!r} contains characters that are not printable")
    return owner


def validate_vlan(vlan: int) -> int:
    if not 1 <= vlan <= 4094:
        raise InvalidInput(f"VLAN {vlan} is outside 1-4094")
    return vlan
