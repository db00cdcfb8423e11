"""vhost-net on a real VF, and a frame from an inner VM through it onto the emulated wire.

The seed proposal's mode for real: ``vm launch`` leases a VF of a macvtap pool, makes a passthru
macvtap on the real igbvf netdev, opens its tap fd and a /dev/vhost-net fd, and hands both to a
QEMU inside this guest. The inner VM boots its virtio-net iPXE ROM (nothing else), which drives
the NIC and sends DHCP requests from the lease's MAC. QMP shows vhost running; a packet socket
on the VF netdev sees a DHCP request leave from the lease's MAC; the host captures it on the
tap behind the emulated 82576 (``tests/realkernel/test_frame.py``) and checks the MAC and the
VLAN tag the PF inserted. Only a DHCP request counts: the macvtap sends IPv6 frames of its own
(MLD, neighbour and router solicitations) from the same MAC, with or without an inner VM (a
paused one left three), and the VF's transmit counter counts those too.

The inner QEMU uses KVM when this guest has /dev/kvm (TCG emulates AMD-V for it), else TCG.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.capture import ETH_P_ALL, dhcp_request
from tests.realkernel.guest import realhost
from tests.realkernel.guest.realhost import PF_ADDRESSES
from vfpool.model.pool import VfDefaults
from vfpool.qemu.machine import QemuMachine
from vfpool.qemu.qmp import Qmp
from vfpool.service import pools, vm
from vfpool.service.context import Context, open_context
from vfpool.service.vm import LaunchResult

pytestmark = pytest.mark.usefixtures("baseline")
PF0 = PF_ADDRESSES[0]
VLAN = 77
FRAME_TIMEOUT = 150.0
POLL = 0.25  # seconds between QMP polls: iPXE's NIC may be open for a few seconds only


def kvm_in_guest() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


NEVER_TOUCHED = json.dumps({"statuses": []})  # the device status of a NIC no driver opened
def _sent_dhcp(sniffer: socket.socket) -> str | None:
    """The source MAC of a DHCP request the VF netdev sent, among the frames waiting."""
    found = None
    while True:
        try:
            frame, address = sniffer.recvfrom(65536)
        except BlockingIOError:
            return found
        if address[2] == socket.PACKET_OUTGOING and dhcp_request(frame):
            found = ":".join(f"{byte:02x}" for byte in frame[6:12])


def _launch_and_watch(ctx: Context, mine: Path, accel: str, vf_netdev: str
                      ) -> tuple[LaunchResult, dict[str, Any]]:
    """One ``vm launch`` of the inner VM, watched over QMP until vhost runs and the VF has
    sent, or FRAME_TIMEOUT; what was seen."""
    observed: dict[str, Any] = {}

    def started(machine: QemuMachine) -> None:
        counter = Path(f"/sys/class/net/{vf_netdev}/statistics/tx_packets")
        sent_before = int(counter.read_text())
        realhost.wait_for("the test's QMP socket", mine.exists, timeout=60)
        statuses: set[str] = set()  # the device status fields QMP showed, as JSON
        slowest = 0.0
        polls = 0
        with Qmp(mine) as session, socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                                 socket.htons(ETH_P_ALL)) as sniffer:
            sniffer.bind((vf_netdev, 0))
            sniffer.setblocking(False)
            paths = [entry["path"] for entry in session.execute("x-query-virtio")]
            deadline = time.monotonic() + FRAME_TIMEOUT
            while time.monotonic() < deadline:
                # QEMU runs vhost only while the inner guest's driver has the NIC open
                # (DRIVER_OK): iPXE's DHCP tries, a few seconds each round.
                asked = time.monotonic()
                status = session.execute("x-query-virtio-status", path=paths[0])
                slowest = max(slowest, time.monotonic() - asked)
                polls += 1
                statuses.add(json.dumps(status.get("status"), sort_keys=True))
                if status.get("vhost-dev") and "vhost" not in observed:
                    observed["vhost"] = status["vhost-dev"]
                    observed["device status"] = status.get("status")
                observed["tx"] = int(counter.read_text()) - sent_before
                source = _sent_dhcp(sniffer)
                if source is not None and "dhcp_from" not in observed:
                    observed["dhcp_from"] = source
                if "vhost" in observed and "dhcp_from" in observed:
                    break
                time.sleep(POLL)
            observed["seconds"] = FRAME_TIMEOUT - (deadline - time.monotonic())
            session.execute("quit")
        observed["device_statuses"] = sorted(statuses)
        if "vhost" not in observed:  # what the failure needs to be understood
            observed.update(polls=polls, slowest_poll=round(slowest, 2),
                            qemu_output=machine.output()[-1500:])

    result = vm.launch(ctx, "vm-frame", "f", binary=str(realhost.QEMU), started=started,
                       qemu_args=[*realhost.QEMU_FIRMWARE, "-accel", accel, "-cpu",
                                  "host" if accel == "kvm" else "max", "-m", "128",
                                  "-display", "none", "-boot", "n", "-qmp",
                                  f"unix:{mine},server=on,wait=off"])
    return result, observed


def test_inner_vm_on_a_macvtap_vf_runs_vhost_and_sends(db: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An inner VM whose firmware never touched its NIC in FRAME_TIMEOUT is launched once
    more, and the record says so. Under KVM that this guest's TCG emulates, the NIC's status
    shows within about 3 s; once, it stayed empty for the whole 150 s (the inner VM stuck
    before iPXE), while the next run's inner VM saw vhost in 3.1 s. A NIC that a driver
    opened without vhost is a failure at once."""
    monkeypatch.setenv("QEMU_MODULE_DIR", realhost.qemu_env()["QEMU_MODULE_DIR"])
    realhost.run("modprobe", "vhost_net")
    mine = tmp_path / "test-qmp.sock"
    accel = "kvm" if kvm_in_guest() else "tcg"
    with open_context(db=db) as ctx:
        pools.define(ctx, pools.parse_spec("f", [realhost.pf_netdev(PF0)], 1, "sysfs", "macvtap",
                                           VfDefaults(vlan=VLAN)))
        pools.start(ctx, "f")
        vf = realhost.virtfns(PF0)[0]
        vf_netdev = realhost.netdevs_of(vf)[0]
        result, observed = _launch_and_watch(ctx, mine, accel, vf_netdev)
        stuck = None
        if "vhost" not in observed and observed["device_statuses"] == [NEVER_TOUCHED]:
            stuck = {key: observed.get(key) for key in ("seconds", "polls", "tx")}
            mine.unlink(missing_ok=True)
            result, observed = _launch_and_watch(ctx, mine, accel, vf_netdev)
    [lease] = result.leases
    realhost.record("frame", {"mac": lease.mac, "vlan": VLAN, "vf": vf, "accel": accel,
                              "vf_tx_frames": observed.get("tx", 0),
                              "vhost": bool(observed.get("vhost")),
                              "seconds": observed.get("seconds"),
                              "dhcp_from": observed.get("dhcp_from"),
                              "first_launch_stuck": stuck})
    twice = f" (launched twice; the first saw {stuck})" if stuck else ""
    assert observed.get("vhost"), f"QMP never showed vhost on the macvtap NIC: {observed}{twice}"
    assert observed.get("dhcp_from") == lease.mac, \
        f"the VF sent no DHCP request from {lease.mac}: {observed}{twice}"
    assert "vhost=on" in " ".join(result.argv)
    assert realhost.macvtaps() == []  # the launch removed its macvtap


def test_the_vf_sent_the_inner_vms_frames() -> None:
    """Needs igbvf's mailbox with the PF to work, so the VF gets carrier: the harness keeps the
    VF BARs below 4 GiB (harness.HOLE64 and the README tell why)."""
    sent = json.loads((realhost.RESULTS / "records" / "frame.json").read_text())
    assert sent["vf_tx_frames"] > 0, f"the VF sent nothing in {FRAME_TIMEOUT:.0f} s: {sent}"
    assert sent["dhcp_from"] == sent["mac"], f"no DHCP request from the lease's MAC: {sent}"
