"""Pool lifecycle tests (issue 3): define, start, destroy, undefine, autostart, resize.

Helpers shared by the modules of this package. They read the store and the simulated host
directly, so a test can check that the two agree after each step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from vfpool.host.sysfs import Sysfs
from vfpool.model.pci import PciAddress
from vfpool.model.pool import PoolSpec, VfDefaults
from vfpool.model.snapshot import PfSnapshot
from vfpool.service import pools
from vfpool.service.context import Context
from vfpool.sim.host import SimHost
from vfpool.store import Event, Pool, Vf

# The default simulated host (tests/conftest.py): a dual-port 82599 and a dual-port X710.
IXGBE0, IXGBE1 = "0000:05:00.0", "0000:05:00.1"
I40E0, I40E1 = "0000:85:00.0", "0000:85:00.1"

# Every pool key that DESIGN.md's JSON table promises.
POOL_KEYS = {"name", "state", "autostart", "method", "mode", "pfs", "vfs", "defaults"}
PF_KEYS = {"pci", "netdev", "driver", "numvfs", "totalvfs", "range"}
VFS_KEYS = {"total", "free", "leased", "reserved", "unusable"}
DEFAULTS_KEYS = {"vlan", "qos", "trust", "spoofchk", "min_tx_rate", "max_tx_rate", "mtu",
                 "link_state"}


def spec(name: str, *pfs: str, vfs: int, method: str = "auto", mode: str = "vfio",
         **defaults: Any) -> PoolSpec:
    """A definition as `pool define NAME --pf PF... --vfs N` parses it."""
    return pools.parse_spec(name, list(pfs), vfs, method, mode, VfDefaults(**defaults))


def define(ctx: Context, name: str, *pfs: str, vfs: int, **options: Any) -> dict[str, Any]:
    return pools.define(ctx, spec(name, *pfs, vfs=vfs, **options))


def host_pf(sim: SimHost, pci: str) -> PfSnapshot:
    return Sysfs(sim).pf(PciAddress.parse(pci))


def numvfs(sim: SimHost, pci: str) -> int:
    return host_pf(sim, pci).numvfs


def host_vfs(sim: SimHost, pci: str) -> list[tuple[int, str]]:
    """(index, BDF) of every VF the host has on a PF."""
    return [(vf.index, str(vf.pci)) for vf in host_pf(sim, pci).vfs]


def vf_rows(ctx: Context, pf_pci: str | None = None) -> list[tuple[str, int, str, str | None,
                                                                  str]]:
    """The store's VF inventory: (pf, index, BDF, netdev, state), by PF and index."""
    with ctx.store.session() as session:
        query = select(Vf).order_by(Vf.pf_pci, Vf.vf_index)
        if pf_pci is not None:
            query = query.where(Vf.pf_pci == pf_pci)
        return [(row.pf_pci, row.vf_index, row.pci, row.netdev, row.state)
                for row in session.scalars(query)]


def vf_identity(ctx: Context) -> list[tuple[int, str, int, str]]:
    """(row id, PF, index, BDF) of every VF row: what must survive a reboot unchanged."""
    with ctx.store.session() as session:
        return [(row.id, row.pf_pci, row.vf_index, row.pci)
                for row in session.scalars(select(Vf).order_by(Vf.id))]


def events(ctx: Context, pool: str | None = None) -> list[Event]:
    with ctx.store.session() as session:
        query = select(Event).order_by(Event.id)
        if pool is not None:
            query = query.where(Event.pool == pool)
        return list(session.scalars(query))


def actions(ctx: Context, pool: str | None = None) -> list[str]:
    return [event.action for event in events(ctx, pool)]


def pool_state(ctx: Context, name: str) -> str | None:
    with ctx.store.session() as session:
        return session.scalars(select(Pool.state).where(Pool.name == name)).one_or_none()


def modprobe_conf(sim: SimHost, module: str) -> Path:
    return sim.root / "etc/modprobe.d" / f"vfpool-{module}.conf"


def conf_text(module: str, options: str) -> str:
    """The exact file `pool start` writes for a module-param pool."""
    return (f"# written by vfpool: VF count for every port the {module} driver serves\n"
            f"options {module} {options}\n")


def pending_faults(sim: SimHost) -> list[dict[str, Any]]:
    return list(sim.state()["faults"])


def numvfs_path(pci: str) -> str:
    """The sysfs path, relative to the sim root, that a numvfs fault targets."""
    return f"sys/bus/pci/devices/{pci}/sriov_numvfs"
