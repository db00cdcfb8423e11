"""Pools may choose their PFs by selector at start.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

`pool define NAME --select vendor=8086,device=1572[,driver=i40e][,pf=enp*]` stores selectors
instead of PCI addresses, so that one TOML file defines the same pool on hosts whose NICs sit
at other addresses; the PFs are chosen at each start.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("selectors", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("selectors")
