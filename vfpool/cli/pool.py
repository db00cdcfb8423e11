"""`vfpool pool`: the pool lifecycle (libvirt's net-define/start/destroy/undefine/autostart)."""

from __future__ import annotations

from pathlib import Path

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.progress import progress
from vfpool.cli.render import cell, emit, emit_json, note, table
from vfpool.cli.render import fields as render_fields
from vfpool.errors import InvalidInput
from vfpool.model.pool import VfDefaults, validate_link_state
from vfpool.service import pools as pool_service
from vfpool.service.results import PoolChanged, PoolDestroyed, PoolInfo

app = VfpoolTyper(help="Network pools of VFs.")

JSON = typer.Option(False, "--json", help="Print JSON.")
TIMEOUT = typer.Option(pool_service.DEFAULT_TIMEOUT, "--timeout", min=0.0, max=86400.0,
                       metavar="SECONDS",
                       help="How long to wait for VFs and their netdevs to appear.")
DISRUPT = typer.Option(False, "--allow-disruption",
                       help="Reload a driver module even if it takes down interfaces that "
                            "are up or VFs that are leased.")


DEFINITION_MAX = 1 << 20  # a pool definition is a few hundred bytes; refuse anything huge


def read_definition(file: Path) -> str:
    """A TOML pool definition's text: UTF-8, at most 1 MiB."""
    try:
        with open(file, "rb") as handle:
            raw = handle.read(DEFINITION_MAX + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    if len(raw) > DEFINITION_MAX:
        raise InvalidInput(f"{file} is larger than {DEFINITION_MAX} bytes; a pool definition "
                           "is a few lines of TOML")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file} is not UTF-8 text (byte {exc.start}); TOML must be "
                           "UTF-8") from None


def _note_lost(record: PoolInfo) -> None:
    """Say which leases a disruptive change cost: their VFs were reset under them."""
    lost = record.lost if isinstance(record, PoolChanged | PoolDestroyed) else ()
    if lost:
        note(f"note: lease(s) {', '.join(map(str, lost))} lost: --allow-disruption reset "
             "their VFs")


def _state(record: PoolInfo) -> str:
    return record.state + (" (needs start)" if record.needs_start else "")


def _pool_lines(record: PoolInfo) -> str:
    defaults = ", ".join(f"{key}={cell(value)}" for key, value in record.defaults.as_dict().items()
                         if value is not None) or "-"
    vfs = record.vfs
    fields = [("name", record.name), ("state", _state(record)), ("autostart", record.autostart),
              ("method", record.method), ("mode", record.mode),
              ("vfs per PF", record.vfs_per_pf),
              ("vfs", f"{vfs.total} total, {vfs.free} free, {vfs.leased} leased, "
                      f"{vfs.reserved} reserved, {vfs.unusable} unusable"),
              ("defaults", defaults),
              *([("select", "; ".join(map(str, record.select)))] if record.select else [])]
    lines = [render_fields(fields)]
    lines += ["", table(["PF", "NETDEV", "DRIVER", "METHOD", "RANGE", "NUMVFS", "TOTALVFS"],
                        [[pf.pci, pf.netdev, pf.driver, pf.method, pf.range, pf.numvfs,
                          pf.totalvfs] for pf in record.pfs])]
    return "\n".join(lines)


