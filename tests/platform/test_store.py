"""The results store on SQLite and on a real PostgreSQL: idempotent on ids, one code path."""

import math

import pytest

from trustwatch.platform.store import Store
from trustwatch.v1 import messages_pb2 as pb


def _j(i: int, evaluator: str = "refusal", label: str = "refusal", run: str = "r1") -> pb.Judgment:
    return pb.Judgment(job_id=f"{run}/safety/misuse/{i}/0", run_id=run, task="safety/misuse", item_id=str(i),
                       target="m", evaluator=evaluator, label=label, valid=True, score=math.nan,
                       record_json='{"source": "x", "nan": NaN}', response="no")


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
        "r1/safety/misuse/0/0", "r1/safety/misuse/1/0", "r1/safety/misuse/2/0"]
    assert store.done_job_ids("r1", {f"r1/safety/misuse/{i}/0": 2 for i in range(3)}) == ["r1/safety/misuse/0/0"]
    store.mark_completed("r1", 123)
    store.mark_completed("r1", 456)
    assert store.run("r1").completed_unix_ms == 123
    assert [r.run_id for r in store.runs("m")] == ["r1"] and store.runs("other") == []
    _odd_text(store)


def _odd_text(store: Store) -> None:
    """A reply with NUL bytes (PostgreSQL refuses them in text) and values longer than their columns
    are stored, not retried forever: NUL becomes U+FFFD, an over-long value is cut to its column."""
    odd = _j(7, run="r2", label="x" * 500)
    odd.response = "before\x00after"
    odd.error = "err\x00"
    odd.detail_json = '{"raw": "a\x00b"}'
    odd.task = "safety/misuse\x00" + "t" * 200
    assert store.store_judgments([odd]) == 1
    assert store.store_judgments([odd]) == 0  # redelivery of the same odd judgment finds it
    (row,) = store.judgments("r2")
    assert row.response == "before\ufffdafter" and row.error == "err\ufffd"
    assert row.detail_json == '{"raw": "a\ufffdb"}'
    assert len(row.label) == 200 and row.label.endswith("\u2026")
    assert len(row.task) == 100 and row.task.startswith("safety/misuse\ufffd")
    store.record_run("r\x003", "m\x00", {"created_unix_ms": 1}, expected_jobs=1, expected_judgments=1)
    assert store.run("r\x003").target == "m\ufffd"


def test_sqlite(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/sub/dir/t.db")
    _exercise(store)
    store.close()
    assert Store(f"sqlite:///{tmp_path}/sub/dir/t.db").judgment_count("r1") == 4  # durable


@pytest.mark.slow
def test_postgresql(postgres_url):
    store = Store(postgres_url)
    _exercise(store)
    store.close()
