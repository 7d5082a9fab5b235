"""A throw-away real PostgreSQL cluster for tests: initdb in a temporary folder, pg_ctl on a free port.

    with PostgresCluster() as pg:
        engine = sqlalchemy.create_engine(pg.url)

PostgreSQL refuses to run as root. When the tests run as root, the server binaries run as the
``postgres`` OS user (``runuser -u postgres --``) on a folder owned by that user; otherwise they run
as the current user. Clients connect over TCP on 127.0.0.1 with trust authentication, as the
database superuser ``trustwatch``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from trustwatch.tools.stack.kafka_process import free_port, log_tail

SUPERUSER = "trustwatch"
OS_USER_WHEN_ROOT = "postgres"


class PostgresStartError(RuntimeError):
    """The cluster could not be created or started."""


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        res = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if res.returncode == 0:
            candidates.append(Path(res.stdout.strip()))
    # Debian keeps the server binaries out of PATH, under one folder per major version.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [
        Path(p)
        for p in sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
        if Path(p).parent.name.isdigit()
    ]
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    raise PostgresStartError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install the `postgresql` package "
        f"(looked in: {', '.join(map(str, candidates)) or 'nothing: no pg_config, no /usr/lib/postgresql'})"
    )


class PostgresCluster:
    """One cluster on 127.0.0.1 with one database; its folder is deleted by :meth:`stop`."""

    def __init__(self, database: str = "trustwatch_test", startup_timeout: float = 60.0) -> None:
        self.database = database
        self.startup_timeout = startup_timeout
        self.port = 0
        self.startup_seconds = 0.0  # initdb + start + createdb
        self._bindir: Path | None = None
        self._dir: Path | None = None
        self._running = False
        self._os_user = OS_USER_WHEN_ROOT if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path | None:
        """The cluster's data folder (its ``postmaster.pid`` names the server's process), once started."""
        return self._dir / "data" if self._dir else None

    @property
    def log_path(self) -> Path | None:
        return self._dir / "postgres.log" if self._dir else None

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        cmd = [str(self._bindir / tool), *args]
        if self._os_user:
            cmd = ["runuser", "-u", self._os_user, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self._dir)
        if res.returncode != 0:
            tail = f"\n--- {self.log_path} (last lines) ---\n{log_tail(self.log_path)}" if self.log_path else ""
            raise PostgresStartError(f"{' '.join(cmd)} failed (exit {res.returncode}):\n{res.stdout}{res.stderr}{tail}")
        return res

    def start(self) -> str:
        """Create and start the cluster and the database; return the SQLAlchemy URL."""
        if self._running:
            return self.url
        began = time.monotonic()
        self._bindir = find_bindir()
        self._dir = Path(tempfile.mkdtemp(prefix="trustwatch-pg-"))
        if self._os_user:
            try:
                user = pwd.getpwnam(self._os_user)
            except KeyError:
                raise PostgresStartError(
                    f"running as root, and PostgreSQL refuses root: create the OS user {self._os_user!r} "
                    "(the Debian `postgresql` package does) or run the tests as an ordinary user"
                ) from None
            os.chown(self._dir, user.pw_uid, user.pw_gid)
        data = str(self._dir / "data")
        try:
            # -N: no fsync of the new files; a test cluster does not survive a power cut anyway.
            self._run("initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale", "-N")
            self.port = free_port()
            # The unix socket goes into the temporary folder (/var/run/postgresql may not be writable);
            # durability settings are off because speed matters more than crash safety here.
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self._run(
                "pg_ctl",
                "-D",
                data,
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(int(self.startup_timeout)),
                "start",
            )
            self._running = True
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, self.database)
        except (PostgresStartError, subprocess.TimeoutExpired):
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: disconnects clients) and delete the cluster's folder."""
        if self._running and self._dir is not None:
            try:
                self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "fast", "-w", "stop", timeout=60)
            except (PostgresStartError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "immediate", "-w", "stop", timeout=60)
            self._running = False
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- faults (tests/e2e/faults): more databases, and the server restarted under its clients ----------

    def create_database(self, name: str) -> str:
        """Create another database in this cluster; returns its SQLAlchemy URL."""
        if not self._running:
            raise RuntimeError("cluster not started")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def restart(self, down_s: float = 0.0, mode: str = "fast") -> None:
        """Stop the server (``mode``: fast, or immediate: a crash), stay down ``down_s`` seconds, and
        start it again on the same folder and port; the data is kept."""
        if not self._running or self._dir is None:
            raise RuntimeError("cluster not started")
        data = str(self._dir / "data")
        self._run("pg_ctl", "-D", data, "-m", mode, "-w", "stop", timeout=60)
        time.sleep(down_s)
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", data, "-l", str(self.log_path), "-o", options, "-w", "start")

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def own_database(postgres_url: str) -> Iterator[str]:
    """A database of its own in the session's PostgreSQL cluster (the shared one holds other tests'
    rows), dropped afterwards; yields its URL."""
    name = f"tw_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
