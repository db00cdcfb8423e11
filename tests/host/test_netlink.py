"""PyRoute2Netlink at the IPRoute boundary: the exact pyroute2 calls for each VF field group
(SRIOV-FACTS.md, "VF config through the PF") and error mapping; and the VF table's reader
(vfpool.host.rtnl): its decoding of messages that pyroute2 encoded, checked against
pyroute2's own decoding, and its request answered by this machine's kernel.

There is no SR-IOV hardware or netdevsim here, so IPRoute is replaced by a small recorder for
the writes: this boundary is the one place where a stand-in is right. The reader's requests
go to the real kernel (loopback, and a link that is not there); the real igb's VF table is
read in tests/realkernel/guest/test_vf_fields.py."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vfpool.host import rtnl
from vfpool.host.netlink import VF_FIELDS, PyRoute2Netlink, fields_for
from vfpool.host.rtnl import vf_table
from vfpool.model.vfconfig import VfConfig

PF = "enp5s0f0"
PF_INDEX = 7


class FakeIPRoute:
    """Records what vfpool asks of pyroute2's IPRoute; one instance per opened socket."""

    def __init__(self, log: list[tuple[Any, ...]], *, links: dict[str, int],
                 reply: list[Any] | None, error: Exception | None) -> None:
        self._log = log
        self._links = links
        self._reply = reply
        self._error = error

    def link_lookup(self, *, ifname: str) -> list[int]:
        self._log.append(("link_lookup", ifname))
        return [self._links[ifname]] if ifname in self._links else []

    def link(self, cmd: str, **kwargs: Any) -> Any:
        self._log.append(("link", cmd, kwargs))
        if self._error is not None:
            raise self._error
        return self._reply

    def close(self) -> None:
        self._log.append(("close",))


class Recorder:
    """An ``ipr_factory`` that hands out FakeIPRoutes sharing one call log."""

    def __init__(self, *, reply: list[Any] | None = None, error: Exception | None = None,
                 links: dict[str, int] | None = None) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.opened = 0
        self._reply = reply
        self._error = error
        self._links = {PF: PF_INDEX, "enp5s0f0v3": 12} if links is None else links

    def __call__(self) -> FakeIPRoute:
        self.opened += 1
        return FakeIPRoute(self.log, links=self._links, reply=self._reply, error=self._error)

    def link_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(entry[1], entry[2]) for entry in self.log if entry[0] == "link"]


# --------------------------------------------------------------------------- set_vf
@pytest.mark.parametrize(("field", "config", "request_"), [
    ("mac", VfConfig(mac="52:54:00:12:34:56"), {"vf": 0, "mac": "52:54:00:12:34:56"}),
    ("vlan", VfConfig(vlan=100, qos=3), {"vf": 0, "vlan": {"vlan": 100, "qos": 3}}),
    # A VLAN without a QoS sends qos 0; VLAN 0 clears the tag.
    ("vlan", VfConfig(vlan=100), {"vf": 0, "vlan": {"vlan": 100, "qos": 0}}),
    ("vlan", VfConfig(vlan=0, qos=0), {"vf": 0, "vlan": {"vlan": 0, "qos": 0}}),
    ("rate", VfConfig(min_tx_rate=0, max_tx_rate=1000),
     {"vf": 0, "rate": {"min_tx_rate": 0, "max_tx_rate": 1000}}),
    ("rate", VfConfig(max_tx_rate=1000),
     {"vf": 0, "rate": {"min_tx_rate": 0, "max_tx_rate": 1000}}),
    ("rate", VfConfig(min_tx_rate=100, max_tx_rate=2000),
     {"vf": 0, "rate": {"min_tx_rate": 100, "max_tx_rate": 2000}}),
    ("spoofchk", VfConfig(spoofchk=True), {"vf": 0, "spoofchk": 1}),
    ("spoofchk", VfConfig(spoofchk=False), {"vf": 0, "spoofchk": 0}),
    ("trust", VfConfig(trust=True), {"vf": 0, "trust": 1}),
    ("trust", VfConfig(trust=False), {"vf": 0, "trust": 0}),
    ("link_state", VfConfig(link_state="auto"), {"vf": 0, "link_state": 0}),
    ("link_state", VfConfig(link_state="enable"), {"vf": 0, "link_state": 1}),
    ("link_state", VfConfig(link_state="disable"), {"vf": 0, "link_state": 2}),
])
def test_set_vf_sends_the_exact_pyroute2_request(field: str, config: VfConfig,
                                                  request_: dict[str, Any]) -> None:
    recorder = Recorder()
    PyRoute2Netlink(ipr_factory=recorder).set_vf(PF, 0, field, config)
    assert recorder.log == [
        ("link_lookup", PF),
        ("link", "set", {"index": PF_INDEX, "vf": request_}),
        ("close",),
    ]
    assert recorder.opened == 1


