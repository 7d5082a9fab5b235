"""runs.pruned_unix_ms: when the run's raw replies were cleared by retention (``trustwatch db prune``,
TRUSTWATCH_RETENTION_DAYS); NULL while they are kept.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pruned_unix_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pruned_unix_ms")
