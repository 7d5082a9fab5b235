"""`trustwatch db upgrade|current|prune`: the results database's schema (Alembic, see
:mod:`trustwatch.platform.migrate`) and retention (:meth:`Store.prune`). A database URL is shown
with its password as ``***``."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

import sqlalchemy as sa

from trustwatch.platform import config
from trustwatch.platform import migrate as schema
from trustwatch.platform.store import Store
from trustwatch.tools.stack.local import safe_db_url


class DbError(Exception):
    """A problem with the database or the arguments; printed without a traceback."""


def shown_url(url: str) -> str:
    """``url`` fit to print: its password as ``***`` (as every trustwatch command shows database URLs)."""
    return safe_db_url(url)


def _url(args: argparse.Namespace) -> str:
    return str(getattr(args, "db", None) or config.env("TRUSTWATCH_DB_URL"))


def cmd_db(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        if args.db_command == "upgrade":
            return _upgrade(url)
        if args.db_command == "current":
            return _current(url)
        if args.db_command == "prune":
            return _prune(url, args.older_than_days, args.dry_run, args.json)
    except schema.MigrationError as exc:
        raise DbError(f"{shown_url(url)}: {exc}") from None
    except sa.exc.SQLAlchemyError as exc:
        # the driver's message may quote the URL; say what failed without it
        raise DbError(
            f"{shown_url(url)}: {type(exc).__name__} (check the URL, that the server is up and the user may "
            "create tables)"
        ) from None
    raise DbError(f"unknown db command {args.db_command!r}")


def _upgrade(url: str) -> int:
    engine = sa.create_engine(url, future=True)
    try:
        result = schema.upgrade(engine)
    finally:
        engine.dispose()
    where = shown_url(url)
    if result.adopted:
        print(
            f"{where}: adopted a database from before migrations (added columns: "
            f"{', '.join(result.added_columns) or 'none'}; tables: {', '.join(result.added_tables) or 'none'})"
        )
    if result.before == result.after and not result.adopted:
        print(f"{where}: schema at revision {result.after} (the newest); nothing to do")
    else:
        print(f"{where}: schema upgraded from {result.before or 'empty'} to revision {result.after}")
    return 0


def _current(url: str) -> int:
    engine = sa.create_engine(url, future=True)
    try:
        st = schema.state(engine)
    finally:
        engine.dispose()
    at = st.current or ("none (tables from before migrations)" if st.legacy else "none (empty)")
    note = "up to date" if st.up_to_date else "run `trustwatch db upgrade`"
    print(f"{shown_url(url)}: revision {at}; newest {st.head} ({note})")
    return 0 if st.up_to_date else 1


def _prune(url: str, days: float, dry_run: bool, as_json: bool) -> int:
    if days <= 0:
        raise DbError(f"--older-than-days must be positive (got {days:g}); 0 would keep nothing")
    store = Store(url, migrate=config.db_migrate())
    try:
        result = store.prune(days, dry_run=dry_run)
    finally:
        store.close()
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    cutoff = datetime.fromtimestamp(result.cutoff_unix_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verb = "would clear" if dry_run else "cleared"
    print(
        f"{shown_url(url)}: runs created before {cutoff}: {len(result.runs)}; {verb} {result.responses} "
        f"response(s) and {result.dead_letter_payloads} replayed dead-letter payload(s)"
        + (" (dry run: nothing changed)" if dry_run else "")
    )
    return 0
