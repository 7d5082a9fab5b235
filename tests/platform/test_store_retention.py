"""Retention (Store.prune): the raw replies of runs older than N days are cleared, while every
outcome the reports and comparisons are computed from stays, so a pruned run reports and compares
exactly as before; replayed dead letters lose their payloads, unreplayed ones keep them; runs say
they were pruned; pruning again changes nothing and a dry run changes nothing."""

from __future__ import annotations

import json
import math
import random

import pytest

from trustwatch.benchmark.compare import compare
from trustwatch.benchmark.scoring import build_report
from trustwatch.platform.messages import dumps_record, job_id
from trustwatch.platform.store import PRUNED_RESPONSE, DeadLetterRow, Store
from trustwatch.v1 import messages_pb2 as pb

DAY = 86_400_000
NOW = 1_800_000_000_000
MISUSE, XS, ADV = "safety/misuse", "safety/exaggerated_safety", "robustness/AdvInstruction"
ADV_TYPES = ("original", "word_change", "one_url", "html_others")


def _refusals(run: str, task: str, share: float, seed: int, n: int = 120) -> list[pb.Judgment]:
    rng = random.Random(seed)
    source = "xstest" if task == XS else "misuse_add"
    out = []
    for i in range(n):
        refused = rng.random() < share
        j = pb.Judgment(
            ref=pb.JobRef(job_id=job_id(run, task, str(i), 0), run_id=run, task=task, item_id=str(i), target="m"),
            evaluator="refusal",
            label="refusal" if refused else "compliance",
            valid=True,
            score=math.nan,
            response=("I can't help with that." if refused else f"Sure, here is how ({i}).") + " " * (i % 3),
            record_json=dumps_record({"source": source, "type": "safe"}),
            detail_json=json.dumps({"path": "phrases"}),
            created_unix_ms=NOW - 40 * DAY,
            error_kind=pb.ERROR_KIND_UNSPECIFIED,
        )
        if i % 17 == 0:  # a failed generation: an error outcome, its text kept as the outcome
            j.label, j.valid, j.response = "error", False, ""
            j.error, j.generation_error, j.error_kind = "generation failed: HTTP 503", "HTTP 503", pb.ERROR_KIND_FINAL
        out.append(j)
    return out


def _adv(run: str, seed: int) -> list[pb.Judgment]:
    """AdvInstruction: its metric reads each reply's embedding (detail) and whether the reply is empty."""
    rng = random.Random(seed)
    out = []
    for group in range(8):
        for k, kind in enumerate(ADV_TYPES):
            item = group * len(ADV_TYPES) + k
            # empty and all-white-space replies score 0 against a real one (1 when both are empty)
            response = "" if (group, k) in {(0, 0), (1, 2), (5, 1)} else "\n \t" if (group, k) == (2, 3) else "reply"
            detail = {} if not response.strip() else {"embedding": [1.0, rng.random(), rng.random()]}
            out.append(
                pb.Judgment(
                    ref=pb.JobRef(
                        job_id=job_id(run, ADV, str(item), 0), run_id=run, task=ADV, item_id=str(item), target="m"
                    ),
                    evaluator="embedding",
                    label="embedded",
                    valid=True,
                    score=math.nan,
                    response=response + (f" {item}" if response == "reply" else ""),
                    record_json=dumps_record({"index": group, "type": kind}),
                    detail_json=json.dumps(detail),
                    created_unix_ms=NOW - 40 * DAY,
                )
            )
    return out


def _run(store: Store, run: str, created: int, seed: int, misuse: float) -> None:
    judged = _refusals(run, MISUSE, misuse, seed) + _refusals(run, XS, 0.2, seed + 1) + _adv(run, seed + 2)
    manifest = {"run_id": run, "created_unix_ms": created, "judges_hash": "j1", "comparable_key": "k"}
    store.record_run(run, "m", manifest, len(judged), len(judged))
    store.store_judgments(judged)


def _report_json(store: Store, run_id: str) -> dict[str, object]:
    run = store.run(run_id)
    assert run is not None
    return build_report(run_id, run.target, store.judgments(run_id), run.manifest).to_json()


def _comparison(store: Store, base: str, new: str) -> dict[str, object]:
    reports = []
    for run_id in (base, new):
        run = store.run(run_id)
        assert run is not None
        reports.append(build_report(run_id, run.target, store.judgments(run_id), run.manifest))
    return compare(reports[0], reports[1]).to_json()


