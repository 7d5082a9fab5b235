"""The results database: SQLite by default, PostgreSQL by URL, one code path (SQLAlchemy Core).

Storage is idempotent on ids: a judgment is keyed by (job id, evaluator) and a run by its id, so
at-least-once delivery never counts a result twice.

Errors are not final: a stored judgment whose ``error_kind`` is TRANSIENT (the endpoint's or the
judge's fault) or POISON (its message was dead-lettered) is replaced by a later judgment of the same
(job, evaluator), so a retry, or a replayed dead letter that now succeeds, takes its place; a
success, a FINAL error, or a row stored before kinds existed (NULL kind) is never replaced (first
write wins). A *settled* judgment is any but a TRANSIENT error: POISON is settled (the item is counted
as an error and its run can complete). :meth:`Store.done_job_ids` does not count transient errors as
done, so a resumed run retries them.

Completion is exact (:meth:`Store.is_complete`): a run records its plan, every (job, evaluator) pair
it expects (``plan_pairs``), and is complete when each pair has a settled judgment; duplicate or
extra rows never count. Runs stored by versions without a plan keep the count rule.

``dead_letters`` keeps every message a service dead-lettered (payload included, for
``trustwatch dlq replay``), once per source (topic, partition, offset).

``baselines`` holds each target's pinned baseline run (``trustwatch baseline pin``) and
``comparisons`` the run-against-run comparisons the aggregator computed (``Comparison.to_json()``,
keyed by base and new run), so a restart exports them again without recomputing.

The schema is migrated by Alembic (:mod:`trustwatch.platform.migrate`, revisions in
``platform/migrations/versions``): :class:`Store` upgrades it when opened unless told not to. Retention
(:meth:`Store.prune`) clears old raw replies and keeps every outcome comparisons are computed from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from trustwatch.platform import migrate as schema
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
    # When retention cleared the run's raw replies (:meth:`Store.prune`); NULL while they are kept.
    sa.Column("pruned_unix_ms", sa.BigInteger, nullable=True),
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
    sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
    # pb.ErrorKind of ``error``; NULL in rows stored before the column existed (treated as final).
    sa.Column("error_kind", sa.Integer, nullable=True),
    # The completion's error when generation failed; NULL in rows stored before the column existed.
    sa.Column("generation_error", sa.Text, nullable=True),
    sa.Index("ix_judgments_run_task", "run_id", "task"),
)

#: The plan of a run: one row per (job, evaluator) pair it expects a judgment for, keyed like the
#: judgment that settles it (see :meth:`Store.record_plan`).
plan_pairs = sa.Table(
    "plan_pairs",
    metadata,
    sa.Column("judgment_id", sa.String(600), primary_key=True),
    sa.Column("run_id", sa.String(300), nullable=False),
    sa.Column("job_id", sa.String(500), nullable=False),
    sa.Column("evaluator", sa.String(100), nullable=False),
    sa.Column("task", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(100), nullable=False),
    sa.Column("sample", sa.Integer, nullable=False),
    sa.Index("ix_plan_pairs_run", "run_id"),
    sa.Index("ix_plan_pairs_job", "job_id"),
)

#: The dataset record of each job (``PromptJob.record_json``), stored once per job however many
#: judgments and planned pairs the job has (revision 0003; before it, every judgment and pair held a
#: copy). Written by :meth:`Store.record_plan` (the scheduler's record: it replaces one stored
#: before) and by :meth:`Store.store_judgments` (only where the job has none yet), read with the
#: judgments and for the POISON judgment of a pair whose messages were dead-lettered.
job_records = sa.Table(
    "job_records",
    metadata,
    sa.Column("job_id", sa.String(500), primary_key=True),
    sa.Column("run_id", sa.String(300), nullable=False),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Index("ix_job_records_run", "run_id"),
)

#: Messages a service sent to the dead-letter topic, once per source message (redelivery of the dead
#: letter stores nothing new). ``run_id``, ``job_id`` and ``evaluator`` say what it belongs to when the
#: aggregator could tell (``evaluator`` only for a judgment); ``record_json`` is the dataset record
#: its payload carried (else the plan's is used), for the poison judgments made of it.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
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

#: A target's pinned baseline: the run every later run of the target is compared with besides its
#: previous one (``trustwatch baseline pin RUN``); one per target, a new pin replaces the old.
baselines = sa.Table(
    "baselines",
    metadata,
    sa.Column("target", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(300), nullable=False),
    sa.Column("pinned_unix_ms", sa.BigInteger, nullable=False),
)

#: Comparisons of two runs (``trustwatch.benchmark.compare``), stored by the aggregator when a run
#: completes, so a restart does not recompute them and the HTTP API can serve them. ``payload_json``
#: is ``Comparison.to_json()``.
comparisons = sa.Table(
    "comparisons",
    metadata,
    sa.Column("base_run_id", sa.String(300), primary_key=True),
    sa.Column("new_run_id", sa.String(300), primary_key=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("comparable", sa.Boolean, nullable=False),
    sa.Column("regressed", sa.Integer, nullable=False),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("created_unix_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_comparisons_new_run", "new_run_id"),
)

#: Columns added after the first release, by table (all nullable, so old rows read as NULL). The
#: schema is migrated by Alembic (:mod:`trustwatch.platform.migrate`): a database from before
#: migrations gets the first ones when it is adopted, later ones from their revisions (runs.pruned_unix_ms:
#: revision 0002). Every change to the tables above needs a revision in platform/migrations/versions.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "judgments": ("error_kind", "generation_error"),
    "runs": ("comparable_key", "pruned_unix_ms"),
}

_TRANSIENT = int(pb.ERROR_KIND_TRANSIENT)
_POISON = int(pb.ERROR_KIND_POISON)
#: Kinds of a stored judgment that a later judgment of the same (job, evaluator) replaces.
_REPLACEABLE = (_TRANSIENT, _POISON)
# A stored judgment a later one replaces (an IN list would be expanded, which executemany refuses).
_REPLACEABLE_ROW = sa.or_(*(judgments.c.error_kind == k for k in _REPLACEABLE))
# A judgment that counts as done: not a transient error (rows from before error_kind existed are final).
_SETTLED = sa.or_(judgments.c.error_kind.is_(None), judgments.c.error_kind != _TRANSIENT)
#: What each field of :class:`JudgmentRow` is read from: its ``judgments`` column, and the job's
#: record from ``job_records`` ("" where the job has none stored).
_JUDGMENT_COLUMNS: dict[str, Any] = {
    **{c.name: c for c in judgments.c},
    "record_json": sa.func.coalesce(job_records.c.record_json, "").label("record_json"),
}
#: The manifest's ``completion`` of runs whose completion is decided by their recorded plan.
PLANNED_PAIRS = "planned_pairs"


@dataclass(frozen=True)
class RunRow:
    run_id: str
    target: str
    manifest: dict[str, Any]
    expected_jobs: int
    expected_judgments: int
    created_unix_ms: int
    completed_unix_ms: int | None
    #: when retention cleared its raw replies (None: kept); its outcomes are all still there
    pruned_unix_ms: int | None = None


@dataclass(frozen=True)
class PlannedPairRow:
    """A planned (job, evaluator) pair (see ``plan_pairs``)."""

    job_id: str
    evaluator: str
    task: str
    item_id: str
    sample: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "evaluator": self.evaluator,
            "task": self.task,
            "item_id": self.item_id,
            "sample": self.sample,
        }


@dataclass(frozen=True)
class JudgmentRow:
    """A stored judgment (see ``judgments``): one field per column of the ``judgments`` table, and the
    job's dataset record (``job_records``)."""

    judgment_id: str
    job_id: str
    run_id: str
    task: str
    item_id: str
    sample: int
    target: str
    evaluator: str
    label: str
    valid: bool
    score: float | None
    error: str
    detail_json: str
    response: str
    record_json: str
    created_unix_ms: int
    #: pb.ErrorKind of ``error``; None in rows stored before the column existed (treated as final)
    error_kind: int | None
    #: the completion's error when generation failed; None in rows stored before the column existed
    generation_error: str | None


