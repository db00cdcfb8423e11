"""Pool definitions: validation and the TOML form. Pure code."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

import tomli_w

from vfpool.errors import InvalidInput
from vfpool.model.drivers import DriverInfo
from vfpool.model.snapshot import PfSnapshot
from vfpool.store.states import LinkState, Method, Mode, values

E = TypeVar("E", bound=StrEnum)
METHODS = values(Method)
MODES = values(Mode)
# A pool name: 1 to 64 ASCII letters, digits, '_', '.' and '-', starting with a letter or digit.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(NAME_PATTERN, re.ASCII)
_RANGE = re.compile(r"(\d{1,4})-(\d{1,4})", re.ASCII)
MTU_MIN, MTU_MAX = 68, 9216
RATE_MAX = 2**32 - 1  # ifla_vf_rate's min_tx_rate and max_tx_rate are __u32 Mbps
VFS_MAX = 2**16 - 1  # sriov_numvfs is a u16


LINK_STATES = values(LinkState)


def choice(kind: type[E], value: str, what: str) -> E:
    """``value`` as a member of ``kind``, or InvalidInput naming the choices."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}: use one of "
                           f"{', '.join(values(kind))}") from None


def validate_link_state(value: str) -> LinkState:
    """A VF link state as ``ip link set ... vf N state`` takes it."""
    return choice(LinkState, value, "link state")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"invalid pool name {name!r}: use 1 to 64 letters, digits, '_', '.' "
                           "or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True, order=True)
class VfRange:
    """An inclusive range of VF indices on one PF, written ``0-7``."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str, context: str) -> VfRange:
        match = _RANGE.fullmatch(text.strip())
        if match is None:
            raise InvalidInput(f"invalid VF range {text!r} in {context!r}: expected START-END, "
                               "such as 0-7")
        start, end = int(match[1]), int(match[2])
        if start > end:
            raise InvalidInput(f"invalid VF range {text!r} in {context!r}: {start} is above "
                               f"{end}")
        return cls(start, end)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def overlaps(self, other: VfRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class PfRef:
    """A PF as the user named it, with an optional VF index range: ``enp5s0f0#0-7``."""

    pf: str
    range: VfRange | None = None

    @classmethod
    def parse(cls, text: str) -> PfRef:
        name, hash_sign, range_text = text.partition("#")
        if not name:
            raise InvalidInput(f"invalid --pf {text!r}: expected PF[#START-END], such as "
                               "enp5s0f0#0-7")
        return cls(name, VfRange.parse(range_text, text) if hash_sign else None)

    def __str__(self) -> str:
        return f"{self.pf}#{self.range}" if self.range else self.pf


_SELECTOR_KEYS = ("vendor", "device", "driver", "pf")
_HEX_ID = re.compile(r"(?:0x)?([0-9a-fA-F]{4})")


@dataclass(frozen=True)
class PfSelector:
    """PFs chosen by what they are rather than where they sit, as the SR-IOV device plugin's
    selectors do: ``vendor=8086,device=1572[,driver=i40e][,pf=enp*]``. Every key given must
    match; ``pf`` is a shell pattern on the PF's netdev names."""

    vendor: int | None = None
    device: int | None = None
    driver: str | None = None
    pf: str | None = None

    @classmethod
    def parse(cls, text: str) -> PfSelector:
        found: dict[str, Any] = {}
        for part in text.split(","):
            key, equals, value = part.strip().partition("=")
            if not equals or not value:
                raise InvalidInput(f"invalid --select {text!r}: expected KEY=VALUE pairs such as "
                                   "vendor=8086,device=1572,driver=i40e,pf=enp*")
            if key not in _SELECTOR_KEYS:
                raise InvalidInput(f"invalid --select {text!r}: unknown key {key!r} (use "
                                   f"{', '.join(_SELECTOR_KEYS)})")
            if key in found:
                raise InvalidInput(f"invalid --select {text!r}: {key} is given twice")
            if key in ("vendor", "device"):
                hex_id = _HEX_ID.fullmatch(value)
                if hex_id is None:
                    raise InvalidInput(f"invalid --select {text!r}: {key} must be four hex "
                                       f"digits, such as 8086, not {value!r}")
                found[key] = int(hex_id.group(1), 16)
            else:
                if not re.fullmatch(r"[A-Za-z0-9_.*?\[\]!:@-]{1,64}", value):
                    raise InvalidInput(f"invalid --select {text!r}: {key} {value!r} has "
                                       "characters a driver or interface name cannot have")
                found[key] = value
        return cls(**found)

    def matches(self, pf: PfSnapshot) -> bool:
        return ((self.vendor is None or pf.vendor == self.vendor)
                and (self.device is None or pf.device == self.device)
                and (self.driver is None or pf.driver == self.driver)
                and (self.pf is None or any(fnmatch.fnmatchcase(netdev.name, self.pf)
                                            for netdev in pf.netdevs)))

    def __str__(self) -> str:
        parts = [f"vendor={self.vendor:04x}" if self.vendor is not None else "",
                 f"device={self.device:04x}" if self.device is not None else "",
                 f"driver={self.driver}" if self.driver else "",
                 f"pf={self.pf}" if self.pf else ""]
        return ",".join(part for part in parts if part)