def test_set_vf_addresses_the_vf_by_its_index() -> None:
    recorder = Recorder()
    PyRoute2Netlink(ipr_factory=recorder).set_vf(PF, 5, "mac", VfConfig(mac="02:00:00:00:00:05"))
    assert recorder.link_calls() == [
        ("set", {"index": PF_INDEX, "vf": {"vf": 5, "mac": "02:00:00:00:00:05"}})]


def test_set_vf_of_an_unknown_field_is_a_bug_and_opens_no_socket() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="unknown VF field 'mtu'"):
        PyRoute2Netlink(ipr_factory=recorder).set_vf(PF, 0, "mtu", VfConfig())
    assert recorder.opened == 0


def test_netlink_error_becomes_oserror_with_its_errno_and_the_socket_is_closed() -> None:
    recorder = Recorder(error=NetlinkError(errno.EOPNOTSUPP))
    with pytest.raises(OSError) as raised:
        PyRoute2Netlink(ipr_factory=recorder).set_vf(PF, 0, "link_state",
                                                     VfConfig(link_state="enable"))
    assert type(raised.value) is not NetlinkError
    assert raised.value.errno == errno.EOPNOTSUPP
    assert isinstance(raised.value.__cause__, NetlinkError)
    assert recorder.log[-1] == ("close",)
    assert recorder.log.count(("close",)) == 1


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EPERM, errno.EBUSY])
def test_other_netlink_errors_keep_their_errno(code: int) -> None:
    recorder = Recorder(error=NetlinkError(code))
    with pytest.raises(OSError) as raised:
        PyRoute2Netlink(ipr_factory=recorder).set_vf(PF, 3, "vlan", VfConfig(vlan=4095))
    assert raised.value.errno == code
    assert recorder.log[-1] == ("close",)


def test_a_non_netlink_exception_passes_through_and_the_socket_is_still_closed() -> None:
    recorder = Recorder(error=RuntimeError("socket gone"))
    with pytest.raises(RuntimeError, match="socket gone"):
        PyRoute2Netlink(ipr_factory=recorder).set_vf(PF, 0, "trust", VfConfig(trust=True))
    assert recorder.log[-1] == ("close",)


def test_unknown_interface_is_enodev_and_nothing_is_set() -> None:
    recorder = Recorder()
    with pytest.raises(OSError) as raised:
        PyRoute2Netlink(ipr_factory=recorder).set_vf("nosuch0", 0, "mac",
                                                     VfConfig(mac="52:54:00:12:34:56"))
    assert raised.value.errno == errno.ENODEV
    assert "nosuch0" in str(raised.value)
    assert recorder.log == [("link_lookup", "nosuch0"), ("close",)]


# --------------------------------------------------------------------------- fields_for
@pytest.mark.parametrize(("config", "groups"), [
    (VfConfig(), []),
    (VfConfig(mac="52:54:00:12:34:56"), ["mac"]),
    (VfConfig(qos=3), ["vlan"]),
    (VfConfig(vlan=0), ["vlan"]),
    (VfConfig(min_tx_rate=10), ["rate"]),
    (VfConfig(max_tx_rate=0), ["rate"]),
    # False is a value to set, not an absent field.
    (VfConfig(spoofchk=False, trust=False), ["spoofchk", "trust"]),
    (VfConfig(max_tx_rate=1000, trust=True, mac="52:54:00:12:34:56", link_state="disable",
              qos=1, spoofchk=True),
     ["mac", "vlan", "spoofchk", "trust", "link_state", "rate"]),
    (VfConfig(max_tx_rate=1000, link_state="auto", vlan=100), ["vlan", "link_state", "rate"]),
])
def test_fields_for_lists_the_groups_a_config_sets_in_vf_fields_order(
        config: VfConfig, groups: list[str]) -> None:
    assert fields_for(config) == groups


def test_vf_fields_order() -> None:
    assert VF_FIELDS == ("mac", "vlan", "spoofchk", "trust", "link_state", "rate")


