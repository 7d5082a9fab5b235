"""Exact completion on SQLite and a real PostgreSQL: a run's recorded plan of (job, evaluator) pairs
decides it (duplicates and extra rows never complete a run, missing pairs are listed); a POISON error
(dead-lettered message) is settled and gives way to a later judgment; dead letters are stored once per
source message and attributed to the planned pairs of their job."""

from __future__ import annotations

import math

import pytest

from tests.harness.postgres import own_database as own_postgres_database
from trustwatch.platform.store import DeadLetterRow, Store
from trustwatch.v1 import messages_pb2 as pb

POISON, TRANSIENT, FINAL = pb.ERROR_KIND_POISON, pb.ERROR_KIND_TRANSIENT, pb.ERROR_KIND_FINAL
TASK = "truthfulness/external"


def job(run: str, i: int) -> str:
    return f"{run}/{TASK}/{i}/0"


def pairs(run: str, n: int, evaluators: tuple[str, ...] = ("fact_check",)) -> list[pb.PlannedPair]:
    return [
        pb.PlannedPair(
            job_id=job(run, i), evaluator=e, task=TASK, item_id=str(i), sample=0, record_json=f'{{"i": {i}}}'
        )
        for i in range(n)
        for e in evaluators
    ]


def judgment(run: str, i: int, evaluator: str = "fact_check", kind: int = 0, label: str = "SUPPORT") -> pb.Judgment:
    j = pb.Judgment(
        ref=pb.JobRef(job_id=job(run, i), run_id=run, task=TASK, item_id=str(i), target="m"),
        evaluator=evaluator,
        label=label,
        valid=not kind,
        score=math.nan,
        record_json='{"answer": "SUPPORT"}',
    )
    if kind:
        j.error, j.error_kind = f"error of kind {kind}", kind
    return j


def planned_run(store: Store, run: str, n: int, evaluators: tuple[str, ...] = ("fact_check",)) -> None:
    manifest = {"created_unix_ms": 1, "completion": "planned_pairs"}
    store.record_run(run, "m", manifest, expected_jobs=n, expected_judgments=n * len(evaluators))
    store.record_plan(run, pairs(run, n, evaluators))


def _exact_completion(store: Store) -> None:
    planned_run(store, "p1", 3, ("fact_check", "refusal"))
    assert store.planned_count("p1") == 6
    assert store.record_plan("p1", pairs("p1", 3, ("fact_check", "refusal"))) == 0  # idempotent
    # Every evaluator but one pair settled, plus rows outside the plan (another evaluator, another
    # job) and duplicates: as many settled rows as expected, yet not complete.
    store.store_judgments(
        [judgment("p1", i, e) for i in range(3) for e in ("fact_check", "refusal") if (i, e) != (2, "refusal")]
    )
    store.store_judgments([judgment("p1", 0, "extra"), judgment("p1", 9), judgment("p1", 0)])
    assert store.settled_judgment_count("p1") >= store.run("p1").expected_judgments
    assert not store.is_complete("p1")
    assert store.missing_count("p1") == 1
    (missing,) = store.missing_pairs("p1")
    assert missing.to_dict() == {
        "job_id": job("p1", 2),
        "evaluator": "refusal",
        "task": TASK,
        "item_id": "2",
        "sample": 0,
    }
    # The exact resume rule: a job is done only when each of its named evaluators has settled.
    evaluators = {job("p1", i): ("fact_check", "refusal") for i in range(3)}
    assert [j for j in store.done_job_ids("p1", evaluators) if j in evaluators] == [job("p1", 0), job("p1", 1)]
    # A transient error does not settle the pair; a final error does.
    store.store_judgments([judgment("p1", 2, "refusal", TRANSIENT)])
    assert not store.is_complete("p1") and store.missing_count("p1") == 1
    store.store_judgments([judgment("p1", 2, "refusal", FINAL)])
    assert store.is_complete("p1") and store.missing_pairs("p1") == []

    # A plan not fully recorded yet (its PLANNED chunks still arriving) is never complete.
    store.record_run("p2", "m", {"created_unix_ms": 2, "completion": "planned_pairs"}, 2, 2)
    store.record_plan("p2", pairs("p2", 1))
    store.store_judgments([judgment("p2", 0), judgment("p2", 1)])
    assert store.missing_count("p2") == 0 and not store.is_complete("p2")
    assert store.missing_judgments(store.run("p2")) == 1  # the pair not recorded yet counts as missing
    store.record_plan("p2", pairs("p2", 2))
    assert store.is_complete("p2")

    # A run stored before plans existed keeps the count rule.
    store.record_run("old", "m", {"created_unix_ms": 3}, expected_jobs=2, expected_judgments=2)
    assert store.missing_judgments(store.run("old")) == 2
    store.store_judgments([judgment("old", 0), judgment("old", 1, "extra")])
    assert store.is_complete("old") and store.missing_judgments(store.run("old")) == 0


