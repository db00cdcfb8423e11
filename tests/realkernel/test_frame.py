"""The frame an inner VM sent through a leased VF (guest/test_vhost_frame.py), as it left the
emulated 82576: captured on the host side of the NIC's tap, in the network namespace the harness
made, with the lease's MAC as its source and the VLAN tag the PF inserted for the VF.

The inner VM's frame is its iPXE's DHCP request. The macvtap on the VF sends IPv6 frames of
its own from the same MAC (MLD, neighbour and router solicitations), inner VM or not: a run
whose inner VM quit before its first request still captured seven of those."""

from __future__ import annotations

import json

import pytest

from tests.realkernel.capture import dhcp_request
from tests.realkernel.harness import TAPS, GuestRun


def test_the_inner_vms_frame_left_the_emulated_nic_with_mac_and_vlan(
        guest_run: GuestRun) -> None:
    sent = guest_run.record("frame")
    if sent is None:
        pytest.fail("the guest recorded no frame: guest/test_vhost_frame.py failed or did not "
                    f"run ({guest_run.summary()})", pytrace=False)
    frames = [json.loads(line) for line in guest_run.frames.read_text().splitlines()
              if line.strip()]
    source = str(sent["mac"]).replace(":", "")
    from_vf = [frame for frame in frames if frame.get("frame", "")[12:24] == source]
    assert from_vf, (f"no frame from {sent['mac']} among {len(frames) - 1} captured on "
                     f"{', '.join(TAPS)}; the VF counted {sent['vf_tx_frames']} sent")
    assert all(frame["tap"] == TAPS[0] for frame in from_vf)  # PF0's wire
    assert {frame["vlan"]["id"] if frame["vlan"] else None for frame in from_vf} == {
        sent["vlan"]}
    requests = [frame for frame in from_vf if dhcp_request(bytes.fromhex(frame["frame"]))]
    assert requests, (f"none of the {len(from_vf)} frames from {sent['mac']} is the inner VM's "
                      f"DHCP request: {sorted({frame['frame'][24:28] for frame in from_vf})}")