def selected(selectors: tuple[PfSelector, ...], pfs: list[PfSnapshot]) -> list[PfSnapshot]:
    """The PFs that any of ``selectors`` matches, in PCI order."""
    return sorted((pf for pf in pfs if any(s.matches(pf) for s in selectors)),
                  key=lambda pf: str(pf.pci))


@dataclass(frozen=True)
class VfDefaults:
    """VF settings applied to every lease of the pool; None leaves the driver's value alone."""

    vlan: int | None = None
    qos: int | None = None
    trust: bool | None = None
    spoofchk: bool | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    mtu: int | None = None
    link_state: LinkState | None = None

    def validate(self) -> VfDefaults:
        if self.vlan is not None and not 1 <= self.vlan <= 4094:
            raise InvalidInput(f"VLAN {self.vlan} is outside 1-4094")
        if self.qos is not None:
            if not 0 <= self.qos <= 7:
                raise InvalidInput(f"QoS {self.qos} is outside 0-7")
            if self.vlan is None:
                raise InvalidInput("QoS needs a VLAN: give --vlan too")
        for key in ("min_tx_rate", "max_tx_rate"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= RATE_MAX:
                raise InvalidInput(f"{key} {value} Mbps is outside 0-{RATE_MAX}")
        if (self.min_tx_rate is not None and self.max_tx_rate is not None
                and self.max_tx_rate != 0 and self.min_tx_rate > self.max_tx_rate):
            raise InvalidInput(f"min TX rate {self.min_tx_rate} Mbps is above max TX rate "
                               f"{self.max_tx_rate} Mbps")
        if self.mtu is not None and not MTU_MIN <= self.mtu <= MTU_MAX:
            raise InvalidInput(f"MTU {self.mtu} is outside {MTU_MIN}-{MTU_MAX}")
        if self.link_state is not None:
            return replace(self, link_state=validate_link_state(self.link_state))
        return self

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("vlan", "qos", "trust", "spoofchk",
                                                    "min_tx_rate", "max_tx_rate", "mtu",
                                                    "link_state")}

    def vf_fields(self) -> set[str]:
        """The netlink VF fields these defaults set (MTU is a netdev setting, not a VF one)."""
        fields = {key for key, value in self.as_dict().items() if value is not None}
        if "qos" in fields:
            fields.discard("qos")
            fields.add("vlan")
        fields.discard("mtu")
        return fields


@dataclass(frozen=True)
class PoolSpec:
    name: str
    pfs: tuple[PfRef, ...]
    vfs: int
    method: Method = Method.AUTO
    mode: Mode = Mode.VFIO
    defaults: VfDefaults = field(default_factory=VfDefaults)
    autostart: bool = False
    # Chosen at each start on this host instead of fixed PFs (``pfs`` is then empty).
    selectors: tuple[PfSelector, ...] = ()

    def validate(self) -> PoolSpec:
        """Checks that need no host: name, counts, enums, defaults, duplicate PFs."""
        validate_name(self.name)
        if self.pfs and self.selectors:
            raise InvalidInput("give --pf or --select, not both: a pool has fixed PFs or "
                               "chooses them at start")
        if not self.pfs and not self.selectors:
            raise InvalidInput("a pool needs at least one --pf (or --select)")
        if not 1 <= self.vfs <= VFS_MAX:
            raise InvalidInput(f"--vfs must be 1-{VFS_MAX}, not {self.vfs}")
        return replace(self, method=choice(Method, self.method, "method"),
                       mode=choice(Mode, self.mode, "mode"), defaults=self.defaults.validate())

    def with_pfs(self, pfs: tuple[PfRef, ...]) -> PoolSpec:
        return replace(self, pfs=pfs)


def claimed_range(ref_range: VfRange | None, totalvfs: int) -> VfRange:
    """The VF indices a membership claims: its range, or the whole PF."""
    return ref_range if ref_range is not None else VfRange(0, max(totalvfs - 1, 0))


def used_indices(ref_range: VfRange | None, vfs: int) -> range:
    """The VF indices a pool of ``vfs`` VFs per PF uses: the first ``vfs`` of its range."""
    start = ref_range.start if ref_range is not None else 0
    return range(start, start + vfs)