def _poison_rule(store: Store) -> None:
    planned_run(store, "q1", 3)
    # POISON is settled: the run completes with the item counted as an error.
    store.store_judgments([judgment("q1", 0), judgment("q1", 1, kind=POISON, label="error"), judgment("q1", 2)])
    assert store.is_complete("q1") and store.done_job_ids("q1", {job("q1", i): ("fact_check",) for i in range(3)}) == [
        job("q1", i) for i in range(3)
    ]
    # A later judgment (a replayed dead letter that now succeeds) replaces the poison row...
    assert store.store_judgments([judgment("q1", 1, label="REFUTE")]) == 0
    (row,) = [r for r in store.judgments("q1") if r.item_id == "1"]
    assert (row.label, row.error, row.error_kind) == ("REFUTE", "", 0)
    # ...but a poison row never replaces a success or a final error.
    store.store_judgments(
        [judgment("q1", 1, kind=POISON, label="error"), judgment("q1", 2, kind=POISON, label="error")]
    )
    assert {r.item_id: r.error_kind for r in store.judgments("q1")} == {"0": 0, "1": 0, "2": 0}
    # Within one batch: the poison row gives way whichever comes first.
    planned_run(store, "q2", 2)
    store.store_judgments(
        [
            judgment("q2", 0, kind=POISON, label="error"),
            judgment("q2", 0),
            judgment("q2", 1),
            judgment("q2", 1, kind=POISON),
        ]
    )
    assert {r.item_id: r.error_kind for r in store.judgments("q2")} == {"0": 0, "1": 0}


def dead_letter(offset: int, **fields) -> DeadLetterRow:
    base = dict(
        source_topic="trustwatch.completions",
        source_partition=0,
        source_offset=offset,
        key=b"k",
        payload=b"\x00\xffpayload",
        reason="cannot be processed: KeyError: 'x'",
        service="dispatcher",
        created_unix_ms=1000 + offset,
    )
    return DeadLetterRow(**{**base, **fields})


def _dead_letters(store: Store) -> None:
    planned_run(store, "d1", 3, ("fact_check", "refusal"))
    store.store_judgments([judgment("d1", 0, "fact_check")])
    # A completion's dead letter (the whole job), a judgment's (one evaluator), one known by key only.
    ids = store.store_dead_letters(
        [
            dead_letter(5, run_id="d1", job_id=job("d1", 0), record_json='{"answer": "SUPPORT"}'),
            dead_letter(
                6,
                source_topic="trustwatch.judgments",
                service="aggregator",
                run_id="d1",
                job_id=job("d1", 1),
                evaluator="refusal",
            ),
            dead_letter(7, job_id=job("d1", 2)),
        ]
    )
    assert len(set(ids)) == 3
    # Redelivery of the same source message stores nothing new and answers the first id.
    assert store.store_dead_letters([dead_letter(5, reason="again")]) == ids[:1]
    assert [d.reason for d in store.dead_letters(ids=ids[:1])] == ["cannot be processed: KeyError: 'x'"]
    stored = store.dead_letters(run_id="d1")
    assert [d.id for d in stored] == ids[:2] and stored[0].payload == b"\x00\xffpayload" and stored[0].key == b"k"
    # Candidates: every unsettled planned pair of each job (job 0's fact_check is settled; job 1: only
    # the dead-lettered evaluator), with the plan's record, not the payload's copy (which may be the poison).
    found = {(c.pair.job_id, c.pair.evaluator, c.dead_letter_id) for c in store.poison_candidates("d1")}
    assert found == {
        (job("d1", 0), "refusal", ids[0]),
        (job("d1", 1), "refusal", ids[1]),
        (job("d1", 2), "fact_check", ids[2]),
        (job("d1", 2), "refusal", ids[2]),
    }
    (first,) = store.poison_candidates(job_ids={job("d1", 0)})
    assert first.record_json == '{"i": 0}' and first.target == "m" and first.run_id == "d1"
    # A dead letter whose payload carried no record: the plan's record of the job.
    assert {c.record_json for c in store.poison_candidates(job_ids={job("d1", 2)})} == {'{"i": 2}'}
    assert store.poison_candidates(job_ids=set()) == []
    # The key-only dead letter gets its run from the plan; listing by run then shows it.
    assert store.attribute_dead_letters("d1") == 1
    assert [d.id for d in store.dead_letters(run_id="d1")] == ids
    assert [d.id for d in store.dead_letters(service="aggregator")] == [ids[1]]
    # A replayed dead letter no longer poisons its pairs.
    store.mark_replayed([ids[2]], 5000)
    assert store.dead_letters(ids=[ids[2]])[0].replayed_unix_ms == 5000
    assert {c.pair.job_id for c in store.poison_candidates("d1")} == {job("d1", 0), job("d1", 1)}
    assert [d.id for d in store.dead_letters(include_replayed=False)] == ids[:2]


def _exercise(store: Store) -> None:
    _exact_completion(store)
    _poison_rule(store)
    _dead_letters(store)


def test_sqlite(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/plan.db")
    _exercise(store)
    store.close()


@pytest.mark.slow
def test_postgresql(postgres_url):
    with own_postgres_database(postgres_url) as url:
        store = Store(url)
        _exercise(store)
        store.close()
