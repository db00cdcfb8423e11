"""vfpool/model/pool.py, drivers.py and vfconfig.py without a host or a store: pool names,
VF ranges and the indices a pool uses, VF defaults, the checks of one PF of a definition,
the TOML form, module options, and the MAC and owner rules of leases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.model.plans import PF0, pf
from vfpool.errors import InvalidInput
from vfpool.model.drivers import DRIVERS, driver_info, module_options
from vfpool.model.pool import (
    PfRef,
    PfSelector,
    PoolSpec,
    VfDefaults,
    VfRange,
    check_member,
    claimed_range,
    from_toml,
    resolve_method,
    to_toml,
    used_indices,
    validate_name,
)
from vfpool.model.vfconfig import (
    VfConfig,
    generated_mac,
    normalize_mac,
    validate_lease_mac,
    validate_owner,
)
from vfpool.store.states import LinkState, Method, Mode


# --------------------------------------------------------------------------- names, ranges
@pytest.mark.parametrize("name", ["a", "A9", "tenant-a", "t_1.2", "9" * 64])
def test_valid_pool_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "_a", "a b", "a/b", "a" * 65, "é", "a\n"])
def test_invalid_pool_names(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"^invalid pool name "):
        validate_name(name)


def test_vf_range_parse_size_overlap_and_text() -> None:
    low, high = VfRange.parse("0-7", "x"), VfRange.parse(" 8-15 ", "x")
    assert (low.size, high.size, str(high)) == (8, 8, "8-15")
    assert not low.overlaps(high) and not high.overlaps(low)
    assert low.overlaps(VfRange(7, 9)) and VfRange(7, 9).overlaps(low)  # one shared index
    assert VfRange(3, 3).overlaps(VfRange(0, 63))
    assert VfRange.parse("5-5", "x").size == 1


@pytest.mark.parametrize(("text", "message"), [
    ("7-3", "invalid VF range '7-3' in 'ctx': 7 is above 3"),
    ("x", "invalid VF range 'x' in 'ctx': expected START-END, such as 0-7"),
    ("-1-3", "invalid VF range '-1-3' in 'ctx': expected START-END, such as 0-7"),
    ("0-12345", "invalid VF range '0-12345' in 'ctx': expected START-END, such as 0-7"),
    ("", "invalid VF range '' in 'ctx': expected START-END, such as 0-7"),
])
def test_bad_vf_ranges(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        VfRange.parse(text, "ctx")
    assert str(caught.value) == message


def test_pf_ref_parse() -> None:
    assert PfRef.parse("enp5s0f0") == PfRef("enp5s0f0")
    assert PfRef.parse("enp5s0f0#8-15") == PfRef("enp5s0f0", VfRange(8, 15))
    assert str(PfRef.parse("0000:05:00.0#0-3")) == "0000:05:00.0#0-3"
    with pytest.raises(InvalidInput, match="expected PF"):
        PfRef.parse("#0-7")
    with pytest.raises(InvalidInput, match="expected START-END"):
        PfRef.parse("enp5s0f0#")


def test_claimed_and_used_indices() -> None:
    assert claimed_range(None, 64) == VfRange(0, 63)
    assert claimed_range(VfRange(8, 15), 64) == VfRange(8, 15)
    assert claimed_range(None, 0) == VfRange(0, 0)
    assert used_indices(None, 4) == range(0, 4)
    assert used_indices(VfRange(8, 15), 2) == range(8, 10)


# --------------------------------------------------------------------------- VF defaults
@pytest.mark.parametrize(("defaults", "message"), [
    (VfDefaults(vlan=0), "VLAN 0 is outside 1-4094"),
    (VfDefaults(vlan=4095), "VLAN 4095 is outside 1-4094"),
    (VfDefaults(vlan=5, qos=8), "QoS 8 is outside 0-7"),
    (VfDefaults(vlan=5, qos=-1), "QoS -1 is outside 0-7"),
    (VfDefaults(qos=0), "QoS needs a VLAN: give --vlan too"),
    (VfDefaults(max_tx_rate=2**32), "max_tx_rate 4294967296 Mbps is outside 0-4294967295"),
    (VfDefaults(min_tx_rate=-1), "min_tx_rate -1 Mbps is outside 0-4294967295"),
    (VfDefaults(min_tx_rate=200, max_tx_rate=100),
     "min TX rate 200 Mbps is above max TX rate 100 Mbps"),
    (VfDefaults(mtu=67), "MTU 67 is outside 68-9216"),
    (VfDefaults(mtu=9217), "MTU 9217 is outside 68-9216"),
    (VfDefaults(link_state="up"),  # type: ignore[arg-type]
     "invalid link state 'up': use one of auto, enable, disable"),
])
def test_invalid_vf_defaults(defaults: VfDefaults, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        defaults.validate()
    assert str(caught.value) == message


def test_valid_vf_defaults_at_their_bounds() -> None:
    for defaults in (VfDefaults(vlan=1, qos=0), VfDefaults(vlan=4094, qos=7),
                     VfDefaults(mtu=68), VfDefaults(mtu=9216),
                     VfDefaults(min_tx_rate=500, max_tx_rate=0),  # max 0: no limit
                     VfDefaults(max_tx_rate=2**32 - 1)):
        assert defaults.validate() == defaults
    validated = VfDefaults(link_state="disable").validate()  # type: ignore[arg-type]
    assert validated.link_state is LinkState.DISABLE


def test_vf_fields_are_what_netlink_sets() -> None:
    assert VfDefaults().vf_fields() == set()
    assert VfDefaults(vlan=5, qos=3, mtu=9000).vf_fields() == {"vlan"}  # qos rides on vlan
    assert VfDefaults(trust=False, spoofchk=True, min_tx_rate=0).vf_fields() == {
        "trust", "spoofchk", "min_tx_rate"}  # False and 0 are values, not "unset"


def test_pool_spec_validate() -> None:
    spec = PoolSpec("a", (PfRef("enp5s0f0"),), 4, "sysfs", "netdev")  # type: ignore[arg-type]
    validated = spec.validate()
    assert (validated.method, validated.mode) == (Method.SYSFS, Mode.NETDEV)
    assert isinstance(validated.method, Method) and isinstance(validated.mode, Mode)
    both = replace(spec, selectors=(PfSelector.parse("driver=ixgbe"),))
    for broken, message in ((replace(spec, pfs=()), "a pool needs at least one --pf (or --select)"),
                            (both, "give --pf or --select, not both: a pool has fixed PFs or "
                                   "chooses them at start"),
                            (replace(spec, vfs=0), "--vfs must be 1-65535, not 0"),
                            (replace(spec, vfs=65536), "--vfs must be 1-65535, not 65536"),
                            (replace(spec, mode="tap"),
                             "invalid mode 'tap': use one of vfio, macvtap, netdev"),
                            (replace(spec, method="ioctl"),
                             "invalid method 'ioctl': use one of auto, sysfs, module-param")):
        with pytest.raises(InvalidInput) as caught:
            broken.validate()
        assert str(caught.value) == message


# --------------------------------------------------------------------------- check_member
def spec(vfs: int, *, mode: Mode = Mode.NETDEV, **defaults: object) -> PoolSpec:
    return PoolSpec("p", (PfRef("enp5s0f0"),), vfs, Method.AUTO, mode,
                    VfDefaults(**defaults))  # type: ignore[arg-type]


def member_error(pool: PoolSpec, ref: PfRef, *, driver: str = "ixgbe", totalvfs: int = 63,
                 method: Method = Method.SYSFS) -> str | None:
    try:
        check_member(pool, ref, pf(PF0, driver=driver, totalvfs=totalvfs),
                     driver_info(driver), method)
    except InvalidInput as exc:
        return str(exc)
    return None


def test_check_member_accepts_what_fits() -> None:
    assert member_error(spec(63), PfRef("enp5s0f0")) is None
    assert member_error(spec(8), PfRef("enp5s0f0", VfRange(55, 62))) is None
    assert member_error(spec(7), PfRef("enp5s0f0"), driver="igb", totalvfs=8,
                        method=Method.MODULE_PARAM) is None
    assert member_error(spec(2, mode=Mode.VFIO), PfRef("enp5s0f0"), driver="mlx4_core",
                        method=Method.MODULE_PARAM) is None


def test_check_member_refusals() -> None:
    label = "PF 0000:05:00.0 (enp5s0f0)"
    assert member_error(spec(64), PfRef("enp5s0f0")) == (
        f"{label} supports at most 63 VFs; 64 requested")
    assert member_error(spec(1), PfRef("enp5s0f0", VfRange(60, 63))) == (
        f"VF range 60-63 of {label} goes past its 63 VFs (0-62)")
    assert member_error(spec(9), PfRef("enp5s0f0", VfRange(8, 15))) == (
        f"--vfs 9 does not fit VF range 8-15 of {label}, which holds 8 VFs")
    # igb's limit of 7 counts from index 0: VFs 4-7 of a range need an 8th VF.
    assert member_error(spec(4), PfRef("enp5s0f0", VfRange(4, 7)), driver="igb", totalvfs=8,
                        method=Method.MODULE_PARAM) == (
        f"driver igb allows at most 7 VFs per PF; {label} would need 8")
    assert member_error(spec(2), PfRef("enp5s0f0"), driver="mlx4_core") == (
        "driver mlx4_core cannot resize through sysfs; use --method module-param")
    assert member_error(spec(2), PfRef("enp5s0f0"), driver="i40e",
                        method=Method.MODULE_PARAM) == (
        "driver i40e has no module parameter for VFs; use --method sysfs")
    assert member_error(spec(2, mode=Mode.MACVTAP), PfRef("enp5s0f0"), driver="fancy") == (
        "driver fancy has no VF net driver vfpool knows, so it cannot do --mode macvtap; use "
        "--mode vfio")
    assert member_error(spec(2, trust=True, min_tx_rate=5), PfRef("enp5s0f0"),
                        driver="mlx4_core", method=Method.MODULE_PARAM) == (
        f"driver mlx4_core cannot set min_tx_rate, trust on its VFs ({label})")


def test_resolve_method() -> None:
    assert resolve_method(Method.AUTO, DRIVERS["ixgbe"]) == Method.SYSFS
    assert resolve_method(Method.AUTO, DRIVERS["mlx4_core"]) == Method.MODULE_PARAM
    assert resolve_method(Method.MODULE_PARAM, DRIVERS["ixgbe"]) == Method.MODULE_PARAM
    assert resolve_method(Method.AUTO, driver_info(None)) == Method.MODULE_PARAM


# --------------------------------------------------------------------------- TOML
def test_toml_round_trip() -> None:
    original = PoolSpec("t", (PfRef("enp5s0f0"), PfRef("0000:85:00.1", VfRange(8, 15))), 4,
                        Method.SYSFS, Mode.MACVTAP,
                        VfDefaults(vlan=100, qos=2, trust=False, mtu=9000), autostart=True)
    text = to_toml(original)
    assert text.startswith("# vfpool pool definition")
    assert from_toml(text, "f.toml") == original
    # Unset defaults are left out, not written as empty values.
    assert "[defaults]" not in to_toml(replace(original, defaults=VfDefaults()))


@pytest.mark.parametrize(("text", "message"), [
    ('name = "p"\nvfs = 1\nsize = 2\npf = [{ pci = "x" }]\n', "f.toml: unknown key 'size'"),
    ('name = "p"\nvfs = 1\npf = [{ pci = "x", bus = 1 }]\n',
     "f.toml: unknown key 'bus' in [[pf]]"),
    ('name = "p"\npf = [{ pci = "x" }]\n', "f.toml: missing key 'vfs'"),
    ('name = "p"\nvfs = true\npf = [{ pci = "x" }]\n', "f.toml: 'vfs' must be an integer"),
    ('name = "p"\nvfs = 1\npf = [{ pci = "x" }]\ndefaults = 3\n',
     "f.toml: [defaults] must be a table"),
    ('name = "p"\nvfs = 1\npf = [{ pci = "x" }]\n[defaults]\ncolour = 1\n',
     "f.toml: unknown key 'colour' in [defaults]"),
    ('name = "p"\nvfs = 1\npf = [{ pci = "x" }]\n[defaults]\nvlan = "7"\n',
     "f.toml: 'vlan' must be an integer"),
    ('name = "p"\nvfs = 1\n', "a pool needs at least one --pf (or --select)"),
    ('name = "p"\nvfs = 1\nselect = "driver=i40e"\n',
     "f.toml: 'select' must be a list of strings such as [\"vendor=8086,device=1572\"]"),
    ('name = "p"\nvfs = 1\npf = [{ pci = "x", range = "3-1" }]\n',
     "invalid VF range '3-1' in 'x#3-1': 3 is above 1"),
])
def test_toml_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        from_toml(text, "f.toml")
    assert str(caught.value) == message


def test_toml_that_does_not_parse_or_nests_too_deep() -> None:
    with pytest.raises(InvalidInput, match=r"^f.toml is not valid TOML: "):
        from_toml("name = ", "f.toml")
    with pytest.raises(InvalidInput, match=r"^f.toml (is nested too deeply|is not valid TOML)"):
        from_toml("x = " + "[" * 100_000, "f.toml")


# --------------------------------------------------------------------------- drivers
def test_module_options() -> None:
    assert module_options(DRIVERS["igb"], 7, probe=True) == "max_vfs=7"
    assert module_options(DRIVERS["igb"], 7, probe=False) == "max_vfs=7"
    assert module_options(DRIVERS["mlx4_core"], 4, probe=True) == "num_vfs=4 probe_vf=4"
    assert module_options(DRIVERS["mlx4_core"], 4, probe=False) == "num_vfs=4 probe_vf=0"
    with pytest.raises(ValueError, match="driver i40e has no VF module parameter"):
        module_options(DRIVERS["i40e"], 4, probe=True)


def test_unknown_drivers_resize_through_sysfs_and_no_driver_cannot() -> None:
    unknown = driver_info("fancy")
    assert (unknown.name, unknown.sysfs_resize, unknown.module_resize) == ("fancy", True, False)
    assert driver_info(None).sysfs_resize is False
    assert driver_info("igb") is DRIVERS["igb"]


# --------------------------------------------------------------------------- MACs, owners
def test_macs() -> None:
    assert normalize_mac(" 52-54-00-AB-CD-EF ") == "52:54:00:ab:cd:ef"
    assert validate_lease_mac("02:00:00:00:00:01") == "02:00:00:00:00:01"
    for text, message in (
            ("00:00:00:00:00:00", "MAC 00:00:00:00:00:00 is all-zero; give a unicast address"),
            ("FF:FF:FF:FF:FF:FF",
             "MAC ff:ff:ff:ff:ff:ff is the broadcast address; give a unicast address"),
            ("33:33:00:00:00:01",
             "MAC 33:33:00:00:00:01 is a multicast address; give a unicast address"),
            ("52:54:00:12:34", "invalid MAC address '52:54:00:12:34': expected six hex bytes "
                               "such as 52:54:00:12:34:56")):
        with pytest.raises(InvalidInput) as caught:
            validate_lease_mac(text)
        assert str(caught.value) == message


def test_generated_macs_are_stable_local_unicast_and_differ_by_input() -> None:
    first = generated_mac("net", "vm1", 0)
    assert first == generated_mac("net", "vm1", 0)
    assert validate_lease_mac(first) == first
    assert int(first[:2], 16) & 0b11 == 0b10  # locally administered, unicast
    others = {generated_mac("net", "vm1", 1), generated_mac("net", "vm2", 0),
              generated_mac("v", "vm1", 0), generated_mac("net", "vm1", 0, attempt=1)}
    assert first not in others and len(others) == 4


def test_owners() -> None:
    assert validate_owner("o" * 128) == "o" * 128
    for owner, message in (("", "owner must not be empty"),
                           ("o" * 129, "owner is 129 characters long; at most 128 are allowed"),
                           ("vm\t1", "owner 'vm\\t1' contains characters that are not "
                                     "printable")):
        with pytest.raises(InvalidInput) as caught:
            validate_owner(owner)
        assert str(caught.value) == message


def test_vf_config_differences_and_dict_form() -> None:
    desired = VfConfig(mac="02:00:00:00:00:01", vlan=10, trust=False)
    current = VfConfig(mac="02:00:00:00:00:01", vlan=0, trust=True, spoofchk=True)
    assert desired.differences(current) == {"vlan": (10, 0), "trust": (False, True)}
    assert desired.differences(desired) == {}
    assert VfConfig.from_dict({"vlan": 3, "unknown": 1}) == VfConfig(vlan=3)
    assert VfConfig.from_dict(None) == VfConfig()
    assert VfConfig.from_dict(current.as_dict()) == current
