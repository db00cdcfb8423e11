"""A simulated PF port's link: administrative state, cable, and the carrier bounce of sizing.

The sim keeps three facts per PF port in its state (``vfpool.sim.state``):

- ``admin``: the netdev is up (``ip link set up``; IFF_UP, the driver's ndo_open ran);
- ``cable``: a link partner is there (a test pulls the cable with ``SimHost.set_operstate``);
- ``carrier_at``: after a sizing bounce, the wall-clock moment from which the carrier is back
  (``NEVER``: it does not come back by itself), or absent.

From them follow what sysfs shows: ``operstate`` ("up" with carrier, else "down") and
``carrier`` ("1"/"0"; absent while the netdev is administratively down, where the kernel's
read fails with EINVAL). The files are plain files that vfpool reads directly, so a bounce's
end is written by ``settle``: under the sim's lock at the start of every changing operation,
and by a timer that ``SimHost`` arms in the process that caused the bounce.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

NEVER = "never"
# How long the carrier stays down after a sizing bounce, unless a test sets another time with
# SimHost.set_link_bounce. Real ports take seconds (autonegotiation, and igb's watchdog, which
# notices the link every 2 s); the sim is quicker so that the suite stays fast, but long enough
# for a reader to see the carrier down and then up.
DEFAULT_BOUNCE = 0.1


def admin_up(pf: dict[str, Any]) -> bool:
    # States written before the split into admin/cable had one "operstate" for both.
    return bool(pf.get("admin", pf.get("operstate", "up") == "up"))


def cable_in(pf: dict[str, Any]) -> bool:
    return bool(pf.get("cable", True))


def carrier(pf: dict[str, Any], now: float | None = None) -> bool:
    """netif_carrier_ok(): the port is open, has a link partner, and no bounce is under way."""
    if not (admin_up(pf) and cable_in(pf)):
        return False
    back = pf.get("carrier_at")
    if back is None:
        return True
    return back != NEVER and (time.time() if now is None else now) >= float(back)


def operstate(pf: dict[str, Any], now: float | None = None) -> str:
    return "up" if carrier(pf, now) else "down"


def carrier_text(pf: dict[str, Any], now: float | None = None) -> str | None:
    """The ``carrier`` attribute's text, or None where reading it fails (admin down)."""
    if not admin_up(pf):
        return None
    return "1" if carrier(pf, now) else "0"


def write_files(root: Path, pf: dict[str, Any], now: float | None = None) -> None:
    """Make each of the PF's netdevs show its link as ``pf`` has it."""
    moment = time.time() if now is None else now
    for name in pf["netdevs"]:
        net = root / "sys/class/net" / name
        if not net.exists():
            continue
        _replace(net / "operstate", f"{operstate(pf, moment)}\n")
        text = carrier_text(pf, moment)
        if text is None:
            (net / "carrier").unlink(missing_ok=True)
        else:
            _replace(net / "carrier", f"{text}\n")
    pf["operstate"] = operstate(pf, moment)


def _replace(path: Path, text: str) -> None:
    """Write a whole new file in one step: a reader polling it (vfpool waiting for the carrier)
    never sees it empty, as it never sees a sysfs attribute half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def bounce(root: Path, pf: dict[str, Any]) -> None:
    """The driver closed and reopened the port (a sizing): the carrier drops now and comes back
    after the PF's bounce time. A port that was not open is only reset: nothing to bounce."""
    if not admin_up(pf):
        return
    seconds = pf.get("bounce", DEFAULT_BOUNCE)
    pf["carrier_at"] = NEVER if seconds is None else time.time() + float(seconds)
    write_files(root, pf)


def set_admin(root: Path, pf: dict[str, Any], up: bool) -> None:
    pf["admin"] = up
    if not up:
        pf.pop("carrier_at", None)  # a closed port has no bounce under way
    write_files(root, pf)


def set_cable(root: Path, pf: dict[str, Any], plugged: bool) -> None:
    pf["cable"] = plugged
    if plugged:
        pf.pop("carrier_at", None)
    write_files(root, pf)


def settle(root: Path, state: dict[str, Any]) -> float | None:
    """Write the end of every bounce whose moment has passed; return the earliest moment still
    ahead (for a timer), or None."""
    now = time.time()
    pending: list[float] = []
    for pf in state.get("pfs", {}).values():
        back = pf.get("carrier_at")
        if back is None or back == NEVER:
            continue
        if now >= float(back):
            pf.pop("carrier_at")
            write_files(root, pf, now)
        else:
            pending.append(float(back))
    return min(pending) if pending else None


def next_moment(state: dict[str, Any]) -> float | None:
    """The earliest bounce end still ahead, read without changing anything."""
    moments = [float(pf["carrier_at"]) for pf in state.get("pfs", {}).values()
               if pf.get("carrier_at") not in (None, NEVER)]
    return min(moments) if moments else None
