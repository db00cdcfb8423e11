"""`vfpool db`: the store's schema version."""

from __future__ import annotations

import typer

from vfpool.cli.core import VfpoolTyper, settings
from vfpool.cli.render import emit, emit_json
from vfpool.store import open_store

app = VfpoolTyper(help="The vfpool database.")


@app.command("upgrade")
def upgrade(
    cli: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply all migrations (also done automatically whenever the store is opened).

    \b
    Example:
      vfpool --db sqlite:////tmp/v.db db upgrade
    """
    with settings(cli).context() as ctx, open_store(ctx.db_url, migrate=False) as store:
        before = store.current_revision()
        store.upgrade()
        after = store.current_revision()
    if as_json:
        emit_json({"url": ctx.db_url, "from": before, "to": after})
    else:
        emit(f"{ctx.db_url}: {before or 'empty'} -> {after}" if before != after
             else f"{ctx.db_url}: already at {after}")


@app.command("current")
def current(
    cli: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the schema revision of the database and the newest one this vfpool knows.

    \b
    Example:
      vfpool db current --json
    """
    with settings(cli).context() as ctx, open_store(ctx.db_url, migrate=False) as store:
        revision, head = store.current_revision(), store.head_revision()
    if as_json:
        emit_json({"url": ctx.db_url, "current": revision, "head": head,
                   "up_to_date": revision == head})
    else:
        emit(f"{revision or 'empty'} (head {head})")
