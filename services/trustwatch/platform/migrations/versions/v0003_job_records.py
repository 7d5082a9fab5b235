"""job_records: each job's dataset record stored once, instead of a copy in every judgment and in every
planned pair of the job (judgments.record_json and plan_pairs.record_json go).

The upgrade moves the records: a job's record is its plan's where the run has a plan (the scheduler's
own copy), else its first judgment's. The downgrade puts a copy back into every row ("" where the job
has none). On SQLite the two tables are copied to drop a column (Alembic's batch mode).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

#: Fill job_records from a table's record_json: one row per job not stored yet (the smallest text
#: where a job's rows disagree, so the choice is deterministic).
_MOVE = (
    "INSERT INTO job_records (job_id, run_id, record_json) "
    "SELECT job_id, MIN(run_id), MIN(record_json) FROM {table} "
    "WHERE record_json <> '' AND job_id NOT IN (SELECT job_id FROM job_records) "
    "GROUP BY job_id"
)
#: Copy each row's job record back into a table's record_json (downgrade).
_COPY_BACK = (
    "UPDATE {table} SET record_json = COALESCE("
    "(SELECT r.record_json FROM job_records r WHERE r.job_id = {table}.job_id), '')"
)


def upgrade() -> None:
    op.create_table(
        "job_records",
        sa.Column("job_id", sa.String(500), primary_key=True),
        sa.Column("run_id", sa.String(300), nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
    )
    op.create_index("ix_job_records_run", "job_records", ["run_id"])
    for table in ("plan_pairs", "judgments"):  # the plan's record first: it is the scheduler's
        op.execute(sa.text(_MOVE.format(table=table)))
        with op.batch_alter_table(table) as batch:
            batch.drop_column("record_json")


def downgrade() -> None:
    for table in ("plan_pairs", "judgments"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("record_json", sa.Text, nullable=False, server_default=""))
        op.execute(sa.text(_COPY_BACK.format(table=table)))
        with op.batch_alter_table(table) as batch:  # as revision 0002 had it: no default
            batch.alter_column("record_json", server_default=None)
    op.drop_index("ix_job_records_run", table_name="job_records")
    op.drop_table("job_records")
