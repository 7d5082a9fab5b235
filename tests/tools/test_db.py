"""`trustwatch db upgrade|current|prune`: upgrade creates or adopts the schema and is idempotent,
current says where it stands (exit 1 when behind), prune clears old replies (a dry run changes
nothing), and no database password is ever printed."""

from __future__ import annotations

import json
import math

import sqlalchemy as sa

from trustwatch import cli
from trustwatch.platform import migrate as schema
from trustwatch.platform.messages import now_ms
from trustwatch.platform.store import PRUNED_RESPONSE, Store
from trustwatch.v1 import messages_pb2 as pb

DAY = 86_400_000


def test_upgrade_then_current(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    assert cli.main(["db", "current", "--db", db]) == 1
    assert "revision none (empty)" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "--db", db]) == 0
    assert f"schema upgraded from empty to revision {schema.head()}" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "--db", db]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(["db", "current", "--db", db]) == 0
    assert f"revision {schema.head()}; newest {schema.head()} (up to date)" in capsys.readouterr().out


def test_upgrade_adopts_a_database_from_before_migrations(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    engine = sa.create_engine(db)
    with engine.begin() as conn:  # the runs table of the first release, alone
        conn.execute(
            sa.text(
                "CREATE TABLE runs (run_id VARCHAR(300) PRIMARY KEY, target VARCHAR(200) NOT NULL, "
                "manifest_json TEXT NOT NULL, expected_jobs INTEGER NOT NULL, expected_judgments INTEGER NOT NULL, "
                "created_unix_ms BIGINT NOT NULL, completed_unix_ms BIGINT)"
            )
        )
    engine.dispose()
    assert cli.main(["db", "current", "--db", db]) == 1
    assert "tables from before migrations" in capsys.readouterr().out
    assert cli.main(["db", "upgrade", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "adopted a database from before migrations (added columns: runs.comparable_key" in out
    assert f"to revision {schema.head()}" in out
    assert cli.main(["db", "current", "--db", db]) == 0


def test_prune(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    store = Store(db)
    created = now_ms() - 40 * DAY
    store.record_run("r", "m", {"created_unix_ms": created}, 1, 1)
    store.store_judgments(
        [
            pb.Judgment(
                ref=pb.JobRef(job_id="r/safety/misuse/0/0", run_id="r", task="safety/misuse", item_id="0", target="m"),
                evaluator="refusal",
                label="refusal",
                valid=True,
                score=math.nan,
                response="the raw reply",
                record_json="{}",
            )
        ]
    )
    store.close()
    assert cli.main(["db", "prune", "--db", db, "--older-than-days", "30", "--dry-run"]) == 0
    assert "would clear 1 response(s)" in capsys.readouterr().out
    assert [j.response for j in Store(db).judgments("r")] == ["the raw reply"]
    assert cli.main(["db", "prune", "--db", db, "--older-than-days", "30", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["runs"], result["responses"], result["dry_run"]) == (["r"], 1, False)
    assert [j.response for j in Store(db).judgments("r")] == [PRUNED_RESPONSE]
    assert cli.main(["db", "prune", "--db", db, "--older-than-days", "0"]) == 2
    assert "--older-than-days must be positive" in capsys.readouterr().err


def test_no_password_is_printed(capsys) -> None:
    # Nothing listens on port 1 of loopback: the connection is refused at once.
    db = "postgresql+psycopg://trustwatch:s3cr3t-pw@127.0.0.1:1/results"
    for command in (["db", "upgrade"], ["db", "current"], ["db", "prune", "--older-than-days", "1"]):
        assert cli.main([*command, "--db", db]) == 2
        captured = capsys.readouterr()
        assert "s3cr3t-pw" not in captured.out + captured.err
        assert "trustwatch:***@127.0.0.1:1/results: OperationalError" in captured.err