def test_every_group_of_a_full_config_makes_one_set_call_in_order() -> None:
    config = VfConfig(mac="52:54:00:12:34:56", vlan=100, qos=3, spoofchk=True, trust=False,
                      link_state="enable", min_tx_rate=0, max_tx_rate=1000)
    recorder = Recorder()
    port = PyRoute2Netlink(ipr_factory=recorder)
    for group in fields_for(config):
        port.set_vf(PF, 2, group, config)
    assert recorder.link_calls() == [
        ("set", {"index": PF_INDEX, "vf": {"vf": 2, "mac": "52:54:00:12:34:56"}}),
        ("set", {"index": PF_INDEX, "vf": {"vf": 2, "vlan": {"vlan": 100, "qos": 3}}}),
        ("set", {"index": PF_INDEX, "vf": {"vf": 2, "spoofchk": 1}}),
        ("set", {"index": PF_INDEX, "vf": {"vf": 2, "trust": 0}}),
        ("set", {"index": PF_INDEX, "vf": {"vf": 2, "link_state": 1}}),
        ("set", {"index": PF_INDEX,
                 "vf": {"vf": 2, "rate": {"min_tx_rate": 0, "max_tx_rate": 1000}}}),
    ]
    assert recorder.opened == 6
    assert recorder.log.count(("close",)) == 6


# --------------------------------------------------------------------------- set_link
@pytest.mark.parametrize(("options", "arguments"), [
    ({"mtu": 9000}, {"mtu": 9000}),
    ({"up": True}, {"state": "up"}),
    ({"up": False}, {"state": "down"}),
    ({"mtu": 1500, "up": True}, {"mtu": 1500, "state": "up"}),
])
def test_set_link_sends_mtu_and_state(options: dict[str, Any],
                                      arguments: dict[str, Any]) -> None:
    recorder = Recorder()
    PyRoute2Netlink(ipr_factory=recorder).set_link("enp5s0f0v3", **options)
    assert recorder.log == [
        ("link_lookup", "enp5s0f0v3"),
        ("link", "set", {"index": 12, **arguments}),
        ("close",),
    ]


def test_set_link_with_nothing_to_change_opens_no_socket() -> None:
    recorder = Recorder()
    PyRoute2Netlink(ipr_factory=recorder).set_link("enp5s0f0v3")
    assert recorder.opened == 0
    assert recorder.log == []


def test_set_link_errors_become_oserror_and_close_the_socket() -> None:
    recorder = Recorder(error=NetlinkError(errno.EINVAL))
    with pytest.raises(OSError) as raised:
        PyRoute2Netlink(ipr_factory=recorder).set_link("enp5s0f0v3", mtu=99999)
    assert raised.value.errno == errno.EINVAL
    assert recorder.log[-1] == ("close",)


def test_set_link_on_an_unknown_netdev_is_enodev() -> None:
    recorder = Recorder()
    with pytest.raises(OSError) as raised:
        PyRoute2Netlink(ipr_factory=recorder).set_link("gone0", up=True)
    assert raised.value.errno == errno.ENODEV
    assert recorder.log == [("link_lookup", "gone0"), ("close",)]


# --------------------------------------------------------------------------- reading
def _vf_info(index: int, *, mac: str, vlan: int, qos: int, spoofchk: int, trust: int,
             link_state: int, min_tx_rate: int, max_tx_rate: int) -> tuple[str, dict[str, Any]]:
    return ("IFLA_VF_INFO", {"attrs": [
        ("IFLA_VF_MAC", {"vf": index, "mac": mac}),
        ("IFLA_VF_VLAN", {"vf": index, "vlan": vlan, "qos": qos}),
        ("IFLA_VF_SPOOFCHK", {"vf": index, "spoofchk": spoofchk}),
        ("IFLA_VF_TRUST", {"vf": index, "trust": trust}),
        ("IFLA_VF_LINK_STATE", {"vf": index, "link_state": link_state}),
        ("IFLA_VF_RATE", {"vf": index, "min_tx_rate": min_tx_rate,
                          "max_tx_rate": max_tx_rate}),
    ]})


def _wire(attrs: list[tuple[str, Any]]) -> bytes:
    """An RTM_NEWLINK reply as the kernel sends it, header included, encoded by pyroute2: an
    encoder vfpool does not share with its reader."""
    message = ifinfmsg()
    message["family"] = 0
    message["index"] = PF_INDEX
    message["header"]["type"] = rtnl.RTM_NEWLINK
    message["attrs"] = attrs
    message.encode()
    return bytes(message.data)


