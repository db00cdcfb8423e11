"""A PF's VF table, read over a plain rtnetlink socket and decoded with ``struct``.

Why not pyroute2 here, as for every write: its decoder builds an object for every attribute
of every VF, about 80 µs a VF. A PF of 128 VFs cost 10 ms of CPU per read, and a lease reads
its VF three times (what it had, and the read-back after each change), so a real host spent
about 30 ms of pyroute2 per acquire+release on such a PF, ten times vfpool's own work, and it
grew with the VF count. Here the request is one ``RTM_GETLINK`` by name, with
``IFLA_EXT_MASK`` asking for the VF table without the VFs' statistics (a kernel that knows no
``RTEXT_FILTER_SKIP_STATS`` ignores that bit and sends them: they are skipped here).
The reply is walked attribute by attribute, and only the fields a ``VfConfig`` holds are
decoded: for one VF (``only``), the other VFs' entries are skipped by their length.

The layout is the kernel's UAPI (``include/uapi/linux/netlink.h``, ``rtnetlink.h``,
``if_link.h``): a ``nlmsghdr``, an ``ifinfomsg``, then attributes, each a ``u16`` length and a
``u16`` type, padded to four bytes. The values are in host byte order.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

from vfpool.model.vfconfig import LINK_STATES, VfConfig

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
IFLA_IFNAME, IFLA_VFINFO_LIST, IFLA_EXT_MASK = 3, 22, 29
RTEXT_FILTER_VF, RTEXT_FILTER_SKIP_STATS = 1 << 0, 1 << 3
# Inside IFLA_VFINFO_LIST: one IFLA_VF_INFO per VF, holding these (if_link.h).
IFLA_VF_INFO = 1
IFLA_VF_MAC, IFLA_VF_VLAN, IFLA_VF_SPOOFCHK, IFLA_VF_LINK_STATE, IFLA_VF_RATE = 1, 2, 4, 5, 6
IFLA_VF_TRUST = 9
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
ETH_ALEN = 6

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_U32 = struct.Struct("=I")
_ERROR = struct.Struct("=i")
_TWO = struct.Struct("=II")  # vf, value
_THREE = struct.Struct("=III")  # vf, and two values
REPLY_LIMIT = 1 << 20  # far above the largest reply: 256 VFs with statistics are 70 KB


def request(ifname: str, sequence: int) -> bytes:
    """``RTM_GETLINK`` of the link named ``ifname``, with its VF table and without VF
    statistics."""
    name = os.fsencode(ifname) + b"\0"
    attrs = _attr(IFLA_IFNAME, name) + _attr(IFLA_EXT_MASK, _U32.pack(
        RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attrs
    return _HEADER.pack(_HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST, sequence,
                        0) + body


def _attr(kind: int, payload: bytes) -> bytes:
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def read_link(ifname: str, *, timeout: float = 10.0) -> bytes:
    """The kernel's ``RTM_NEWLINK`` reply for ``ifname`` (the whole message). An error reply
    arrives as ``OSError`` with its errno; ENODEV names the link."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sequence = 1
        sock.sendto(request(ifname, sequence), (0, 0))
        while True:
            data, _, flags, _ = sock.recvmsg(REPLY_LIMIT)
            if flags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, f"the kernel's reply for {ifname} is larger "
                                              f"than {REPLY_LIMIT} bytes")
            found = _reply(data, sequence, ifname)
            if found is not None:
                return found


