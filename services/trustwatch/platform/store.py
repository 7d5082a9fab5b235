"""The results database: SQLite by default, PostgreSQL by URL, one code path (SQLAlchemy Core).

Storage is idempotent on ids: a judgment is keyed by (job id, evaluator) and a run by its id, so
at-least-once delivery never counts a result twice.

Errors are not final: a stored judgment whose ``error_kind`` is TRANSIENT (the endpoint's or the
judge's fault) is replaced by a later judgment of the same (job, evaluator); a success, a FINAL
error, or a row stored before kinds existed (NULL kind) is never replaced (first write wins).
:meth:`Store.done_job_ids` does not count transient errors as done, so a resumed run retries them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trustwatch.platform.messages import judgment_id, now_ms
from trustwatch.v1 import messages_pb2 as pb

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(300), primary_key=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("expected_jobs", sa.Integer, nullable=False),
    sa.Column("expected_judgments", sa.Integer, nullable=False),
    sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
    sa.Column("completed_unix_ms", sa.BigInteger, nullable=True),
    # What makes two runs comparable (the manifest's ``comparable_key``: suite, sample, target, judges,
    # dataset); NULL in rows stored before the column existed. See :meth:`Store.latest_run`.
    sa.Column("comparable_key", sa.String(64), nullable=True),
    sa.Index("ix_runs_comparable_key", "comparable_key", "created_unix_ms"),
)

judgments = sa.Table(
    "judgments",
    metadata,
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
    # pb.ErrorKind of ``error``; NULL in rows stored before the column existed (treated as final).
    sa.Column("error_kind", sa.Integer, nullable=True),
    # The completion's error when generation failed; NULL in rows stored before the column existed.
    sa.Column("generation_error", sa.Text, nullable=True),
    sa.Index("ix_judgments_run_task", "run_id", "task"),
)

#: Columns added after the first release, by table: :meth:`Store.__init__` adds those an existing
#: database lacks (all nullable, so old rows read as NULL). A migration tool (e.g. Alembic) should
#: take over once there are more changes than added nullable columns.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "judgments": ("error_kind", "generation_error"),
    "runs": ("comparable_key",),
}

_TRANSIENT = int(pb.ERROR_KIND_TRANSIENT)
# A judgment that counts as done: not a transient error (rows from before error_kind existed are final).
_SETTLED = sa.or_(judgments.c.error_kind.is_(None), judgments.c.error_kind != _TRANSIENT)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    target: str
    manifest: dict[str, Any]
    expected_jobs: int
    expected_judgments: int
    created_unix_ms: int
    completed_unix_ms: int | None


@dataclass(frozen=True)
class LatestRun:
    """The latest run of a comparable key, and whether it is complete (:meth:`Store.is_complete`)."""

    run: RunRow
    complete: bool
    settled_judgments: int


_NUL = "\x00"
_NUL_STANDIN = "\ufffd"


def safe_text(value: str, limit: int | None = None) -> str:
    """Text every supported database accepts: NUL (which PostgreSQL refuses in text) becomes U+FFFD,
    and a value longer than its column (``limit`` characters) is cut, ending in an ellipsis."""
    if _NUL in value:
        value = value.replace(_NUL, _NUL_STANDIN)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return value


def _column_limit(table: sa.Table, name: str) -> int | None:
    length = getattr(table.c[name].type, "length", None)
    return int(length) if length else None


def _safe_row(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    """A row made safe for ``table``: every string through :func:`safe_text` with its column's length.

    Ids are cut too: a cut id stays deterministic, so redelivery still finds the stored row.
    """
    return {k: safe_text(v, _column_limit(table, k)) if isinstance(v, str) else v for k, v in row.items()}


def _run_key(run_id: str) -> str:
    """A run id as it is stored (see :func:`_safe_row`), for queries."""
    return safe_text(run_id, _column_limit(runs, "run_id"))


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :])
    return None


class Store:
    def __init__(self, url: str) -> None:
        path = _sqlite_path(url)
        if path is not None and path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            # WAL lets the report command read while the aggregator writes.
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        metadata.create_all(self.engine)
        self.added_columns = self._add_missing_columns()

    def _add_missing_columns(self) -> list[str]:
        """Bring a database made by an earlier version up to date: ADD COLUMN for each column of
        :data:`ADDED_COLUMNS` it lacks. Returns the added columns as "table.column"."""
        added: list[str] = []
        inspector = sa.inspect(self.engine)
        for table_name, names in ADDED_COLUMNS.items():
            table = metadata.tables[table_name]
            have = {c["name"] for c in inspector.get_columns(table_name)}
            for name in names:
                if name in have:
                    continue
                col = table.c[name]
                assert col.nullable, f"{table_name}.{name}: only nullable columns can be added in place"
                ddl = f"ALTER TABLE {table_name} ADD COLUMN {name} {col.type.compile(dialect=self.engine.dialect)}"
                with self.engine.begin() as conn:
                    conn.execute(sa.text(ddl))
                added.append(f"{table_name}.{name}")
        return added

    def _insert(self, table: sa.Table) -> Any:
        name = self.engine.dialect.name
        if name == "postgresql":
            return postgresql.insert(table)
        if name == "sqlite":
            return sqlite.insert(table)
        raise RuntimeError(f"unsupported database {name!r}; use SQLite or PostgreSQL")

    # -- writes -----------------------------------------------------------------------------------
    def record_run(
        self, run_id: str, target: str, manifest: dict[str, Any], expected_jobs: int, expected_judgments: int
    ) -> None:
        stmt = (
            self._insert(runs)
            .values(
                **_safe_row(
                    runs,
                    dict(
                        run_id=run_id,
                        target=target,
                        manifest_json=json.dumps(manifest, sort_keys=True),
                        expected_jobs=expected_jobs,
                        expected_judgments=expected_judgments,
                        created_unix_ms=int(manifest.get("created_unix_ms") or now_ms()),
                        completed_unix_ms=None,
                        comparable_key=manifest.get("comparable_key") or None,
                    ),
                )
            )
            .on_conflict_do_nothing(index_elements=["run_id"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def store_judgments(self, items: Sequence[pb.Judgment]) -> int:
        """Insert judgments not stored yet, and replace stored transient errors; returns how many
        were new (replacements are not new)."""
        if not items:
            return 0
        rows: dict[str, dict[str, Any]] = {}
        for j in items:
            row = _safe_row(
                judgments,
                dict(
                    judgment_id=judgment_id(j.job_id, j.evaluator),
                    job_id=j.job_id,
                    run_id=j.run_id,
                    task=j.task,
                    item_id=j.item_id,
                    sample=j.sample,
                    target=j.target,
                    evaluator=j.evaluator,
                    label=j.label,
                    valid=j.valid,
                    score=None if math.isnan(j.score) else j.score,
                    error=j.error,
                    detail_json=j.detail_json,
                    response=j.response,
                    record_json=j.record_json,
                    created_unix_ms=j.created_unix_ms or now_ms(),
                    error_kind=int(j.error_kind),
                    generation_error=j.generation_error,
                ),
            )
            # Within a batch the same rule as across batches: only a transient error gives way.
            first = rows.get(row["judgment_id"])
            if first is None or first["error_kind"] == _TRANSIENT:
                rows[row["judgment_id"]] = row
        with self.engine.begin() as conn:
            before = conn.execute(
                sa.select(sa.func.count()).select_from(judgments).where(judgments.c.judgment_id.in_(list(rows)))
            ).scalar_one()
            ins = self._insert(judgments)
            replace = {c.name: ins.excluded[c.name] for c in judgments.c if c.name != "judgment_id"}
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["judgment_id"], set_=replace, where=judgments.c.error_kind == _TRANSIENT
                ),
                list(rows.values()),
            )
        return len(rows) - int(before)

    def mark_completed(self, run_id: str, when_ms: int | None = None) -> None:
        run_id = _run_key(run_id)
        with self.engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.completed_unix_ms.is_(None))
                .values(completed_unix_ms=when_ms or now_ms())
            )

    # -- reads ------------------------------------------------------------------------------------
    def run(self, run_id: str) -> RunRow | None:
        run_id = _run_key(run_id)
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
        return _run_row(r) if r else None

    def runs(self, target: str | None = None) -> list[RunRow]:
        q = sa.select(runs).order_by(runs.c.created_unix_ms)
        if target:
            q = q.where(runs.c.target == target)
        with self.engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(q).mappings()]

    def judgment_count(self, run_id: str) -> int:
        run_id = _run_key(run_id)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(judgments).where(judgments.c.run_id == run_id)
                ).scalar_one()
            )

    def judgments(self, run_id: str, task: str | None = None) -> list[Any]:
        run_id = _run_key(run_id)
        q = sa.select(judgments).where(judgments.c.run_id == run_id)
        if task:
            q = q.where(judgments.c.task == task)
        with self.engine.connect() as conn:
            return list(conn.execute(q.order_by(judgments.c.judgment_id)))

    def done_job_ids(self, run_id: str, evaluators_per_job: dict[str, int]) -> list[str]:
        """Jobs of a run that have all their judgments stored, transient errors not counted: a
        resumed run publishes a job again while any of its judgments is a transient error."""
        run_id = _run_key(run_id)
        settled = _SETTLED
        with self.engine.connect() as conn:
            counts = conn.execute(
                sa.select(judgments.c.job_id, sa.func.count())
                .where(judgments.c.run_id == run_id, settled)
                .group_by(judgments.c.job_id)
            ).all()
        return [job for job, n in counts if n >= evaluators_per_job.get(job, 1)]

    def settled_judgment_count(self, run_id: str) -> int:
        """Judgments of a run that are final: stored, and not a TRANSIENT error (those are retried)."""
        run_id = _run_key(run_id)
        settled = _SETTLED
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(judgments).where(judgments.c.run_id == run_id, settled)
                ).scalar_one()
            )

    def is_complete(self, run: RunRow | str) -> bool:
        """The one definition of a complete run: every expected judgment stored and settled (a
        TRANSIENT error judgment does not count: re-running retries it). An unknown run is not complete."""
        row = self.run(run) if isinstance(run, str) else run
        return row is not None and self.settled_judgment_count(row.run_id) >= row.expected_judgments

    def latest_run(self, comparable_key: str) -> LatestRun | None:
        """The most recently created run with this comparable key (see the manifest's
        ``comparable_key``), and whether it is complete; None when there is none."""
        q = (
            sa.select(runs)
            .where(runs.c.comparable_key == comparable_key)
            .order_by(runs.c.created_unix_ms.desc(), runs.c.run_id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return None
        row = _run_row(r)
        settled = self.settled_judgment_count(row.run_id)
        return LatestRun(row, settled >= row.expected_judgments, settled)

    def transient_job_ids(self, run_id: str) -> list[str]:
        """Jobs of a run with at least one TRANSIENT error judgment: what a re-run retries."""
        run_id = _run_key(run_id)
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(judgments.c.job_id)
                    .distinct()
                    .where(judgments.c.run_id == run_id, judgments.c.error_kind == _TRANSIENT)
                    .order_by(judgments.c.job_id)
                ).scalars()
            )

    def close(self) -> None:
        self.engine.dispose()


def _run_row(r: Any) -> RunRow:
    return RunRow(
        run_id=r["run_id"],
        target=r["target"],
        manifest=json.loads(r["manifest_json"]),
        expected_jobs=r["expected_jobs"],
        expected_judgments=r["expected_judgments"],
        created_unix_ms=r["created_unix_ms"],
        completed_unix_ms=r["completed_unix_ms"],
    )
