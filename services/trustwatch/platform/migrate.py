"""Schema migrations of the results database: Alembic, configured in code, with the revisions in
``trustwatch/platform/migrations/versions``.

Three kinds of database meet :func:`upgrade`:

* empty: ``upgrade head`` creates the schema (revision 0001 and every later one);
* made before migrations (trustwatch's tables, no ``alembic_version``): *adopted* first: the tables,
  nullable columns and indexes of the baseline revision it lacks are added (what ``create_all`` and
  the in-place ADD COLUMNs of earlier versions did; a missing NOT NULL column is an error, with what
  to do), it is stamped at the baseline revision, then upgraded to head;
* versioned: upgraded to head (nothing to do when it is there already; that check reads one row and
  takes no lock, so opening a current database costs nothing).

Concurrency: the upgrade runs in one transaction on one connection; on PostgreSQL it first takes a
transaction-scoped advisory lock (:data:`LOCK_KEY`) and reads the version again, so replicas that
start together upgrade once and the others find the schema current. PostgreSQL's DDL is
transactional: a failed upgrade leaves the schema as it was. SQLite (embedded, one process) has
neither; a second process that finds the file locked retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from trustwatch.platform.migrations.versions import v0001_baseline

log = logging.getLogger(__name__)

#: Where the revisions live (inside the package, so an installed trustwatch can migrate).
SCRIPT_LOCATION = Path(__file__).resolve().with_name("migrations")
#: The revision a database made before migrations is stamped at once adopted.
BASELINE = v0001_baseline.revision
#: The key of the PostgreSQL advisory lock held while the schema is upgraded ("trustwat" in ASCII).
LOCK_KEY = 0x7472757374776174
#: SQLite: attempts when another process holds the file's lock.
_SQLITE_ATTEMPTS = 10


class MigrationError(RuntimeError):
    """The schema cannot be brought to (or is not at) the revision this trustwatch needs; the message
    says what to do."""


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revision (None: unversioned), the head this trustwatch knows,
    and whether it holds tables of a version before migrations (unversioned but not empty)."""

    current: str | None
    head: str
    legacy: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did: the revision before and after, and for an adopted database the
    columns, tables and indexes it added ("table.column", "table", "table.index")."""

    before: str | None
    after: str | None
    adopted: bool = False
    added_columns: list[str] = field(default_factory=list)
    added_tables: list[str] = field(default_factory=list)
    added_indexes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.adopted


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: the revisions' folder and (to run them) the connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this trustwatch knows."""
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise MigrationError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def revisions() -> list[str]:
    """Every known revision, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _state(conn: Connection) -> SchemaState:
    current = _current(conn)
    legacy = False
    if current is None:
        have = set(sa.inspect(conn).get_table_names())
        legacy = bool(have & set(v0001_baseline.baseline_metadata().tables))
    return SchemaState(current, head(), legacy)


def state(engine: Engine) -> SchemaState:
    """Where ``engine``'s database stands (reads only)."""
    with engine.connect() as conn:
        return _state(conn)


def check(engine: Engine) -> SchemaState:
    """The database's state when it is at head; else :class:`MigrationError` saying what to run."""
    st = state(engine)
    if not st.up_to_date:
        _known(st.current)
        at = st.current or ("a schema from before migrations" if st.legacy else "no schema")
        raise MigrationError(
            f"the results database is at {at}, this trustwatch needs revision {st.head}: run "
            "`trustwatch db upgrade` (or set TRUSTWATCH_DB_MIGRATE=auto to let services upgrade it)"
        )
    return st


def _known(revision: str | None) -> None:
    if revision is not None and revision not in revisions():
        raise MigrationError(
            f"the results database is at revision {revision!r}, which this trustwatch does not know "
            f"(its newest is {head()}): a newer trustwatch migrated it; run that version"
        )


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction; on PostgreSQL holding the migration lock until it ends."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield conn


def adopt(conn: Connection) -> tuple[list[str], list[str], list[str]]:
    """Bring a database made before migrations to the baseline revision: create the baseline tables
    it lacks, add the nullable columns and the indexes its tables lack. Returns the added columns,
    tables and indexes (sorted). Stamping is the caller's."""
    baseline = v0001_baseline.baseline_metadata()
    inspector = sa.inspect(conn)
    have_tables = set(inspector.get_table_names())
    columns: list[str] = []
    tables: list[str] = []
    indexes: list[str] = []
    for table in baseline.sorted_tables:
        if table.name not in have_tables:
            table.create(conn)
            tables.append(table.name)
            continue
        have_cols = {c["name"] for c in inspector.get_columns(table.name)}
        for col in table.columns:
            if col.name in have_cols:
                continue
            if not col.nullable:
                raise MigrationError(
                    f"{table.name}.{col.name} is missing and NOT NULL, so it cannot be added in place: this "
                    "database was not made by trustwatch (or was changed by hand); restore the column or "
                    "start from an empty database"
                )
            ddl = f"ALTER TABLE {table.name} ADD COLUMN {col.name} {col.type.compile(dialect=conn.dialect)}"
            conn.execute(sa.text(ddl))
            columns.append(f"{table.name}.{col.name}")
        have_ix = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have_ix:
                index.create(conn)
                indexes.append(f"{table.name}.{index.name}")
    return sorted(columns), sorted(tables), sorted(indexes)


def _upgrade_once(engine: Engine, revision: str) -> UpgradeResult:
    with _locked(engine) as conn:
        st = _state(conn)  # again, under the lock: another replica may have upgraded meanwhile
        _known(st.current)
        cfg = alembic_config(conn)
        columns: list[str] = []
        tables: list[str] = []
        indexes: list[str] = []
        if st.current is None and st.legacy:
            columns, tables, indexes = adopt(conn)
            command.stamp(cfg, BASELINE)
            log.warning(
                "results database from before migrations adopted at revision %s (added columns %s, tables %s, "
                "indexes %s)",
                BASELINE,
                ", ".join(columns) or "none",
                ", ".join(tables) or "none",
                ", ".join(indexes) or "none",
            )
        before = BASELINE if st.current is None and st.legacy else st.current
        command.upgrade(cfg, revision)
        after = _current(conn)
    if before != after:
        log.info("results database schema upgraded from %s to %s", before or "empty", after)
    return UpgradeResult(st.current, after, st.current is None and st.legacy, columns, tables, indexes)


def upgrade(engine: Engine, revision: str = "head") -> UpgradeResult:
    """Bring the database to ``revision`` (default the newest), adopting one made before migrations
    (see the module's doc). Idempotent; safe when several processes start together."""
    if revision == "head":
        st = state(engine)
        if st.up_to_date:
            return UpgradeResult(st.current, st.current)
    for attempt in range(_SQLITE_ATTEMPTS):
        try:
            return _upgrade_once(engine, revision)
        except sa.exc.OperationalError as exc:
            locked = engine.dialect.name == "sqlite" and "locked" in str(exc).lower()
            if not locked or attempt == _SQLITE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def downgrade(engine: Engine, revision: str) -> UpgradeResult:
    """Take the database back to ``revision`` ("base": no tables). Loses what later revisions hold."""
    with _locked(engine) as conn:
        before = _current(conn)
        command.downgrade(alembic_config(conn), revision)
        after = _current(conn)
    return UpgradeResult(before, after)
