"""Each pool membership counts its free VFs, kept exact by the database's own triggers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

`fleet place` ranks every host's pool by its free VFs. Counting them from ``vfs`` reads every
free VF row of the fleet (256k rows at 1,000 hosts, about 400 ms on PostgreSQL), so each
``pool_pfs`` row now carries ``free_vfs``: the number of ``free`` VF rows within the
membership, exactly as ``store.tables.member_covers`` defines it (same host and PF, an index
from ``coalesce(range_start, 0)``, fewer than the pool's ``vfs_per_pf``).

Triggers keep it exact whatever writes the rows (an ORM flush, a bulk UPDATE, a cascade, a
COPY), in the same transaction as the write:
- a VF row inserted, deleted, or changing between free and not free (or moving) moves the
  count of every membership that covers it by one;
- a membership inserted or given a new range, and a pool given a new ``vfs_per_pf``, recount
  their memberships from ``vfs``. On PostgreSQL the recount first share-locks the VF rows of
  the range, so a concurrent VF change either finished before the count (and is in it) or
  waits for this transaction (and then moves the new count).

Keep this in mind in later migrations: on SQLite, ``batch_alter_table`` copies a table to a
new one, which drops its triggers; a migration that copies ``vfs``, ``pool_pfs`` or ``pools``
must call ``create_triggers()`` again (tests/store/test_free_counts.py fails otherwise).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

# "The membership {m} covers the VF row {x}". SQLite refuses an alias for the table that a
# trigger's UPDATE changes, so there the membership is named ``pool_pfs`` itself.
_COVERS = ("{m}.host_id = {x}.host_id AND {m}.pf_pci = {x}.pf_pci "
           'AND {x}."index" >= coalesce({m}.range_start, 0) '
           'AND {x}."index" < coalesce({m}.range_start, 0) + '
           "(SELECT p.vfs_per_pf FROM pools AS p WHERE p.id = {m}.pool_id)")


def _in_range(m: str) -> str:
    """The VF rows ``v`` that membership ``m`` covers."""
    return _COVERS.format(m=m, x="v")


def _count(m: str) -> str:
    """The number of free VF rows that membership ``m`` covers."""
    return f"(SELECT count(*) FROM vfs AS v WHERE {_in_range(m)} AND v.state = 'free')"

_VF_MOVED = ("(OLD.state = 'free') <> (NEW.state = 'free') OR OLD.host_id <> NEW.host_id "
             'OR OLD.pf_pci <> NEW.pf_pci OR OLD."index" <> NEW."index"')


def _sqlite_triggers() -> list[str]:
    def step(x: str, sign: str) -> str:
        return (f"UPDATE pool_pfs SET free_vfs = free_vfs {sign} 1 "
                f"WHERE {x}.state = 'free' AND {_COVERS.format(m='pool_pfs', x=x)};")

    def recount(where: str) -> str:
        return f"UPDATE pool_pfs SET free_vfs = {_count('pool_pfs')} WHERE {where};"

    return [
        f"CREATE TRIGGER vfs_free_insert AFTER INSERT ON vfs BEGIN {step('NEW', '+')} END",
        f"CREATE TRIGGER vfs_free_delete AFTER DELETE ON vfs BEGIN {step('OLD', '-')} END",
        'CREATE TRIGGER vfs_free_update AFTER UPDATE OF state, host_id, pf_pci, "index" '
        f"ON vfs WHEN {_VF_MOVED} BEGIN {step('OLD', '-')} {step('NEW', '+')} END",
        "CREATE TRIGGER pool_pfs_free_insert AFTER INSERT ON pool_pfs BEGIN "
        f"{recount('pool_id = NEW.pool_id AND pf_pci = NEW.pf_pci')} END",
        "CREATE TRIGGER pool_pfs_free_range AFTER UPDATE OF host_id, pf_pci, range_start, "
        "range_end ON pool_pfs BEGIN "
        f"{recount('pool_id = NEW.pool_id AND pf_pci = NEW.pf_pci')} END",
        "CREATE TRIGGER pools_free_size AFTER UPDATE OF vfs_per_pf ON pools BEGIN "
        f"{recount('pool_id = NEW.id')} END",
    ]


def _postgresql_triggers() -> list[str]:
    def step(x: str, sign: str) -> str:
        return (f"UPDATE pool_pfs AS m SET free_vfs = m.free_vfs {sign} 1 "
                f"WHERE {_COVERS.format(m='m', x=x)};")

    def recount(where: str) -> str:
        # Share-lock the range's VF rows first: a VF change still in flight then commits
        # before the count, which (a new statement, so a new snapshot) sees it.
        return (f"PERFORM 1 FROM vfs AS v, pool_pfs AS m WHERE {where} AND {_in_range('m')} "
                f"FOR SHARE OF v; UPDATE pool_pfs AS m SET free_vfs = {_count('m')} "
                f"WHERE {where};")

    return [
        "CREATE FUNCTION vfpool_vfs_free() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' AND OLD.state = 'free' THEN {step('OLD', '-')} END IF; "
        f"IF TG_OP <> 'DELETE' AND NEW.state = 'free' THEN {step('NEW', '+')} END IF; "
        "RETURN NULL; END $$",
        "CREATE FUNCTION vfpool_member_free() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_TABLE_NAME = 'pools' THEN {recount('m.pool_id = NEW.id')} "
        f"ELSE {recount('m.pool_id = NEW.pool_id AND m.pf_pci = NEW.pf_pci')} END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER vfs_free_insert_delete AFTER INSERT OR DELETE ON vfs "
        "FOR EACH ROW EXECUTE FUNCTION vfpool_vfs_free()",
        'CREATE TRIGGER vfs_free_update AFTER UPDATE OF state, host_id, pf_pci, "index" '
        f"ON vfs FOR EACH ROW WHEN ({_VF_MOVED}) EXECUTE FUNCTION vfpool_vfs_free()",
        "CREATE TRIGGER pool_pfs_free AFTER INSERT OR UPDATE OF host_id, pf_pci, range_start, "
        "range_end ON pool_pfs FOR EACH ROW EXECUTE FUNCTION vfpool_member_free()",
        "CREATE TRIGGER pools_free_size AFTER UPDATE OF vfs_per_pf ON pools "
        "FOR EACH ROW EXECUTE FUNCTION vfpool_member_free()",
    ]


def create_triggers() -> None:
    """The triggers that keep ``pool_pfs.free_vfs`` exact, for this database's dialect."""
    postgresql = op.get_context().dialect.name == "postgresql"
    for statement in _postgresql_triggers() if postgresql else _sqlite_triggers():
        op.execute(statement)


def drop_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        for trigger, table in (("vfs_free_insert_delete", "vfs"), ("vfs_free_update", "vfs"),
                               ("pool_pfs_free", "pool_pfs"), ("pools_free_size", "pools")):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS vfpool_vfs_free()")
        op.execute("DROP FUNCTION IF EXISTS vfpool_member_free()")
        return
    for trigger in ("vfs_free_insert", "vfs_free_delete", "vfs_free_update",
                    "pool_pfs_free_insert", "pool_pfs_free_range", "pools_free_size"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")


def upgrade() -> None:
    with op.batch_alter_table("pool_pfs") as batch:
        batch.add_column(sa.Column("free_vfs", sa.Integer(), nullable=False,
                                   server_default=sa.text("0")))
    op.execute(f"UPDATE pool_pfs SET free_vfs = {_count('pool_pfs')}")
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    with op.batch_alter_table("pool_pfs") as batch:
        batch.drop_column("free_vfs")