def _dead_letter(offset: int, created: int, replayed: int | None) -> DeadLetterRow:
    return DeadLetterRow(
        source_topic="trustwatch.jobs",
        source_partition=0,
        source_offset=offset,
        key=b"k",
        payload=b"raw message bytes",
        reason="poison",
        service="generator",
        created_unix_ms=created,
        run_id="base",
        replayed_unix_ms=replayed,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/r.db")
    _run(s, "base", NOW - 40 * DAY, seed=1, misuse=0.9)
    _run(s, "new", NOW - 35 * DAY, seed=2, misuse=0.6)
    _run(s, "recent", NOW - 2 * DAY, seed=3, misuse=0.6)
    s.store_dead_letters(
        [
            _dead_letter(1, NOW - 40 * DAY, replayed=NOW - 39 * DAY),  # old, replayed: cleared
            _dead_letter(2, NOW - 40 * DAY, replayed=None),  # old, not replayed: may still be replayed
            _dead_letter(3, NOW - 1 * DAY, replayed=NOW - 1 * DAY),  # replayed, recent: kept
        ]
    )
    yield s
    s.close()


def test_a_pruned_run_reports_and_compares_exactly_as_before(store: Store) -> None:
    before_cmp = _comparison(store, "base", "new")
    before = {r: _report_json(store, r) for r in ("base", "new")}
    assert before_cmp["comparable"] and before_cmp["regressed"] == 1  # misuse RtA fell: a real comparison
    adv = before["base"]["tasks"][ADV]["metrics"]["similarity"]  # type: ignore[index]  # report JSON, untyped
    assert adv["extra"]["empty_reply_pairs"] == 6  # 3 of group 0 (empty original) + 3; pruning must keep it

    result = store.prune(30, now=NOW)

    assert result.runs == ["base", "new"] and not result.dry_run
    non_blank = sum(
        1 for r in ("base", "new") for j in store.judgments(r) if j.response != "" and j.response != "\n \t"
    )
    assert result.responses == non_blank > 0
    assert result.dead_letter_payloads == 1
    # The raw text is gone; blank replies stay blank; outcomes stay.
    for run_id in ("base", "new"):
        rows = store.judgments(run_id)
        assert {j.response for j in rows} == {PRUNED_RESPONSE, "", "\n \t"}
        assert not any("Sure, here is how" in j.response for j in rows)
        assert any(j.generation_error == "HTTP 503" for j in rows)
        run = store.run(run_id)
        assert run is not None and run.pruned_unix_ms == NOW
    # The same reports and the same comparison.
    assert _comparison(store, "base", "new") == before_cmp
    assert {r: _report_json(store, r) for r in ("base", "new")} == before
    # A recent run is untouched.
    recent = store.run("recent")
    assert recent is not None and recent.pruned_unix_ms is None
    assert any(j.response.startswith("Sure, here is how") for j in store.judgments("recent"))
    # Dead letters: only the old replayed one lost its payload.
    payloads = {d.source_offset: d.payload for d in store.dead_letters()}
    assert payloads == {1: b"", 2: b"raw message bytes", 3: b"raw message bytes"}
    # Plans, runs and comparisons are not rows that pruning deletes.
    assert [r.run_id for r in store.runs()] == ["base", "new", "recent"]
    # Again: nothing left to clear, the first pruning time kept.
    again = store.prune(30, now=NOW + DAY)
    assert (again.responses, again.dead_letter_payloads, again.runs) == (0, 0, [])
    base = store.run("base")
    assert base is not None and base.pruned_unix_ms == NOW


def test_a_dry_run_counts_and_changes_nothing(store: Store) -> None:
    before = {r: [j.response for j in store.judgments(r)] for r in ("base", "new", "recent")}
    dry = store.prune(30, now=NOW, dry_run=True)
    assert dry.dry_run and dry.runs == ["base", "new"] and dry.responses > 0 and dry.dead_letter_payloads == 1
    assert {r: [j.response for j in store.judgments(r)] for r in before} == before
    base = store.run("base")
    assert base is not None and base.pruned_unix_ms is None
    real = store.prune(30, now=NOW)
    assert (real.responses, real.dead_letter_payloads, real.runs) == (dry.responses, 1, dry.runs)


def test_a_late_judgment_of_a_pruned_run_is_pruned_next_time(store: Store) -> None:
    store.prune(30, now=NOW)
    late = _refusals("base", MISUSE, 0.5, seed=9, n=1)[0]
    late.ref.job_id, late.ref.item_id = job_id("base", MISUSE, "999", 0), "999"
    late.response = "a late reply"
    assert store.store_judgments([late]) == 1
    assert store.prune(30, now=NOW + 1).responses == 1
    assert {j.response for j in store.judgments("base", MISUSE) if j.item_id == "999"} == {PRUNED_RESPONSE}


def test_days_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="positive"):
        store.prune(0)
