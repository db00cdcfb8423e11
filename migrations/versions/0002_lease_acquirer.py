"""Leases record the lock of the process that acquires them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A reserved lease is abandoned exactly when the flock its acquirer took before reserving can
be taken by someone else; reconcile needs the lock's name to check that.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("acquirer", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("acquirer")
