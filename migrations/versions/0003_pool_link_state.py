"""Pools may set each leased VF's link state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A VF left `disable` by an administrator was handed out disabled; a pool (and a lease) now says
what the VF's link state should be while it is leased: auto, enable or disable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("link_state", sa.String(8), nullable=True))
        batch.create_check_constraint(
            "link_state", "link_state IS NULL OR link_state IN ('auto', 'enable', 'disable')")


def downgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.drop_constraint(op.f("ck_pools_link_state"), type_="check")
        batch.drop_column("link_state")