@dataclass(frozen=True)
class DeadLetterRow:
    """A stored dead letter (see ``dead_letters``); ``id`` is 0 before it is stored."""

    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes
    payload: bytes
    reason: str
    service: str
    created_unix_ms: int
    run_id: str | None = None
    job_id: str | None = None
    evaluator: str | None = None
    record_json: str | None = None
    replayed_unix_ms: int | None = None
    id: int = 0


@dataclass(frozen=True)
class PoisonCandidate:
    """A planned pair without a settled judgment whose job has an unreplayed dead letter: what the
    aggregator turns into a POISON judgment (:meth:`Store.poison_candidates`)."""

    run_id: str
    target: str
    pair: PlannedPairRow
    dead_letter_id: int
    service: str
    reason: str
    record_json: str


@dataclass(frozen=True)
class BaselineRow:
    """A target's pinned baseline run (see ``baselines``)."""

    target: str
    run_id: str
    pinned_unix_ms: int


@dataclass(frozen=True)
class ComparisonRow:
    """A stored comparison of two runs (see ``comparisons``); ``payload`` is ``Comparison.to_json()``."""

    base_run_id: str
    new_run_id: str
    target: str
    comparable: bool
    regressed: int
    payload: dict[str, Any]
    created_unix_ms: int


@dataclass(frozen=True)
class LatestRun:
    """The latest run of a comparable key, and whether it is complete (:meth:`Store.is_complete`)."""

    run: RunRow
    complete: bool
    settled_judgments: int


