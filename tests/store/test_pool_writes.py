"""A pool change's bulk insert of VF rows (store/pool_writes.py ``add_free_vfs``): on SQLite
one statement takes a PF's rows as a JSON array; elsewhere, and on an older SQLite, one
execution per row. Both must write the same rows, whatever text the rows carry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from tests.store.test_free_counts import PF, PF_PCI, assert_exact
from vfpool.model.pool import VfDefaults
from vfpool.service import pools
from vfpool.service.context import Context
from vfpool.sim.host import SimHost
from vfpool.store import direct, pool_writes
from vfpool.store.pool_writes import PoolWrites
from vfpool.store.states import VfState
from vfpool.store.tables import vfs

VfFacts = set[tuple[str, int, str, str | None, str, str | None]]


def stored_vfs(ctx: Context) -> VfFacts:
    """Every VF row, without its id and time: (PF, index, address, netdev, state, reason)."""
    with ctx.store.session() as session:
        rows = session.execute(select(vfs.c.pf_pci, vfs.c.index, vfs.c.pci, vfs.c.netdev,
                                      vfs.c.state, vfs.c.reason))
        return {(pf, index, pci, netdev, str(state), reason)
                for pf, index, pci, netdev, state, reason in rows}


def start_netdev_pool(ctx: Context) -> None:
    pools.define(ctx, pools.parse_spec("tenant", [PF, "enp133s0f0"], 6, "auto", "netdev",
                                       VfDefaults()))
    pools.start(ctx, "tenant")


def test_sqlite_takes_the_rows_as_one_json_array_and_writes_what_one_per_row_writes(
        make_sim: Callable[..., SimHost], make_ctx: Callable[..., Context],
        monkeypatch: pytest.MonkeyPatch) -> None:
    as_json = make_ctx(make_sim())
    assert pool_writes.json_rows(as_json.store.engine.dialect)
    statements: list[str] = []
    run = direct.Transaction._execute

    def traced(self: direct.Transaction, compiled: direct.Compiled, params: object) -> object:
        statements.append(compiled.sql)
        return run(self, compiled, params)  # type: ignore[arg-type]

    monkeypatch.setattr(direct.Transaction, "_execute", traced)
    start_netdev_pool(as_json)
    assert sum("json_each" in sql for sql in statements) == 2  # one per PF

    monkeypatch.setattr(pool_writes, "json_rows", lambda dialect: False)
    statements.clear()
    per_row = make_ctx(make_sim())
    start_netdev_pool(per_row)
    assert not any("json_each" in sql for sql in statements)

    written = stored_vfs(as_json)
    assert len(written) == 12
    assert all(netdev for _, _, _, netdev, _, _ in written)  # netdev mode: every VF has one
    assert {state for *_, state, _ in written} == {"free"}
    assert written == stored_vfs(per_row)
    assert assert_exact(as_json) == assert_exact(per_row) == {
        ("tenant", PF_PCI): 6, ("tenant", "0000:85:00.0"): 6}


HOSTILE = {100: 'quote"d', 101: "back\\slash", 102: "épée-ü", 103: "[1, 2]", 104: "it's",
           105: None}  # index -> netdev
# Each way rows can go, each tried on its own PF: JSON array, one execution per row.
WAYS = {"0000:05:00.0": True, "0000:85:00.0": False}


def address_of(pf: str, index: int) -> str:
    """An address on the PF's bus that none of its VFs has."""
    return f"0000:{pf[5:7]}:1f.{index - 100}"


def pool_on(ctx: Context, pf: str) -> str:
    """A started 4-VF pool on ``pf``; its name."""
    name = f"pool-{pf[5:7]}"
    pools.define(ctx, pools.parse_spec(name, [pf], 4, "auto", "vfio", VfDefaults()))
    pools.start(ctx, name)
    return name


def add_rows(ctx: Context, pf: str, netdevs: dict[int, str | None], *, as_json: bool,
             monkeypatch: pytest.MonkeyPatch) -> VfFacts:
    """Add free VF rows on ``pf`` (index -> netdev, at ``address_of``) one way; the rows the
    add wrote."""
    pool = pool_on(ctx, pf)
    before = stored_vfs(ctx)

    def add(transaction: direct.Transaction, host_id: int | None) -> None:
        rows = PoolWrites(transaction, host_id)
        rows.add_free_vfs(rows.pool(pool).host_id, pf, [
            (index, address_of(pf, index), netdev) for index, netdev in netdevs.items()])

    with monkeypatch.context() as patch:
        if not as_json:
            patch.setattr(pool_writes, "json_rows", lambda dialect: False)
        ctx.store.write_rows(add, operation="adding VF rows")
    return stored_vfs(ctx) - before


def test_every_text_a_row_carries_comes_back_as_it_went_in(
        migrated_store_url: str, make_sim: Callable[..., SimHost],
        make_ctx: Callable[..., Context], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each way this backend has: SQLite both, PostgreSQL one execution per row."""
    ctx = make_ctx(make_sim(), db=migrated_store_url)
    json_here = pool_writes.json_rows(ctx.store.engine.dialect)
    for pf, as_json in WAYS.items():
        if as_json and not json_here:
            continue
        added = add_rows(ctx, pf, HOSTILE, as_json=as_json, monkeypatch=monkeypatch)
        assert added == {(pf, index, address_of(pf, index), netdev, VfState.FREE.value, None)
                         for index, netdev in HOSTILE.items()}, f"as_json={as_json}"
        # Indices 100-105 are outside the pool's range: its free count stays its own.
        assert assert_exact(ctx)[(f"pool-{pf[5:7]}", pf)] == 4


def test_a_name_that_is_not_utf8_is_refused_either_way_and_nothing_is_written(
        make_sim: Callable[..., SimHost], make_ctx: Callable[..., Context],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux lets a netdev be named with bytes that are not UTF-8; Python lists them with
    surrogate escapes, which no database text can hold. The store refuses such a row before
    it reaches the database, the same way whichever way the rows go."""
    ctx = make_ctx(make_sim())
    not_utf8 = b"bad\xff".decode("utf-8", "surrogateescape")
    for pf, as_json in WAYS.items():
        before = stored_vfs(ctx)
        with pytest.raises(UnicodeEncodeError):
            add_rows(ctx, pf, {100: "fine", 101: not_utf8}, as_json=as_json,
                     monkeypatch=monkeypatch)
        # The pool's own four VFs, and neither row of the refused add.
        written = stored_vfs(ctx) - before
        assert sorted((row_pf, index) for row_pf, index, *_ in written) == [
            (pf, index) for index in range(4)], f"as_json={as_json}"