def check_member(spec: PoolSpec, ref: PfRef, pf: PfSnapshot, info: DriverInfo,
                 method: Method) -> None:
    """Host-dependent checks of one PF of a definition; raises InvalidInput (exit 2)."""
    if spec.vfs > pf.totalvfs:
        raise InvalidInput(f"PF {pf.label} supports at most {pf.totalvfs} VFs; {spec.vfs} "
                           "requested")
    if ref.range is not None:
        if ref.range.end >= pf.totalvfs:
            raise InvalidInput(f"VF range {ref.range} of PF {pf.label} goes past its "
                               f"{pf.totalvfs} VFs (0-{pf.totalvfs - 1})")
        if spec.vfs > ref.range.size:
            raise InvalidInput(f"--vfs {spec.vfs} does not fit VF range {ref.range} of PF "
                               f"{pf.label}, which holds {ref.range.size} VFs")
    if info.vf_limit is not None and max(used_indices(ref.range, spec.vfs)) >= info.vf_limit:
        raise InvalidInput(f"driver {info.name} allows at most {info.vf_limit} VFs per PF; "
                           f"PF {pf.label} would need {max(used_indices(ref.range, spec.vfs)) + 1}")
    if method == "sysfs" and not info.sysfs_resize:
        raise InvalidInput(f"driver {info.name} cannot resize through sysfs; use --method "
                           "module-param")
    if method == "module-param" and not info.module_resize:
        raise InvalidInput(f"driver {info.name} has no module parameter for VFs; use --method "
                           "sysfs")
    if spec.mode != "vfio" and info.vf_driver is None:
        raise InvalidInput(f"driver {info.name} has no VF net driver vfpool knows, so it cannot "
                           f"do --mode {spec.mode}; use --mode vfio")
    unsupported = sorted(spec.defaults.vf_fields() & info.unsupported_vf_fields)
    if unsupported:
        raise InvalidInput(f"driver {info.name} cannot set {', '.join(unsupported)} on its VFs "
                           f"(PF {pf.label})")


def resolve_method(method: Method, info: DriverInfo) -> Method:
    """``auto``: sysfs where the driver supports it, the module parameter otherwise."""
    if method == Method.AUTO:
        return Method.SYSFS if info.sysfs_resize else Method.MODULE_PARAM
    return Method(method)


# -- TOML: what `pool dumpconfig` prints and `pool define --file` reads

def to_toml(spec: PoolSpec) -> str:
    document: dict[str, Any] = {
        "name": spec.name,
        "vfs": spec.vfs,
        "method": spec.method,
        "mode": spec.mode,
        "autostart": spec.autostart,
    }
    if spec.selectors:
        document["select"] = [str(selector) for selector in spec.selectors]
    else:
        document["pf"] = [{"pci": ref.pf, **({"range": str(ref.range)} if ref.range else {})}
                          for ref in spec.pfs]
    defaults = {key: value for key, value in spec.defaults.as_dict().items()
                if value is not None}
    if defaults:
        document["defaults"] = defaults
    return "# vfpool pool definition; `vfpool pool define --file` reads it back\n" + \
        tomli_w.dumps(document)


_TOP_KEYS = {"name", "vfs", "method", "mode", "autostart", "pf", "select", "defaults"}
_PF_KEYS = {"pci", "range"}


def from_toml(text: str, source: str) -> PoolSpec:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source} is not valid TOML: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{source} is nested too deeply to be a pool definition") from None
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise InvalidInput(f"{source}: unknown key {unknown[0]!r}")
    try:
        pfs = []
        for entry in document.get("pf", []):
            extra = sorted(set(entry) - _PF_KEYS)
            if extra:
                raise InvalidInput(f"{source}: unknown key {extra[0]!r} in [[pf]]")
            pci = _typed(entry, "pci", str, source)
            range_text = entry.get("range")
            context = f"{pci}#{range_text}"
            pfs.append(PfRef(pci, VfRange.parse(_typed(entry, "range", str, source), context)
                             if range_text is not None else None))
        raw_select = document.get("select", [])
        if not isinstance(raw_select, list) or not all(isinstance(item, str)
                                                       for item in raw_select):
            raise InvalidInput(f"{source}: 'select' must be a list of strings such as "
                               '["vendor=8086,device=1572"]')
        raw_defaults = document.get("defaults", {})
        if not isinstance(raw_defaults, dict):
            raise InvalidInput(f"{source}: [defaults] must be a table")
        for key in raw_defaults:
            if key not in _DEFAULT_TYPES:
                raise InvalidInput(f"{source}: unknown key {key!r} in [defaults]")
            _typed(raw_defaults, key, _DEFAULT_TYPES[key], source)
        defaults = VfDefaults(**raw_defaults)
        spec = PoolSpec(
            name=_typed(document, "name", str, source),
            pfs=tuple(pfs),
            vfs=_typed(document, "vfs", int, source),
            method=_optional(document, "method", str, "auto", source),
            mode=_optional(document, "mode", str, "vfio", source),
            defaults=defaults,
            autostart=_optional(document, "autostart", bool, False, source),
            selectors=tuple(PfSelector.parse(item) for item in raw_select),
        )
    except TypeError as exc:
        raise InvalidInput(f"{source}: {exc}") from None
    return spec.validate()


_DEFAULT_TYPES: dict[str, type] = {"vlan": int, "qos": int, "trust": bool, "spoofchk": bool,
                                    "min_tx_rate": int, "max_tx_rate": int, "mtu": int,
                                    "link_state": str}


def _optional(table: dict[str, Any], key: str, kind: type, default: Any, source: str) -> Any:
    return _typed(table, key, kind, source) if key in table else default


_KIND_NAMES = {int: "an integer", str: "a string", bool: "true or false", list: "a list",
               dict: "a table", float: "a number"}


def _typed(table: dict[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in table:
        raise InvalidInput(f"{source}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"{source}: {key!r} must be {_KIND_NAMES.get(kind, kind.__name__)}")
    return value