TWO_VFS = [
    ("IFLA_IFNAME", PF),
    ("IFLA_MTU", 1500),
    ("IFLA_VFINFO_LIST", {"attrs": [
        _vf_info(0, mac="52:54:00:12:34:56", vlan=100, qos=3, spoofchk=1, trust=0,
                 link_state=0, min_tx_rate=0, max_tx_rate=1000),
        _vf_info(1, mac="00:00:00:00:00:00", vlan=0, qos=0, spoofchk=0, trust=1,
                 link_state=2, min_tx_rate=10, max_tx_rate=0),
    ]}),
]


@pytest.mark.parametrize(("attrs", "expected"), [
    # A netdev without SR-IOV, or a get without ext_mask=1: no list at all.
    ([("IFLA_IFNAME", "eno1"), ("IFLA_MTU", 1500)], {}),
    ([("IFLA_IFNAME", PF), ("IFLA_VFINFO_LIST", {"attrs": []})], {}),
    # The kernel reports -1 (0xffffffff) for spoof check and trust a driver does not track.
    ([("IFLA_VFINFO_LIST", {"attrs": [
        _vf_info(3, mac="02:00:00:00:00:03", vlan=4095, qos=7, spoofchk=0xFFFFFFFF,
                 trust=0xFFFFFFFF, link_state=1, min_tx_rate=0, max_tx_rate=0)]})],
     {3: VfConfig(mac="02:00:00:00:00:03", vlan=4095, qos=7, spoofchk=None, trust=None,
                  link_state="enable", min_tx_rate=0, max_tx_rate=0)}),
    # Old kernels send only MAC and VLAN.
    ([("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", {"attrs": [
        ("IFLA_VF_MAC", {"vf": 0, "mac": "a0:36:9f:00:00:01"}),
        ("IFLA_VF_VLAN", {"vf": 0, "vlan": 0, "qos": 0})]})]})],
     {0: VfConfig(mac="a0:36:9f:00:00:01", vlan=0, qos=0)}),
])
def test_vf_table_reads_what_pyroute2_encoded(attrs: list[tuple[str, Any]],
                                              expected: dict[int, VfConfig]) -> None:
    message = _wire(attrs)  # once: pyroute2's encoder rewrites the MACs it is given
    assert vf_table(message) == expected
    for index, config in expected.items():
        assert vf_table(message, only=index) == {index: config}


def _many(count: int, *, stats: bool) -> list[tuple[str, Any]]:
    """A PF of ``count`` VFs, each with every field the kernel sends (and statistics, as a
    kernel without RTEXT_FILTER_SKIP_STATS sends them), each VF's values its own."""
    infos = []
    for index in range(count):
        _, info = _vf_info(index, mac=f"02:00:00:00:{index >> 8:02x}:{index & 255:02x}",
                           vlan=index % 4095, qos=index % 8, spoofchk=index % 2,
                           trust=(index >> 1) % 2, link_state=index % 3, min_tx_rate=index,
                           max_tx_rate=2 * index)
        attrs = [("IFLA_VF_TX_RATE", {"vf": index, "tx_rate": 0}),  # before the MAC, too
                 *info["attrs"],
                 ("IFLA_VF_RSS_QUERY_EN", {"vf": index, "rss_query_en": 0}),
                 ("IFLA_VF_VLAN_LIST", {"attrs": [("IFLA_VF_VLAN_INFO", {
                     "vf": index, "vlan": index % 4095, "qos": 0, "proto": 0x8100})]})]
        if stats:
            attrs.append(("IFLA_VF_STATS", {"attrs": [
                ("IFLA_VF_STATS_RX_PACKETS", index), ("IFLA_VF_STATS_TX_BYTES", 7 * index)]}))
        infos.append(("IFLA_VF_INFO", {"attrs": attrs}))
    return [("IFLA_IFNAME", PF), ("IFLA_NUM_VF", count), ("IFLA_VFINFO_LIST", {"attrs": infos})]


