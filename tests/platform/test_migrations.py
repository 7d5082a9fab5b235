"""Schema migrations (trustwatch.platform.migrate, Alembic): a fresh database upgraded to head has
exactly the tables of store.metadata (autogenerate finds no difference); a database made before
migrations (create_all, columns added in place, no alembic_version) is adopted, stamped and upgraded
with its rows intact; the revision chain goes up and down; a service told not to migrate refuses a
schema that is behind; replicas upgrading one PostgreSQL database together do it once. Each case
runs on SQLite and (marker slow) on a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.harness.postgres import own_database
from trustwatch.platform import migrate as schema
from trustwatch.platform import store as store_module
from trustwatch.platform.migrations.versions import v0001_baseline
from trustwatch.platform.store import Store


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, store_module.metadata)
    engine.dispose()
    return list(diff)


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        return schema.state(engine).current
    finally:
        engine.dispose()


def _tables(url: str) -> dict[str, set[str]]:
    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    out = {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    engine.dispose()
    return out


def _fresh_upgrade_matches_the_store(url: str) -> None:
    engine = sa.create_engine(url)
    result = schema.upgrade(engine)
    engine.dispose()
    assert (result.before, result.after, result.adopted) == (None, schema.head(), False)
    assert _revision(url) == schema.head() == "0003"
    have = _tables(url)
    assert set(have) == set(store_module.metadata.tables) | {"alembic_version"}
    for name, table in store_module.metadata.tables.items():
        assert have[name] == {c.name for c in table.columns}, name
    assert _diff(url) == []  # types, nullability, indexes and constraints too
    # Opening it again changes nothing (the fast path) and the store works.
    store = Store(url)
    assert store.added_columns == [] and store.runs() == []
    store.close()


def _create_pre_migration_schema(url: str, drop_tables: tuple[str, ...] = ("comparisons", "baselines")) -> None:
    """A database as an early version left it: no alembic_version, no indexes, the columns added in
    place later missing, and the tables of later features not there yet; with one run."""
    old = sa.MetaData()
    for table in v0001_baseline.baseline_metadata().sorted_tables:
        if table.name in drop_tables:
            continue
        added = store_module.ADDED_COLUMNS.get(table.name, ())
        sa.Table(
            table.name,
            old,
            *(
                sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                for c in table.columns
                if c.name not in added
            ),
            # dead_letters' unique source was there from the start (its inserts rely on it)
            *(
                sa.UniqueConstraint(*(c.name for c in uc.columns), name=uc.name)
                for uc in table.constraints
                if isinstance(uc, sa.UniqueConstraint)
            ),
        )
    engine = sa.create_engine(url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            old.tables["runs"]
            .insert()
            .values(
                run_id="old-run",
                target="m",
                manifest_json="{}",
                expected_jobs=1,
                expected_judgments=1,
                created_unix_ms=5,
                completed_unix_ms=6,
            )
        )
    engine.dispose()


def _pre_migration_database_is_adopted(url: str) -> None:
    _create_pre_migration_schema(url)
    assert _revision(url) is None
    engine = sa.create_engine(url)
    assert schema.state(engine).legacy
    result = schema.upgrade(engine)
    engine.dispose()
    assert result.adopted and result.after == schema.head()
    assert result.added_columns == ["judgments.error_kind", "judgments.generation_error", "runs.comparable_key"]
    assert result.added_tables == ["baselines", "comparisons"]
    assert "runs.ix_runs_comparable_key" in result.added_indexes
    assert _revision(url) == schema.head()
    assert _diff(url) == []
    store = Store(url)
    (run,) = store.runs()
    assert (run.run_id, run.completed_unix_ms, run.pruned_unix_ms) == ("old-run", 6, None)
    store.pin_baseline("old-run")  # a table the adoption created works
    assert store.baseline("m") is not None and store.added_columns == []
    store.close()


def _pre_migration_database_opened_by_a_store(url: str) -> None:
    """Embedded mode: Store(url) alone adopts it (what earlier versions did in place)."""
    _create_pre_migration_schema(url, drop_tables=())
    store = Store(url)
    assert store.added_columns == ["judgments.error_kind", "judgments.generation_error", "runs.comparable_key"]
    assert [r.run_id for r in store.runs()] == ["old-run"]
    store.close()
    assert _revision(url) == schema.head() and _diff(url) == []


def _chain_goes_up_and_down(url: str) -> None:
    engine = sa.create_engine(url)
    assert schema.revisions() == ["0001", "0002", "0003"]
    schema.upgrade(engine, "0001")
    assert _revision(url) == "0001" and "pruned_unix_ms" not in _tables(url)["runs"]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_id, target, manifest_json, expected_jobs, expected_judgments, "
                "created_unix_ms) VALUES ('r', 'm', '{}', 1, 1, 7)"
            )
        )
    assert schema.upgrade(engine, "0002").after == "0002"
    assert "pruned_unix_ms" in _tables(url)["runs"]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET pruned_unix_ms = 9"))
    down = schema.downgrade(engine, "0001")
    assert (down.before, down.after) == ("0002", "0001")
    have = _tables(url)
    assert "pruned_unix_ms" not in have["runs"]
    with engine.connect() as conn:  # the rows survive the batch copy on SQLite
        assert conn.execute(sa.text("SELECT run_id, created_unix_ms FROM runs")).all() == [("r", 7)]
        idx = {ix["name"] for ix in sa.inspect(conn).get_indexes("runs")}
    assert "ix_runs_comparable_key" in idx
    schema.upgrade(engine, "0002")
    _records_move_to_job_records_and_back(engine)
    schema.downgrade(engine, "base")
    assert set(_tables(url)) <= {"alembic_version"} and _revision(url) is None
    schema.upgrade(engine)
    engine.dispose()
    assert _revision(url) == "0003" and _diff(url) == []


_JUDGMENT = (
    "INSERT INTO judgments (judgment_id, job_id, run_id, task, item_id, sample, target, evaluator, label, valid, "
    "error, detail_json, response, record_json, created_unix_ms) VALUES "
    "(:id, :job, 'r', 't', '0', 0, 'm', :ev, 'L', TRUE, '', '', 'reply', :rec, 1)"
)
_PAIR = (
    "INSERT INTO plan_pairs (judgment_id, run_id, job_id, evaluator, task, item_id, sample, record_json) "
    "VALUES (:id, 'r', :job, :ev, 't', '0', 0, :rec)"
)


def _records_move_to_job_records_and_back(engine: sa.Engine) -> None:
    """0003 stores each job's record once (the plan's where there is one, else a judgment's) and drops
    the per-row copies; its downgrade puts a copy back into every row."""
    with engine.begin() as conn:
        for job, ev, rec in [("a", "e1", '{"plan": 1}'), ("a", "e2", "")]:  # a plan: record on its first pair
            conn.execute(sa.text(_PAIR), dict(id=f"{job}#{ev}", job=job, ev=ev, rec=rec))
        for job, ev, rec in [("a", "e1", '{"copy": 1}'), ("a", "e2", '{"copy": 1}'), ("b", "e1", '{"b": 2}')]:
            conn.execute(sa.text(_JUDGMENT), dict(id=f"{job}#{ev}", job=job, ev=ev, rec=rec))
    assert schema.upgrade(engine).after == "0003"
    tables = sa.inspect(engine).get_table_names()
    assert "job_records" in tables
    with engine.connect() as conn:
        assert "record_json" not in {c["name"] for c in sa.inspect(conn).get_columns("judgments")}
        assert "record_json" not in {c["name"] for c in sa.inspect(conn).get_columns("plan_pairs")}
        moved = conn.execute(sa.text("SELECT job_id, run_id, record_json FROM job_records ORDER BY job_id")).all()
        assert moved == [("a", "r", '{"plan": 1}'), ("b", "r", '{"b": 2}')]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM judgments")).scalar_one() == 3
    assert (schema.downgrade(engine, "0002").after) == "0002"
    with engine.connect() as conn:
        back = conn.execute(sa.text("SELECT judgment_id, record_json FROM judgments ORDER BY judgment_id")).all()
        assert back == [("a#e1", '{"plan": 1}'), ("a#e2", '{"plan": 1}'), ("b#e1", '{"b": 2}')]
        pairs = conn.execute(sa.text("SELECT judgment_id, record_json FROM plan_pairs ORDER BY judgment_id")).all()
        assert pairs == [("a#e1", '{"plan": 1}'), ("a#e2", '{"plan": 1}')]
        assert "job_records" not in sa.inspect(conn).get_table_names()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM judgments"))
        conn.execute(sa.text("DELETE FROM plan_pairs"))


def _migrate_off_checks_the_schema(url: str) -> None:
    with pytest.raises(schema.MigrationError, match="trustwatch db upgrade"):
        Store(url, migrate=False)
    engine = sa.create_engine(url)
    schema.upgrade(engine, "0001")
    with pytest.raises(schema.MigrationError, match="at 0001.*needs revision 0003"):
        Store(url, migrate=False)
    schema.upgrade(engine)
    engine.dispose()
    store = Store(url, migrate=False)
    assert store.runs() == []
    store.close()


def _newer_revision_is_refused(url: str) -> None:
    engine = sa.create_engine(url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    for action in (lambda: schema.upgrade(engine), lambda: schema.check(engine)):
        with pytest.raises(schema.MigrationError, match="newer trustwatch"):
            action()
    engine.dispose()


CASES: list[Callable[[str], None]] = [
    _fresh_upgrade_matches_the_store,
    _pre_migration_database_is_adopted,
    _pre_migration_database_opened_by_a_store,
    _chain_goes_up_and_down,
    _migrate_off_checks_the_schema,
    _newer_revision_is_refused,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_sqlite(tmp_path, case: Callable[[str], None]) -> None:
    case(f"sqlite:///{tmp_path}/t.db")


def test_a_missing_not_null_column_is_not_adopted(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE runs (run_id VARCHAR(300) PRIMARY KEY)"))
    with pytest.raises(schema.MigrationError, match="runs.target is missing and NOT NULL"):
        schema.upgrade(engine)
    engine.dispose()
    assert _revision(url) is None  # not stamped


def test_the_store_schema_needs_a_revision_for_every_change() -> None:
    """store.metadata minus what later revisions add is the frozen baseline: a column added to the
    store without a revision fails this (and _fresh_upgrade_matches_the_store)."""
    later = {"runs": {"pruned_unix_ms"}}  # 0002
    dropped = {"judgments": {"record_json"}, "plan_pairs": {"record_json"}}  # 0003
    later_tables = {"job_records"}  # 0003
    base = v0001_baseline.baseline_metadata()
    assert set(base.tables) == set(store_module.metadata.tables) - later_tables
    for name, table in base.tables.items():
        now = {c.name for c in store_module.metadata.tables[name].columns}
        assert now - later.get(name, set()) == {c.name for c in table.columns} - dropped.get(name, set())


# -- PostgreSQL -------------------------------------------------------------------------------------


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """A database of its own in the session's PostgreSQL cluster (the shared one has today's schema)."""
    with own_database(postgres_url) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_postgresql(pg_database: str, case: Callable[[str], None]) -> None:
    case(pg_database)


@pytest.mark.slow
def test_postgresql_replicas_starting_together_upgrade_once(pg_database: str) -> None:
    """Four processes' worth of engines upgrade one empty database at once: the advisory lock lets one
    create the schema; the others wait, find it current and change nothing (without the lock two
    would both CREATE TABLE and fail)."""
    results: list[schema.UpgradeResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def replica() -> None:
        engine = sa.create_engine(pg_database)
        try:
            start.wait()
            results.append(schema.upgrade(engine))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    head = schema.head()
    assert sorted((r.before or "empty", r.after) for r in results) == [(head, head)] * 3 + [("empty", head)]
    assert _diff(pg_database) == []
