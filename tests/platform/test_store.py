"""The results store on SQLite and on a real PostgreSQL: idempotent on ids, one code path."""

import math
import uuid

import pytest
import sqlalchemy as sa

from trustwatch.benchmark.scoring import scored_items
from trustwatch.platform import store as store_module
from trustwatch.platform.migrations.versions import v0001_baseline
from trustwatch.platform.store import Store
from trustwatch.v1 import messages_pb2 as pb

TRANSIENT, FINAL = pb.ERROR_KIND_TRANSIENT, pb.ERROR_KIND_FINAL


def _j(i: int, evaluator: str = "refusal", label: str = "refusal", run: str = "r1") -> pb.Judgment:
    return pb.Judgment(
        ref=pb.JobRef(
            job_id=f"{run}/safety/misuse/{i}/0", run_id=run, task="safety/misuse", item_id=str(i), target="m"
        ),
        evaluator=evaluator,
        label=label,
        valid=True,
        score=math.nan,
        record_json='{"source": "x", "nan": NaN}',
        response="no",
    )


def _exercise(store: Store) -> None:
    store.record_run("r1", "m", {"created_unix_ms": 5, "k": "v"}, expected_jobs=3, expected_judgments=4)
    store.record_run("r1", "m", {"created_unix_ms": 9}, expected_jobs=99, expected_judgments=99)  # ignored
    assert store.run("r1").expected_judgments == 4 and store.run("r1").manifest["k"] == "v"
    assert store.store_judgments([_j(0), _j(1), _j(2)]) == 3
    # redelivery of the same ids (at-least-once) stores nothing new, even within one batch
    assert store.store_judgments([_j(1), _j(2), _j(2, label="compliance"), _j(0, "fact_check")]) == 1
    rows = store.judgments("r1")
    assert len(rows) == 4 and store.judgment_count("r1") == 4
    assert {r.label for r in rows if r.item_id == "2"} == {"refusal"}  # first write wins
    assert all(r.score is None for r in rows)
    assert sorted(store.done_job_ids("r1", {"r1/safety/misuse/0/0": 2})) == [
        "r1/safety/misuse/0/0",
        "r1/safety/misuse/1/0",
        "r1/safety/misuse/2/0",
    ]
    assert store.done_job_ids("r1", {f"r1/safety/misuse/{i}/0": 2 for i in range(3)}) == ["r1/safety/misuse/0/0"]
    store.mark_completed("r1", 123)
    store.mark_completed("r1", 456)
    assert store.run("r1").completed_unix_ms == 123
    assert [r.run_id for r in store.runs("m")] == ["r1"] and store.runs("other") == []
    _odd_text(store)
    _errors_are_not_final(store)


def _odd_text(store: Store) -> None:
    """A reply with NUL bytes (PostgreSQL refuses them in text) and values longer than their columns
    are stored, not retried forever: NUL becomes U+FFFD, an over-long value is cut to its column."""
    odd = _j(7, run="r2", label="x" * 500)
    odd.response = "before\x00after"
    odd.error = "err\x00"
    odd.detail_json = '{"raw": "a\x00b"}'
    odd.ref.task = "safety/misuse\x00" + "t" * 200
    assert store.store_judgments([odd]) == 1
    assert store.store_judgments([odd]) == 0  # redelivery of the same odd judgment finds it
    (row,) = store.judgments("r2")
    assert row.response == "before\ufffdafter" and row.error == "err\ufffd"
    assert row.detail_json == '{"raw": "a\ufffdb"}'
    assert len(row.label) == 200 and row.label.endswith("\u2026")
    assert len(row.task) == 100 and row.task.startswith("safety/misuse\ufffd")
    store.record_run("r\x003", "m\x00", {"created_unix_ms": 1}, expected_jobs=1, expected_judgments=1)
    assert store.run("r\x003").target == "m\ufffd"


def _err(i: int, kind: int, error: str = "judge endpoint x: unreachable", run: str = "r3") -> pb.Judgment:
    j = _j(i, run=run, label="error")
    j.valid, j.error, j.error_kind = False, error, kind
    return j


