"""The schema as it stood when migrations began: runs, judgments, plan_pairs, dead_letters, baselines
and comparisons, with their indexes and constraints (and the columns added in place before:
judgments.error_kind and generation_error, runs.comparable_key).

A frozen copy: later changes go into later revisions, never here. :func:`baseline_metadata` is also
what :mod:`trustwatch.platform.migrate` brings a database made before migrations (by ``create_all``)
up to before it stamps it with this revision.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def baseline_metadata() -> sa.MetaData:
    """The tables of this revision, in a MetaData of their own."""
    meta = sa.MetaData()
    sa.Table(
        "runs",
        meta,
        sa.Column("run_id", sa.String(300), primary_key=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("manifest_json", sa.Text, nullable=False),
        sa.Column("expected_jobs", sa.Integer, nullable=False),
        sa.Column("expected_judgments", sa.Integer, nullable=False),
        sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
        sa.Column("completed_unix_ms", sa.BigInteger, nullable=True),
        sa.Column("comparable_key", sa.String(64), nullable=True),
        sa.Index("ix_runs_comparable_key", "comparable_key", "created_unix_ms"),
    )
    sa.Table(
        "judgments",
        meta,
        sa.Column("judgment_id", sa.String(600), primary_key=True),
        sa.Column("job_id", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(300), nullable=False),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(100), nullable=False),
        sa.Column("sample", sa.Integer, nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("evaluator", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("valid", sa.Boolean, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("detail_json", sa.Text, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
        sa.Column("error_kind", sa.Integer, nullable=True),
        sa.Column("generation_error", sa.Text, nullable=True),
        sa.Index("ix_judgments_run_task", "run_id", "task"),
    )
    sa.Table(
        "plan_pairs",
        meta,
        sa.Column("judgment_id", sa.String(600), primary_key=True),
        sa.Column("run_id", sa.String(300), nullable=False),
        sa.Column("job_id", sa.String(500), nullable=False),
        sa.Column("evaluator", sa.String(100), nullable=False),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(100), nullable=False),
        sa.Column("sample", sa.Integer, nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Index("ix_plan_pairs_run", "run_id"),
        sa.Index("ix_plan_pairs_job", "job_id"),
    )
    sa.Table(
        "dead_letters",
        meta,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("source_topic", sa.String(300), nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(300), nullable=True),
        sa.Column("job_id", sa.String(500), nullable=True),
        sa.Column("evaluator", sa.String(100), nullable=True),
        sa.Column("record_json", sa.Text, nullable=True),
        sa.Column("replayed_unix_ms", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("source_topic", "source_partition", "source_offset", name="uq_dead_letters_source"),
        sa.Index("ix_dead_letters_run", "run_id"),
        sa.Index("ix_dead_letters_job", "job_id"),
    )
    sa.Table(
        "baselines",
        meta,
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("run_id", sa.String(300), nullable=False),
        sa.Column("pinned_unix_ms", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "comparisons",
        meta,
        sa.Column("base_run_id", sa.String(300), primary_key=True),
        sa.Column("new_run_id", sa.String(300), primary_key=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("comparable", sa.Boolean, nullable=False),
        sa.Column("regressed", sa.Integer, nullable=False),
        sa.Column("payload_json", sa.Text, nullable=False),
        sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
        sa.Index("ix_comparisons_new_run", "new_run_id"),
    )
    return meta


def upgrade() -> None:
    baseline_metadata().create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    baseline_metadata().drop_all(op.get_bind(), checkfirst=False)