#: What a pruned judgment's ``response`` reads (:meth:`Store.prune`). A reply that was empty or all
#: white space is left as it was: metrics read that (an empty reply), and nothing else of the text.
PRUNED_RESPONSE = "[pruned]"
#: Judgments updated per statement when pruning.
_PRUNE_CHUNK = 1000
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Store.prune` cleared (or, ``dry_run``, would clear): runs created before
    ``cutoff_unix_ms`` (``runs``: those with something cleared or not marked pruned before), judgments'
    responses, and replayed dead letters' payloads."""

    cutoff_unix_ms: int
    runs: list[str]
    responses: int
    dead_letter_payloads: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "cutoff_unix_ms": self.cutoff_unix_ms,
            "runs": list(self.runs),
            "responses": self.responses,
            "dead_letter_payloads": self.dead_letter_payloads,
            "dry_run": self.dry_run,
        }


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
    def __init__(self, url: str, migrate: bool = True) -> None:
        """Open the database at ``url``. ``migrate``: bring its schema to the newest revision first
        (Alembic; a database from before migrations is adopted, see :mod:`trustwatch.platform.migrate`);
        False: only check it is there (:class:`~trustwatch.platform.migrate.MigrationError` if not),
        for deployments where `trustwatch db upgrade` migrates before the services start."""
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

        #: columns a database from before migrations lacked and got when it was adopted ("table.column")
        self.added_columns: list[str] = []
        if migrate:
            self.added_columns = schema.upgrade(self.engine).added_columns
        else:
            schema.check(self.engine)

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
        """Insert judgments not stored yet, and replace stored TRANSIENT and POISON errors; returns
        how many were new (replacements are not new)."""
        if not items:
            return 0
        rows: dict[str, dict[str, Any]] = {}
        records: dict[str, dict[str, Any]] = {}
        for j in items:
            if j.record_json:
                record = _safe_row(
                    job_records, dict(job_id=j.ref.job_id, run_id=j.ref.run_id, record_json=j.record_json)
                )
                records.setdefault(record["job_id"], record)
            row = _safe_row(
                judgments,
                dict(
                    judgment_id=judgment_id(j.ref.job_id, j.evaluator),
                    job_id=j.ref.job_id,
                    run_id=j.ref.run_id,
                    task=j.ref.task,
                    item_id=j.ref.item_id,
                    sample=j.ref.sample,
                    target=j.ref.target,
                    evaluator=j.evaluator,
                    label=j.label,
                    valid=j.valid,
                    score=None if math.isnan(j.score) else j.score,
                    error=j.error,
                    detail_json=j.detail_json,
                    response=j.response,
                    created_unix_ms=j.created_unix_ms or now_ms(),
                    error_kind=int(j.error_kind),
                    generation_error=j.generation_error,
                ),
            )
            # Within a batch the same rule as across batches: only a transient or poison error gives way.
            first = rows.get(row["judgment_id"])
            if first is None or first["error_kind"] in _REPLACEABLE:
                rows[row["judgment_id"]] = row
        with self.engine.begin() as conn:
            before = conn.execute(
                sa.select(sa.func.count()).select_from(judgments).where(judgments.c.judgment_id.in_(list(rows)))
            ).scalar_one()
            ins = self._insert(judgments)
            replace = {c.name: ins.excluded[c.name] for c in judgments.c if c.name != "judgment_id"}
            conn.execute(
                ins.on_conflict_do_update(index_elements=["judgment_id"], set_=replace, where=_REPLACEABLE_ROW),
                list(rows.values()),
            )
            self._store_records(conn, list(records.values()), replace=False)
        return len(rows) - int(before)

    def _store_records(self, conn: Connection, rows: list[dict[str, Any]], replace: bool) -> None:
        """Store jobs' records (rows of ``job_records``); ``replace``: over one stored before (the
        plan's record is the scheduler's own; a judgment's copy only fills a gap)."""
        if not rows:
            return
        ins = self._insert(job_records)
        stmt = (
            ins.on_conflict_do_update(index_elements=["job_id"], set_={"record_json": ins.excluded.record_json})
            if replace
            else ins.on_conflict_do_nothing(index_elements=["job_id"])
        )
        for i in range(0, len(rows), 5000):
            conn.execute(stmt, rows[i : i + 5000])

    def record_plan(self, run_id: str, pairs: Iterable[pb.PlannedPair]) -> int:
        """Record planned (job, evaluator) pairs of a run; idempotent (a pair stored before is left as
        it is). Returns how many were new."""
        rows: dict[str, dict[str, Any]] = {}
        records: dict[str, dict[str, Any]] = {}
        for p in pairs:
            row = _safe_row(
                plan_pairs,
                dict(
                    judgment_id=judgment_id(p.job_id, p.evaluator),
                    run_id=run_id,
                    job_id=p.job_id,
                    evaluator=p.evaluator,
                    task=p.task,
                    item_id=p.item_id,
                    sample=p.sample,
                ),
            )
            rows.setdefault(row["judgment_id"], row)
            if p.record_json:  # a job's record rides on one of its pairs
                record = _safe_row(job_records, dict(job_id=p.job_id, run_id=run_id, record_json=p.record_json))
                records.setdefault(record["job_id"], record)
        if not rows:
            return 0
        before = self.planned_count(run_id)
        stmt = self._insert(plan_pairs).on_conflict_do_nothing(index_elements=["judgment_id"])
        with self.engine.begin() as conn:
            values = list(rows.values())
            for i in range(0, len(values), 5000):
                conn.execute(stmt, values[i : i + 5000])
            self._store_records(conn, list(records.values()), replace=True)
        return self.planned_count(run_id) - before

    def store_dead_letters(self, items: Sequence[DeadLetterRow]) -> list[int]:
        """Store dead letters not stored yet (one per source topic, partition and offset); returns
        the stored ids of all of them, in order (a redelivered one: the id stored first)."""
        if not items:
            return []
        stmt = self._insert(dead_letters).on_conflict_do_nothing(
            index_elements=["source_topic", "source_partition", "source_offset"]
        )
        ids: list[int] = []
        with self.engine.begin() as conn:
            for d in items:
                row = _safe_row(dead_letters, {k: v for k, v in vars(d).items() if k != "id"})
                conn.execute(stmt, row)
                ids.append(
                    int(
                        conn.execute(
                            sa.select(dead_letters.c.id).where(
                                dead_letters.c.source_topic == row["source_topic"],
                                dead_letters.c.source_partition == row["source_partition"],
                                dead_letters.c.source_offset == row["source_offset"],
                            )
                        ).scalar_one()
                    )
                )
        return ids

    def mark_replayed(self, ids: Collection[int], when_ms: int | None = None) -> None:
        """Mark dead letters as sent back to their topic (their poison rows may now be replaced)."""
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                dead_letters.update()
                .where(dead_letters.c.id.in_(list(ids)))
                .values(replayed_unix_ms=when_ms or now_ms())
            )

    def attribute_dead_letters(self, run_id: str) -> int:
        """Give dead letters known only by job id (an undecodable payload) the run whose plan holds
        that job; returns how many were attributed."""
        run_id = _run_key(run_id)
        jobs = sa.select(plan_pairs.c.job_id).where(plan_pairs.c.run_id == run_id)
        unattributed = sa.select(dead_letters.c.id).where(
            dead_letters.c.run_id.is_(None), dead_letters.c.job_id.isnot(None)
        )
        with self.engine.connect() as conn:
            if conn.execute(unattributed.limit(1)).first() is None:
                return 0  # the usual case: no write transaction on every refresh
        with self.engine.begin() as conn:
            done = conn.execute(
                dead_letters.update()
                .where(dead_letters.c.run_id.is_(None), dead_letters.c.job_id.in_(jobs))
                .values(run_id=run_id)
            )
            return int(done.rowcount or 0)

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

    def judgments(self, run_id: str, task: str | None = None) -> list[JudgmentRow]:
        """A run's stored judgments (of one task, when given), by judgment id."""
        run_id = _run_key(run_id)
        q = (
            sa.select(*(_JUDGMENT_COLUMNS[f.name] for f in fields(JudgmentRow)))
            .select_from(judgments.outerjoin(job_records, job_records.c.job_id == judgments.c.job_id))
            .where(judgments.c.run_id == run_id)
        )
        if task:
            q = q.where(judgments.c.task == task)
        with self.engine.connect() as conn:
            return [JudgmentRow(*row) for row in conn.execute(q.order_by(judgments.c.judgment_id))]

    def done_job_ids(self, run_id: str, evaluators_per_job: Mapping[str, int | Collection[str]]) -> list[str]:
        """Jobs of a run that have all their judgments stored, transient errors not counted: a
        resumed run publishes a job again while any of its judgments is a transient error.

        ``evaluators_per_job``: per job, the names of its evaluators (exact: each must have a settled
        judgment) or their number (a count: as many settled judgments; jobs not named need one)."""
        run_id = _run_key(run_id)
        with self.engine.connect() as conn:
            settled = conn.execute(
                sa.select(judgments.c.job_id, judgments.c.evaluator).where(judgments.c.run_id == run_id, _SETTLED)
            ).all()
        by_job: dict[str, set[str]] = {}
        for job, evaluator in settled:
            by_job.setdefault(job, set()).add(evaluator)
        done: list[str] = []
        for job, have in sorted(by_job.items()):
            want = evaluators_per_job.get(job, 1)
            if isinstance(want, int):
                if len(have) >= want:
                    done.append(job)
            elif have >= {safe_text(e, _column_limit(judgments, "evaluator")) for e in want}:
                done.append(job)
        return done

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

    def planned_count(self, run_id: str) -> int:
        """Planned (job, evaluator) pairs recorded for a run."""
        run_id = _run_key(run_id)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(plan_pairs).where(plan_pairs.c.run_id == run_id)
                ).scalar_one()
            )

    def _missing_query(self, run_id: str) -> Any:
        """Planned pairs of a run without a settled judgment (none, or a TRANSIENT error)."""
        joined = plan_pairs.outerjoin(judgments, judgments.c.judgment_id == plan_pairs.c.judgment_id)
        unsettled = sa.or_(judgments.c.judgment_id.is_(None), judgments.c.error_kind == _TRANSIENT)
        return joined, sa.and_(plan_pairs.c.run_id == _run_key(run_id), unsettled)

    def missing_pairs(self, run_id: str, limit: int | None = 100) -> list[PlannedPairRow]:
        """Planned pairs of a run with no settled judgment (by job id and evaluator), at most ``limit``."""
        joined, where = self._missing_query(run_id)
        q = (
            sa.select(
                plan_pairs.c.job_id,
                plan_pairs.c.evaluator,
                plan_pairs.c.task,
                plan_pairs.c.item_id,
                plan_pairs.c.sample,
            )
            .select_from(joined)
            .where(where)
            .order_by(plan_pairs.c.job_id, plan_pairs.c.evaluator)
        )
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [PlannedPairRow(*r) for r in conn.execute(q)]

    def missing_count(self, run_id: str) -> int:
        """How many planned pairs of a run have no settled judgment."""
        joined, where = self._missing_query(run_id)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(joined).where(where)).scalar_one())

    def missing_judgments(self, run: RunRow) -> int:
        """How many judgments a run still misses: planned pairs without a settled judgment, plus pairs
        of its plan not recorded yet; for a run without a plan, expected minus settled judgments."""
        if run.manifest.get("completion") == PLANNED_PAIRS or self.planned_count(run.run_id):
            unrecorded = max(0, run.expected_judgments - self.planned_count(run.run_id))
            return unrecorded + self.missing_count(run.run_id)
        return max(0, run.expected_judgments - self.settled_judgment_count(run.run_id))

    def is_complete(self, run: RunRow | str) -> bool:
        """The one definition of a complete run. An unknown run is not complete.

        A run recorded with its plan (manifest ``completion`` = "planned_pairs", every run planned
        since plans exist): its plan is fully recorded (``expected_judgments`` pairs) and every
        planned (job, evaluator) pair has a settled judgment; duplicates and rows outside the plan
        never count. A POISON judgment is settled, a TRANSIENT error is not (re-running retries it).

        A run stored by an older version (no plan): at least ``expected_judgments`` settled judgments
        (the count rule; extra rows could make such a run look complete).
        """
        row = self.run(run) if isinstance(run, str) else run
        if row is None:
            return False
        if row.manifest.get("completion") == PLANNED_PAIRS or self.planned_count(row.run_id):
            return self.planned_count(row.run_id) >= row.expected_judgments and self.missing_count(row.run_id) == 0
        return self.settled_judgment_count(row.run_id) >= row.expected_judgments

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
        return LatestRun(row, self.is_complete(row), self.settled_judgment_count(row.run_id))

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

    def dead_letters(
        self,
        run_id: str | None = None,
        service: str | None = None,
        ids: Collection[int] | None = None,
        include_replayed: bool = True,
    ) -> list[DeadLetterRow]:
        """Stored dead letters, oldest first, filtered by run, service, ids and whether replayed."""
        q = sa.select(dead_letters).order_by(dead_letters.c.id)
        if run_id is not None:
            q = q.where(dead_letters.c.run_id == _run_key(run_id))
        if service is not None:
            q = q.where(dead_letters.c.service == service)
        if ids is not None:
            q = q.where(dead_letters.c.id.in_(list(ids)))
        if not include_replayed:
            q = q.where(dead_letters.c.replayed_unix_ms.is_(None))
        with self.engine.connect() as conn:
            return [_dead_letter_row(r) for r in conn.execute(q).mappings()]

    def poison_candidates(
        self, run_id: str | None = None, job_ids: Collection[str] | None = None
    ) -> list[PoisonCandidate]:
        """Planned pairs without a settled judgment whose job has a dead letter not replayed yet
        (a dead letter of a judgment: only its evaluator's pair), of one run or of some jobs.

        A pair with several such dead letters is listed once per dead letter.
        """
        dl, pp, j, rec = dead_letters, plan_pairs, judgments, job_records
        joined = (
            dl.join(
                pp,
                sa.and_(pp.c.job_id == dl.c.job_id, sa.or_(dl.c.evaluator.is_(None), dl.c.evaluator == pp.c.evaluator)),
            )
            .outerjoin(j, j.c.judgment_id == pp.c.judgment_id)
            .outerjoin(runs, runs.c.run_id == pp.c.run_id)
            .outerjoin(rec, rec.c.job_id == pp.c.job_id)
        )
        q = (
            sa.select(
                pp.c.run_id,
                runs.c.target,
                pp.c.job_id,
                pp.c.evaluator,
                pp.c.task,
                pp.c.item_id,
                pp.c.sample,
                dl.c.id,
                dl.c.service,
                dl.c.reason,
                # the job's stored record (the plan's: the dataset's), not the dead-lettered message's copy,
                # which may be the poison
                rec.c.record_json,
            )
            .select_from(joined)
            .where(
                dl.c.replayed_unix_ms.is_(None),
                sa.or_(j.c.judgment_id.is_(None), j.c.error_kind == _TRANSIENT),
            )
            .order_by(pp.c.job_id, pp.c.evaluator, dl.c.id)
        )
        if run_id is not None:
            q = q.where(pp.c.run_id == _run_key(run_id))
        if job_ids is not None:
            if not job_ids:
                return []
            q = q.where(dl.c.job_id.in_([safe_text(x, _column_limit(dl, "job_id")) for x in job_ids]))
        with self.engine.connect() as conn:
            return [
                PoisonCandidate(
                    run_id=r.run_id,
                    target=r.target or "",
                    pair=PlannedPairRow(r.job_id, r.evaluator, r.task, r.item_id, r.sample),
                    dead_letter_id=int(r.id),
                    service=r.service,
                    reason=r.reason,
                    record_json=r.record_json or "",
                )
                for r in conn.execute(q)
            ]

    # -- baselines and comparisons ----------------------------------------------------------------
    def pin_baseline(self, run_id: str, when_ms: int | None = None) -> BaselineRow:
        """Pin a stored run as its target's baseline (replacing the target's previous pin)."""
        run = self.run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        row = _safe_row(baselines, dict(target=run.target, run_id=run.run_id, pinned_unix_ms=when_ms or now_ms()))
        ins = self._insert(baselines)
        with self.engine.begin() as conn:
            conn.execute(
                ins.values(**row).on_conflict_do_update(
                    index_elements=["target"],
                    set_={"run_id": ins.excluded.run_id, "pinned_unix_ms": ins.excluded.pinned_unix_ms},
                )
            )
        return BaselineRow(**row)

    def unpin_baseline(self, target: str) -> bool:
        """Remove a target's baseline; False when it had none."""
        with self.engine.begin() as conn:
            done = conn.execute(baselines.delete().where(baselines.c.target == target))
        return bool(done.rowcount)

    def baselines(self) -> dict[str, BaselineRow]:
        """Every pinned baseline, by target."""
        with self.engine.connect() as conn:
            return {
                r.target: BaselineRow(r.target, r.run_id, r.pinned_unix_ms) for r in conn.execute(sa.select(baselines))
            }

    def baseline(self, target: str) -> BaselineRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(baselines).where(baselines.c.target == target)).first()
        return BaselineRow(r.target, r.run_id, r.pinned_unix_ms) if r else None

    def store_comparison(self, target: str, payload: Mapping[str, Any], when_ms: int | None = None) -> None:
        """Store (or replace) the comparison of ``payload``'s base and new runs."""
        row = _safe_row(
            comparisons,
            dict(
                base_run_id=payload["base_run"],
                new_run_id=payload["new_run"],
                target=target,
                comparable=bool(payload.get("comparable")),
                regressed=int(payload.get("regressed") or 0),
                payload_json=json.dumps(payload, sort_keys=True),
                created_unix_ms=when_ms or now_ms(),
            ),
        )
        ins = self._insert(comparisons)
        keep = ("base_run_id", "new_run_id")
        with self.engine.begin() as conn:
            conn.execute(
                ins.values(**row).on_conflict_do_update(
                    index_elements=list(keep), set_={k: ins.excluded[k] for k in row if k not in keep}
                )
            )

    def comparison(self, base_run_id: str, new_run_id: str) -> ComparisonRow | None:
        q = sa.select(comparisons).where(
            comparisons.c.base_run_id == _run_key(base_run_id), comparisons.c.new_run_id == _run_key(new_run_id)
        )
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        return _comparison_row(r) if r else None

    def comparisons(self, new_run_id: str | None = None, target: str | None = None) -> list[ComparisonRow]:
        """Stored comparisons, oldest first, of one new run or one target."""
        q = sa.select(comparisons).order_by(comparisons.c.created_unix_ms, comparisons.c.base_run_id)
        if new_run_id is not None:
            q = q.where(comparisons.c.new_run_id == _run_key(new_run_id))
        if target is not None:
            q = q.where(comparisons.c.target == target)
        with self.engine.connect() as conn:
            return [_comparison_row(r) for r in conn.execute(q).mappings()]

    # -- retention ---------------------------------------------------------------------------------
    def prune(self, older_than_days: float, now: int | None = None, dry_run: bool = False) -> PruneResult:
        """Clear the raw text of runs created more than ``older_than_days`` days before ``now`` (unix
        ms; default now), keeping everything comparisons and reports are computed from.

        Cleared: each judgment's ``response`` (to :data:`PRUNED_RESPONSE`; an empty or all-white-space
        one stays as it is, since whether a reply was empty is an outcome metrics read), and the
        ``payload`` of dead letters created before the cutoff that were replayed (an unreplayed one
        may still be replayed). Kept: runs and manifests, plans, every per-item outcome (label,
        valid, score, error, error_kind, generation_error, ``detail_json``, which metrics read, and
        the dataset ``record_json``), baselines and comparisons; so a pruned run reports and
        compares as before. Each pruned run gets ``pruned_unix_ms`` (the first time). Idempotent;
        ``dry_run`` counts and changes nothing."""
        if older_than_days <= 0:
            raise ValueError(f"older_than_days must be positive, not {older_than_days}")
        now = now_ms() if now is None else now
        cutoff = int(now - older_than_days * _DAY_MS)
        old_runs = sa.select(runs.c.run_id).where(runs.c.created_unix_ms < cutoff)
        todo = sa.and_(
            judgments.c.run_id.in_(old_runs),
            judgments.c.response != "",
            judgments.c.response != PRUNED_RESPONSE,
        )
        ids: list[str] = []
        run_ids: set[str] = set()
        with self.engine.connect() as conn:
            q = sa.select(judgments.c.judgment_id, judgments.c.run_id, judgments.c.response).where(todo)
            for jid, run_id, response in conn.execution_options(yield_per=500).execute(q):
                if response.strip():
                    ids.append(jid)
                    run_ids.add(run_id)
            unmarked = conn.execute(
                sa.select(runs.c.run_id).where(runs.c.created_unix_ms < cutoff, runs.c.pruned_unix_ms.is_(None))
            ).scalars()
            run_ids.update(unmarked)
            letters = sa.and_(
                dead_letters.c.created_unix_ms < cutoff,
                dead_letters.c.replayed_unix_ms.isnot(None),
                sa.func.length(dead_letters.c.payload) > 0,
            )
            n_letters = int(
                conn.execute(sa.select(sa.func.count()).select_from(dead_letters).where(letters)).scalar_one()
            )
        if not dry_run:
            with self.engine.begin() as conn:
                for i in range(0, len(ids), _PRUNE_CHUNK):
                    conn.execute(
                        judgments.update()
                        .where(judgments.c.judgment_id.in_(ids[i : i + _PRUNE_CHUNK]))
                        .values(response=PRUNED_RESPONSE)
                    )
                conn.execute(dead_letters.update().where(letters).values(payload=b""))
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id.in_(sorted(run_ids)), runs.c.pruned_unix_ms.is_(None))
                    .values(pruned_unix_ms=now)
                )
        return PruneResult(cutoff, sorted(run_ids), len(ids), n_letters, dry_run)

    def close(self) -> None:
        self.engine.dispose()


def _comparison_row(r: Any) -> ComparisonRow:
    return ComparisonRow(
        base_run_id=r["base_run_id"],
        new_run_id=r["new_run_id"],
        target=r["target"],
        comparable=bool(r["comparable"]),
        regressed=int(r["regressed"]),
        payload=json.loads(r["payload_json"]),
        created_unix_ms=int(r["created_unix_ms"]),
    )


def _dead_letter_row(r: Any) -> DeadLetterRow:
    return DeadLetterRow(
        source_topic=r["source_topic"],
        source_partition=r["source_partition"],
        source_offset=r["source_offset"],
        key=bytes(r["key"] or b""),
        payload=bytes(r["payload"]),
        reason=r["reason"],
        service=r["service"],
        created_unix_ms=r["created_unix_ms"],
        run_id=r["run_id"],
        job_id=r["job_id"],
        evaluator=r["evaluator"],
        record_json=r["record_json"],
        replayed_unix_ms=r["replayed_unix_ms"],
        id=int(r["id"]),
    )


def _run_row(r: Any) -> RunRow:
    return RunRow(
        run_id=r["run_id"],
        target=r["target"],
        manifest=json.loads(r["manifest_json"]),
        expected_jobs=r["expected_jobs"],
        expected_judgments=r["expected_judgments"],
        created_unix_ms=r["created_unix_ms"],
        completed_unix_ms=r["completed_unix_ms"],
        pruned_unix_ms=r.get("pruned_unix_ms"),
    )