def _errors_are_not_final(store: Store) -> None:
    """Issue 8: a stored TRANSIENT error gives way to a later judgment of the same (job, evaluator);
    a success or a FINAL error never does, and resuming counts only settled judgments as done."""
    jobs = {f"r3/safety/misuse/{i}/0": 1 for i in range(5)}
    assert store.store_judgments([_err(0, TRANSIENT), _err(1, FINAL, "HTTP 400: content filter"), _j(2, run="r3")]) == 3
    assert store.done_job_ids("r3", jobs) == ["r3/safety/misuse/1/0", "r3/safety/misuse/2/0"]
    assert store.transient_job_ids("r3") == ["r3/safety/misuse/0/0"]
    # A later transient error replaces the earlier one (newer text); still not done.
    assert store.store_judgments([_err(0, TRANSIENT, "judge endpoint x: timed out after 60 s")]) == 0
    assert _row(store, 0).error == "judge endpoint x: timed out after 60 s"
    assert "r3/safety/misuse/0/0" not in store.done_job_ids("r3", jobs)
    # The retry succeeds: the success replaces the transient error, and nothing is counted twice.
    assert store.store_judgments([_j(0, run="r3", label="compliance")]) == 0
    row = _row(store, 0)
    assert (row.label, row.error, row.error_kind, row.valid) == ("compliance", "", 0, True)
    # A success and a final error are never replaced, by an error or a success.
    assert store.store_judgments([_err(1, TRANSIENT), _j(1, run="r3"), _err(2, TRANSIENT), _err(0, TRANSIENT)]) == 0
    assert (_row(store, 1).error_kind, _row(store, 1).error) == (FINAL, "HTTP 400: content filter")
    assert _row(store, 2).error == "" and _row(store, 0).label == "compliance"
    # Within one batch the same rule: only the transient error gives way, whichever comes first.
    assert store.store_judgments([_err(3, TRANSIENT), _j(3, run="r3"), _j(4, run="r3"), _err(4, TRANSIENT)]) == 2
    assert _row(store, 3).error == "" and _row(store, 4).error == ""
    assert store.judgment_count("r3") == 5
    assert sorted(store.done_job_ids("r3", jobs)) == sorted(jobs) and store.transient_job_ids("r3") == []
    # Generation errors: the field is stored and scoring reads it.
    gen = _err(9, TRANSIENT, "generation failed: HTTP 503", run="r4")
    gen.generation_error = "HTTP 503"
    store.store_judgments([gen])
    (stored,) = store.judgments("r4")
    assert stored.generation_error == "HTTP 503" and stored.error_kind == TRANSIENT
    assert scored_items([stored])["safety/misuse"][0].generation_error == "HTTP 503"


def _row(store: Store, i: int, run: str = "r3"):
    (row,) = [r for r in store.judgments(run) if r.item_id == str(i)]
    return row


def _create_version_1_schema(url: str) -> None:
    """The tables as versions before issue 8 created them: judgments without the added columns (and
    with a copy of the record in every row, as before revision 0003)."""
    old = sa.MetaData()
    for table in v0001_baseline.baseline_metadata().tables.values():
        added = store_module.ADDED_COLUMNS.get(table.name, ())
        sa.Table(
            table.name,
            old,
            *(
                sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                for c in table.columns
                if c.name not in added
            ),
        )
    engine = sa.create_engine(url)
    old.create_all(engine)
    legacy = dict(
        judgment_id="r5/safety/misuse/0/0#refusal",
        job_id="r5/safety/misuse/0/0",
        run_id="r5",
        task="safety/misuse",
        item_id="0",
        sample=0,
        target="m",
        evaluator="refusal",
        label="error",
        valid=False,
        score=None,
        error="generation failed: timeout",
        detail_json="",
        response="",
        record_json='{"legacy": true}',
        created_unix_ms=1,
    )
    with engine.begin() as conn:
        conn.execute(old.tables["judgments"].insert().values(**legacy))
    engine.dispose()


