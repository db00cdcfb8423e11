"""Capture the frames that leave the guest's emulated NICs, on the host side of their taps.

Run inside the test's network namespace (``ip netns exec NS python capture.py OUT TAP...``). It
writes one JSON line per frame: the tap, the frame as hex, and its VLAN tag. The kernel moves
a received frame's 802.1Q tag into metadata before packet sockets see it, so the tag comes from
PACKET_AUXDATA, not from the bytes. It stops on SIGTERM, after ``--seconds`` or after
``--max-frames``, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
PACKET_OUTGOING = 4  # sll_pkttype of frames the host itself sends into the tap


def dhcp_request(frame: bytes) -> bool:
    """An untagged Ethernet frame carrying IPv4 UDP from port 68 to 67: what iPXE sends."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != socket.IPPROTO_UDP:
        return False
    header = (frame[14] & 0x0F) * 4
    return len(frame) >= 14 + header + 4 and \
        struct.unpack_from("!HH", frame, 14 + header) == (68, 67)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("taps", nargs="+")
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--max-frames", type=int, default=20000)
    options = parser.parse_args(argv)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sockets = {}
    for tap in options.taps:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.bind((tap, 0))
        sockets[sock.fileno()] = (tap, sock)
    deadline = time.monotonic() + options.seconds
    frames = 0
    with open(options.out, "a", buffering=1) as out:
        out.write(json.dumps({"ready": True, "taps": options.taps}) + "\n")
        while not stop and frames < options.max_frames and time.monotonic() < deadline:
            readable, _, _ = select.select(list(sockets), [], [], 0.5)
            for fd in readable:
                tap, sock = sockets[fd]
                data, ancillary, _, address = sock.recvmsg(65535, socket.CMSG_SPACE(AUXDATA.size))
                if address[2] == PACKET_OUTGOING:
                    continue  # sent towards the guest, not by it
                vlan = None
                for level, kind, payload in ancillary:
                    if level == SOL_PACKET and kind == PACKET_AUXDATA:
                        status, _, _, _, _, tci, tpid = AUXDATA.unpack(payload[:AUXDATA.size])
                        if status & TP_STATUS_VLAN_VALID:
                            vlan = {"id": tci & 0x0FFF, "pcp": tci >> 13,
                                    "tpid": tpid if status & TP_STATUS_VLAN_TPID_VALID
                                    else 0x8100}
                out.write(json.dumps({"tap": tap, "time": time.time(), "vlan": vlan,
                                      "frame": data.hex()}) + "\n")
                frames += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