def _reply(data: bytes, sequence: int, ifname: str) -> bytes | None:
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, seen, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise OSError(errno.EPROTO, f"a malformed rtnetlink message for {ifname}")
        if seen == sequence:
            if kind == NLMSG_ERROR:
                [code] = _ERROR.unpack_from(data, offset + _HEADER.size)
                if code == 0:
                    raise OSError(errno.EPROTO, f"the kernel sent no link for {ifname}")
                if -code == errno.ENODEV:
                    raise OSError(errno.ENODEV, f"no network interface {ifname}")
                raise OSError(-code, os.strerror(-code))
            if kind == RTM_NEWLINK:
                return data[offset:offset + length]
        offset += (length + 3) & ~3
    return None  # not ours: read on


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in ``data[start:end]``."""
    while start + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, start)
        if length < _ATTR.size or start + length > end:
            raise ValueError(f"a malformed netlink attribute at byte {start}")
        yield kind & NLA_TYPE_MASK, start + _ATTR.size, start + length
        start += (length + 3) & ~3


def vf_table(message: bytes, only: int | None = None) -> dict[int, VfConfig]:
    """Every VF's config in an ``RTM_NEWLINK`` message (VF index: config), or only VF
    ``only``'s. A link without SR-IOV has none. An entry without a MAC is left out, as
    ``ip link`` leaves it. A message that does not parse is ``OSError`` EPROTO."""
    try:
        for kind, begin, end in _attrs(message, _HEADER.size + _IFINFOMSG.size, len(message)):
            if kind == IFLA_VFINFO_LIST:
                return _vfs(message, begin, end, only)
    except (ValueError, struct.error) as exc:
        raise OSError(errno.EPROTO, f"a VF table that does not parse: {exc}") from exc
    return {}


def _vfs(data: bytes, begin: int, end: int, only: int | None) -> dict[int, VfConfig]:
    configs: dict[int, VfConfig] = {}
    for kind, info_begin, info_end in _attrs(data, begin, end):
        if kind != IFLA_VF_INFO:
            continue
        fields: dict[int, tuple[int, int]] = {}
        index = None
        for field, start, stop in _attrs(data, info_begin, info_end):
            fields[field] = (start, stop)
            if field == IFLA_VF_MAC:
                [index] = _fixed(_U32, data, start, stop)
                if only is not None and index != only:
                    break  # another VF's: the kernel puts its MAC first, so this is quick
        if index is None or (only is not None and index != only):
            continue
        configs[index] = _vf(data, fields)
        if only is not None:
            break
    return configs


def _fixed(layout: struct.Struct, data: bytes, start: int, stop: int) -> tuple[int, ...]:
    if stop - start < layout.size:
        raise ValueError(f"a VF attribute of {stop - start} bytes, not {layout.size}")
    return layout.unpack_from(data, start)


def _vf(data: bytes, fields: dict[int, tuple[int, int]]) -> VfConfig:
    mac_start, mac_stop = fields[IFLA_VF_MAC]
    if mac_stop - mac_start < _U32.size + ETH_ALEN:
        raise ValueError(f"a VF MAC attribute of {mac_stop - mac_start} bytes")
    mac = ":".join(f"{byte:02x}" for byte in
                   data[mac_start + _U32.size:mac_start + _U32.size + ETH_ALEN])
    vlan = qos = min_rate = max_rate = None
    spoofchk = trust = None
    link_state = None
    if IFLA_VF_VLAN in fields:
        _, vlan, qos = _fixed(_THREE, data, *fields[IFLA_VF_VLAN])
    if IFLA_VF_SPOOFCHK in fields:
        spoofchk = _flag(_fixed(_TWO, data, *fields[IFLA_VF_SPOOFCHK])[1])
    if IFLA_VF_TRUST in fields:
        trust = _flag(_fixed(_TWO, data, *fields[IFLA_VF_TRUST])[1])
    if IFLA_VF_LINK_STATE in fields:
        link_state = LINK_STATES.get(_fixed(_TWO, data, *fields[IFLA_VF_LINK_STATE])[1])
    if IFLA_VF_RATE in fields:
        _, min_rate, max_rate = _fixed(_THREE, data, *fields[IFLA_VF_RATE])
    return VfConfig(mac=mac, vlan=vlan, qos=qos, spoofchk=spoofchk, trust=trust,
                    link_state=link_state, min_tx_rate=min_rate, max_tx_rate=max_rate)


def _flag(value: int) -> bool | None:
    """The kernel reports -1 (0xffffffff) for a setting the driver does not track."""
    return None if value == 0xFFFFFFFF else bool(value)