def _pyroute2_configs(message: bytes) -> dict[int, VfConfig]:
    """The oracle: the same message decoded by pyroute2, read field by field."""
    decoded = ifinfmsg(message)
    decoded.decode()
    configs = {}
    for info in decoded.get_attr("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO"):
        vlan, rate = info.get_attr("IFLA_VF_VLAN"), info.get_attr("IFLA_VF_RATE")
        flags = {name: info.get_attr(f"IFLA_VF_{name.upper()}")[name]
                 for name in ("spoofchk", "trust", "link_state")}
        configs[info.get_attr("IFLA_VF_MAC")["vf"]] = VfConfig(
            mac=info.get_attr("IFLA_VF_MAC")["mac"], vlan=vlan["vlan"], qos=vlan["qos"],
            spoofchk=bool(flags["spoofchk"]), trust=bool(flags["trust"]),
            link_state=("auto", "enable", "disable")[flags["link_state"]],
            min_tx_rate=rate["min_tx_rate"], max_tx_rate=rate["max_tx_rate"])
    return configs


@pytest.mark.parametrize("stats", [False, True])
def test_a_table_of_256_vfs_reads_as_pyroute2_reads_it(stats: bool) -> None:
    message = _wire(_many(256, stats=stats))
    table = vf_table(message)
    assert table == _pyroute2_configs(message)
    assert len(table) == 256 and len({config.mac for config in table.values()}) == 256
    for index in (0, 1, 128, 255):
        assert vf_table(message, only=index) == {index: table[index]}
    assert vf_table(message, only=256) == {}


def test_a_malformed_table_is_eproto_not_a_crash() -> None:
    message = _wire(TWO_VFS)
    # An attribute whose length runs past the message's end.
    cut = message[:-8]
    with pytest.raises(OSError) as raised:
        vf_table(cut)
    assert raised.value.errno == errno.EPROTO
    # A spoof-check attribute that is well formed but shorter than struct ifla_vf_spoofchk
    # (4 bytes, not 8), followed by a trust attribute: read as if it were whole, its value
    # would be the next attribute's header.
    short = _hand_built([(1, MAC_OF_VF_0),
                         (4, struct.pack("=I", 0)),
                         (9, struct.pack("=II", 0, 1))])
    with pytest.raises(OSError) as raised:
        vf_table(short)
    assert raised.value.errno == errno.EPROTO
    whole = _hand_built([(1, MAC_OF_VF_0),
                         (4, struct.pack("=II", 0, 1)),
                         (9, struct.pack("=II", 0, 1))])
    assert vf_table(whole) == {0: VfConfig(mac="02:00:00:00:00:01", spoofchk=True,
                                           trust=True)}


MAC_OF_VF_0 = struct.pack("=I", 0) + bytes.fromhex("020000000001") + bytes(26)  # ifla_vf_mac


def _hand_built(vf_attrs: list[tuple[int, bytes]]) -> bytes:
    """An RTM_NEWLINK message with one VF whose attributes are given raw (type, payload):
    for what no encoder would write."""
    def attr(kind: int, payload: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)

    info = attr(1, b"".join(attr(kind, payload) for kind, payload in vf_attrs))  # IFLA_VF_INFO
    body = struct.pack("=BxHiII", 0, 0, PF_INDEX, 0, 0) + attr(22, info)  # IFLA_VFINFO_LIST
    return struct.pack("=IHHII", 16 + len(body), rtnl.RTM_NEWLINK, 0, 0, 0) + body


def test_the_request_names_the_link_and_asks_for_vfs_without_statistics() -> None:
    sent = ifinfmsg(rtnl.request(PF, 9))
    sent.decode()
    assert sent["header"]["type"] == rtnl.RTM_GETLINK
    assert sent["header"]["sequence_number"] == 9
    assert sent["index"] == 0
    assert sent.get_attr("IFLA_IFNAME") == PF
    assert sent.get_attr("IFLA_EXT_MASK") == 1 | 8  # RTEXT_FILTER_VF | _SKIP_STATS


# --------------------------------------------------------------------------- the real kernel
def test_the_kernel_answers_for_loopback_with_no_vf_table() -> None:
    message = rtnl.read_link("lo")
    decoded = ifinfmsg(message)
    decoded.decode()
    assert decoded.get_attr("IFLA_IFNAME") == "lo" and decoded["index"] == 1
    assert vf_table(message) == {}
    assert PyRoute2Netlink().vf_configs("lo") == {}
    assert PyRoute2Netlink().vf_config("lo", 0) is None


def test_reading_a_link_that_is_not_there_is_enodev_with_its_name() -> None:
    for port_read in (lambda: PyRoute2Netlink().vf_configs("nosuch0"),
                      lambda: PyRoute2Netlink().vf_config("nosuch0", 0)):
        with pytest.raises(OSError) as raised:
            port_read()
        assert raised.value.errno == errno.ENODEV
        assert "nosuch0" in str(raised.value)