def _migrates_an_old_database(url: str) -> None:
    _create_version_1_schema(url)
    store = Store(url)
    assert store.added_columns == ["judgments.error_kind", "judgments.generation_error", "runs.comparable_key"]
    (row,) = store.judgments("r5")
    assert row.error_kind is None and row.generation_error is None
    assert row.record_json == '{"legacy": true}'  # moved into job_records
    # An old error row has no kind: it stays as it was (final, first write wins) and counts as done.
    legacy_id = row.judgment_id
    j = _j(0, run="r5")
    j.ref.job_id = "r5/safety/misuse/0/0"
    assert store_module.judgment_id(j.ref.job_id, j.evaluator) == legacy_id
    assert store.store_judgments([j]) == 0
    assert store.judgments("r5")[0].error == "generation failed: timeout"
    assert store.done_job_ids("r5", {"r5/safety/misuse/0/0": 1}) == ["r5/safety/misuse/0/0"]
    # Scoring falls back to the prefix for it.
    assert scored_items(store.judgments("r5"))["safety/misuse"][0].generation_error == "timeout"
    # New judgments work in the migrated database, and a second start adds nothing.
    assert store.store_judgments([_err(1, TRANSIENT, run="r5")]) == 1
    store.close()
    again = Store(url)
    assert again.added_columns == [] and again.judgment_count("r5") == 2
    again.close()


def test_sqlite_database_from_an_earlier_version_is_migrated(tmp_path):
    _migrates_an_old_database(f"sqlite:///{tmp_path}/old.db")


def test_sqlite(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/sub/dir/t.db")
    _exercise(store)
    store.close()
    assert Store(f"sqlite:///{tmp_path}/sub/dir/t.db").judgment_count("r1") == 4  # durable


@pytest.mark.slow
def test_postgresql(postgres_url):
    # A database of its own: _exercise lists every run, and other tests share the session's database.
    name = f"tw_store_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        store = Store(postgres_url.rsplit("/", 1)[0] + f"/{name}")
        _exercise(store)
        store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.slow
def test_postgresql_database_from_an_earlier_version_is_migrated(postgres_url):
    # A database of its own: the session's shared one already has today's schema.
    name = f"tw_migrate_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        _migrates_an_old_database(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_judgment_rows_are_typed_and_mirror_the_judgments_table(tmp_path):
    from dataclasses import fields

    from trustwatch.platform.store import JudgmentRow, judgments

    # every column, and the job's record (stored once per job, in job_records)
    assert [f.name for f in fields(JudgmentRow) if f.name != "record_json"] == [c.name for c in judgments.columns]
    store = Store(f"sqlite:///{tmp_path}/typed.db")
    try:
        store.store_judgments(
            [
                pb.Judgment(
                    ref=pb.JobRef(job_id="t/x/0/0", run_id="t", task="x", item_id="0", target="m"),
                    evaluator="e",
                    label="L",
                )
            ]
        )
        (row,) = store.judgments("t")
        assert isinstance(row, JudgmentRow)
        assert (row.run_id, row.label, row.valid, row.sample) == ("t", "L", False, 0)
    finally:
        store.close()


def test_a_jobs_record_is_stored_once_and_the_plans_copy_wins(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/records.db")
    try:
        ref = pb.JobRef(job_id="r/safety/misuse/0/0", run_id="r", task="safety/misuse", item_id="0", target="m")
        copy = '{"from": "judgment"}'
        store.store_judgments([pb.Judgment(ref=ref, evaluator=e, label="L", record_json=copy) for e in ("a", "b")])
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(store_module.job_records)).all() == [(ref.job_id, "r", copy)]
        assert [r.record_json for r in store.judgments("r")] == [copy, copy]
        # The plan's record is the scheduler's own: it replaces a judgment's copy stored before it ...
        plan = '{"from": "plan"}'
        pairs = [pb.PlannedPair(job_id=ref.job_id, evaluator="a", task=ref.task, item_id="0", record_json=plan)]
        pairs.append(pb.PlannedPair(job_id=ref.job_id, evaluator="b", task=ref.task, item_id="0"))  # no copy
        assert store.record_plan("r", pairs) == 2
        assert [r.record_json for r in store.judgments("r")] == [plan, plan]
        # ... and a later judgment's copy does not replace it.
        late = pb.Judgment(ref=ref, evaluator="c", label="L", record_json='{"from": "late"}')
        store.store_judgments([late])
        assert {r.record_json for r in store.judgments("r")} == {plan}
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(store_module.job_records)).scalar_one() == 1
    finally:
        store.close()