@app.command("define")
def define(
    cli: typer.Context,
    name: str | None = typer.Argument(None, metavar="NAME",
                                      help="Pool name (overrides the name in --file)."),
    pfs: list[str] = typer.Option([], "--pf", metavar="PF[#START-END]",
                                  help="A PF by PCI address or netdev, with an optional VF "
                                       "index range; repeat for more."),
    select: list[str] = typer.Option(
        [], "--select", metavar="vendor=V,device=D[,driver=NAME][,pf=GLOB]",
        help="Instead of --pf: take, at each start, every PF of the host that matches (PCI "
             "vendor and device ids in hex, the PF's driver, a pattern on its netdev name) "
             "and no other pool uses; repeat for more."),
    vfs: int | None = typer.Option(None, "--vfs", metavar="N", help="VFs per PF."),
    method: str = typer.Option("auto", "--method", metavar="auto|sysfs|module-param"),
    mode: str = typer.Option("vfio", "--mode", metavar="vfio|macvtap|netdev"),
    vlan: int | None = typer.Option(None, "--vlan", metavar="ID"),
    qos: int | None = typer.Option(None, "--qos", metavar="N"),
    trust: bool | None = typer.Option(None, "--trust/--no-trust"),
    spoofchk: bool | None = typer.Option(None, "--spoofchk/--no-spoofchk"),
    min_tx_rate: int | None = typer.Option(None, "--min-tx-rate", metavar="MBPS"),
    max_tx_rate: int | None = typer.Option(None, "--max-tx-rate", metavar="MBPS"),
    mtu: int | None = typer.Option(None, "--mtu", metavar="N"),
    link_state: str | None = typer.Option(None, "--link-state", metavar="auto|enable|disable",
                                          help="Each leased VF's link state (default: auto, "
                                               "where the driver can set it)."),
    file: Path | None = typer.Option(None, "--file", metavar="POOL.toml",
                                     help="Read the definition from TOML (see dumpconfig)."),
    as_json: bool = JSON,
) -> None:
    """Define a pool: validate it against the host and store it, inactive.

    \b
    Example:
      vfpool pool define tenant-a --pf enp133s0f0 --pf enp133s0f1#0-7 --vfs 8 --vlan 100
      vfpool pool define tenant-b --select vendor=8086,device=1572,pf=enp133* --vfs 8
    """
    with settings(cli).context() as ctx:
        if file is not None:
            if pfs or select or vfs is not None:
                raise InvalidInput("give either --file or --pf/--select/--vfs, not both")
            text = read_definition(file)
            spec = pool_service.from_toml(text, str(file))
            if name is not None:
                spec = pool_service.replace_name(spec, name)
            record = pool_service.define(ctx, spec)
        else:
            if name is None:
                raise InvalidInput("missing pool NAME (or give --file)")
            if vfs is None:
                raise InvalidInput("missing --vfs N: how many VFs per PF")
            defaults = VfDefaults(vlan=vlan, qos=qos, trust=trust, spoofchk=spoofchk,
                                  min_tx_rate=min_tx_rate, max_tx_rate=max_tx_rate, mtu=mtu,
                                  link_state=None if link_state is None
                                  else validate_link_state(link_state))
            spec = pool_service.parse_spec(name, pfs, vfs, method, mode, defaults, select)
            record = pool_service.define(ctx, spec)
    if as_json:
        emit_json(record.document())
    else:
        emit(f"defined pool {record.name} (inactive); start it with `vfpool pool start "
             f"{record.name}`")


@app.command("dumpconfig")
def dumpconfig(cli: typer.Context, name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Print a pool's definition as TOML that `pool define --file` reads back.

    \b
    Example:
      vfpool pool dumpconfig tenant-a > tenant-a.toml
    """
    with settings(cli).reader() as ctx:
        emit(pool_service.dumpconfig(ctx, name).rstrip("\n"))


@app.command("start")
def start(
    cli: typer.Context,
    name: str | None = typer.Argument(None, metavar="NAME"),
    autostarted: bool = typer.Option(False, "--autostarted",
                                     help="Start every pool marked autostart (at boot)."),
    allow_disruption: bool = DISRUPT,
    timeout: float = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Start a pool: size its PFs, verify, inventory its VFs, mark it active.

    \b
    Example:
      vfpool pool start tenant-a
    """
    if autostarted == (name is not None):
        raise InvalidInput("give a pool NAME or --autostarted")
    with settings(cli).context() as ctx:
        if autostarted:
            with progress("start autostart pools") as shown:
                results = pool_service.start_autostarted(
                    ctx, allow_disruption=allow_disruption, timeout=timeout, progress=shown)
            if as_json:
                emit_json([result.document() for result in results])
            else:
                lines = [f"{r.name}: {r.result}" + (f": {r.error}" if r.error else "")
                         for r in results]
                emit("\n".join(lines) if lines else "no autostart pools")
            failed = [r for r in results if r.error]
            for result in failed:
                note(f"error: pool {result.name}: {result.error}")
            if failed:
                raise typer.Exit(max(r.exit_code or 1 for r in failed))
            return
        assert name is not None
        with progress(f"start pool {name}") as shown:
            record = pool_service.start(ctx, name, allow_disruption=allow_disruption,
                                        timeout=timeout, progress=shown)
    _note_lost(record)
    if as_json:
        emit_json(record.document())
    elif record.already_active:
        emit(f"pool {name} is already active; nothing to do")
    else:
        emit(f"started pool {name}: {record.vfs.total} VFs, {record.vfs.free} free")


@app.command("destroy")
def destroy(
    cli: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    force: bool = typer.Option(False, "--force", help="Release the pool's leases first."),
    keep_vfs: bool = typer.Option(False, "--keep-vfs", help="Leave the VFs on the PFs."),
    allow_disruption: bool = DISRUPT,
    as_json: bool = JSON,
) -> None:
    """Deactivate a pool; its PFs go back to 0 VFs unless --keep-vfs.

    \b
    Example:
      vfpool pool destroy tenant-a --force
    """
    with settings(cli).context() as ctx, progress(f"destroy pool {name}") as shown:
        record = pool_service.destroy(ctx, name, force=force, keep_vfs=keep_vfs,
                                      allow_disruption=allow_disruption, progress=shown)
    _note_lost(record)
    if as_json:
        emit_json(record.document())
    else:
        released = f", released {len(record.released)} lease(s)" if record.released else ""
        emit(f"destroyed pool {name}{released}")


@app.command("undefine")
def undefine(cli: typer.Context, name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Forget an inactive pool.

    \b
    Example:
      vfpool pool undefine tenant-a
    """
    with settings(cli).context() as ctx:
        pool_service.undefine(ctx, name)
    emit(f"undefined pool {name}")


@app.command("autostart")
def autostart(
    cli: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    disable: bool = typer.Option(False, "--disable", help="Do not start it at boot."),
    as_json: bool = JSON,
) -> None:
    """Mark a pool to be started at boot (by vfpool-autostart.service).

    \b
    Example:
      vfpool pool autostart tenant-a
    """
    with settings(cli).context() as ctx:
        record = pool_service.set_autostart(ctx, name, not disable)
    if as_json:
        emit_json(record.document())
    else:
        emit(f"pool {name} {'will not' if disable else 'will'} be started at boot")


@app.command("resize")
def resize(
    cli: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    vfs: int = typer.Option(..., "--vfs", metavar="N", help="The new number of VFs per PF."),
    allow_disruption: bool = DISRUPT,
    timeout: float = TIMEOUT,
    as_json: bool = JSON,
) -> None:
    """Change a pool's VFs per PF; an active pool is resized on the host at once.

    \b
    Example:
      vfpool pool resize tenant-a --vfs 16
    """
    with settings(cli).context() as ctx, progress(f"resize pool {name}") as shown:
        record = pool_service.resize(ctx, name, vfs, allow_disruption=allow_disruption,
                                     timeout=timeout, progress=shown)
    _note_lost(record)
    if as_json:
        emit_json(record.document())
    else:
        emit(f"pool {name} now has {vfs} VFs per PF")


@app.command("list")
def list_(
    cli: typer.Context,
    include_inactive: bool = typer.Option(False, "--all", help="Include inactive pools."),
    as_json: bool = JSON,
) -> None:
    """List active pools (all pools with --all).

    \b
    Example:
      vfpool pool list --all
    """
    with settings(cli).reader() as ctx:
        records = pool_service.list_pools(ctx, include_inactive=include_inactive)
    if as_json:
        emit_json([record.document() for record in records])
        return
    if not records:
        note("no pools are defined; define one with `vfpool pool define NAME --pf PF "
             "--vfs N`" if include_inactive else "no active pools; `vfpool pool list --all` "
             "shows defined ones, `vfpool pool start NAME` starts one")
    emit(table(["NAME", "STATE", "AUTOSTART", "METHOD", "MODE", "PFS", "FREE/TOTAL"],
               [[r.name, _state(r), r.autostart, r.method, r.mode,
                 ",".join(pf.netdev or pf.pci for pf in r.pfs), f"{r.vfs.free}/{r.vfs.total}"]
                for r in records]))


@app.command("show")
def show(
    cli: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    as_json: bool = JSON,
) -> None:
    """Show a pool: state, PFs, VF counts and VF defaults (`pool info` is an alias).

    \b
    Example:
      vfpool pool show tenant-a --json
    """
    with settings(cli).reader() as ctx:
        record = pool_service.info(ctx, name)
    if as_json:
        emit_json(record.document())
    else:
        emit(_pool_lines(record))


# The verb for one object is `show` everywhere; `pool info`, its first name, stays.
app.command("info", hidden=True)(show)
