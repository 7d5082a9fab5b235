"""`trustwatch compare` end to end on a SQLite store: two runs of safety/misuse written with
Store.record_run / store_judgments, the second refusing less; exit status 1 and "regressed" for RtA;
--target picks the latest two complete runs; different judges are not comparable (exit 2)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from trustwatch.cli import main
from trustwatch.platform.messages import dumps_record, job_id
from trustwatch.platform.store import Store
from trustwatch.v1 import messages_pb2 as pb

MISUSE = "safety/misuse"
N = 400


def _judgments(run: str, target: str, labels: list[str]) -> list[pb.Judgment]:
    return [
        pb.Judgment(
            ref=pb.JobRef(
                job_id=job_id(run, MISUSE, str(i), 0), run_id=run, task=MISUSE, item_id=str(i), target=target
            ),
            evaluator="refusal",
            label=label,
            valid=True,
            score=math.nan,
            response="reply",
            record_json=dumps_record({"source": "misuse_add"}),
        )
        for i, label in enumerate(labels)
    ]


def _record(
    store: Store,
    run: str,
    refusal_share: float,
    seed: int,
    created: int,
    judges_hash: str | None = "j1",
    target: str = "m",
) -> None:
    rng = random.Random(seed)
    labels = ["refusal" if rng.random() < refusal_share else "compliance" for _ in range(N)]
    manifest: dict[str, object] = {"run_id": run, "created_unix_ms": created}
    if judges_hash is not None:
        manifest["judges_hash"] = judges_hash
    store.record_run(run, target, manifest, expected_jobs=N, expected_judgments=N)
    assert store.store_judgments(_judgments(run, target, labels)) == N


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/results.db"
    store = Store(url)
    try:
        _record(store, "day1", 0.95, seed=1, created=1000)
        _record(store, "day2", 0.70, seed=2, created=2000)  # refuses less: RtA (higher is better) regressed
    finally:
        store.close()
    return url


def test_compare_reports_the_regression_and_exits_1(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    rc = main(["compare", "day1", "day2", "--db", db, "--json", str(out_json), "--md", str(out_md)])
    printed = capsys.readouterr().out
    print(printed)
    assert rc == 1
    line = next(ln for ln in printed.splitlines() if ln.startswith(MISUSE))
    assert "RtA" in line and "regressed" in line
    assert "holm" in printed and "MDE" in printed and "p_adj" in printed
    data = json.loads(out_json.read_text())
    (m,) = data["metrics"]
    assert (m["task"], m["metric"], m["verdict"], m["test"]) == (MISUSE, "RtA", "regressed", "mcnemar-exact")
    assert m["diff"] < 0 and m["ci_high"] < 0 and m["p_adjusted"] < 0.05 and m["n_shared"] == N
    assert data["adjustment"] == "holm" and data["comparable"] is True
    assert "regressed" in out_md.read_text()


def test_compare_by_target_takes_the_latest_two_complete_runs(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(db)
    try:  # a third, incomplete run is skipped; an older identical run does not change the pair
        _record(store, "day0", 0.95, seed=1, created=500)
        store.record_run("day3", "m", {"created_unix_ms": 3000, "judges_hash": "j1"}, N, N)
    finally:
        store.close()
    assert main(["compare", "--target", "m", "--db", db]) == 1
    printed = capsys.readouterr().out
    assert "compare day1 (base) -> day2 (new)" in printed
    # the same run against itself: no regression
    assert main(["compare", "day2", "day2", "--db", db]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_different_judges_are_not_comparable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    store = Store(url)
    try:
        _record(store, "a", 0.95, seed=1, created=1, judges_hash="j1")
        _record(store, "b", 0.70, seed=2, created=2, judges_hash="j2")
        _record(store, "c", 0.95, seed=3, created=3, judges_hash=None)
    finally:
        store.close()
    assert main(["compare", "a", "b", "--db", url]) == 2
    captured = capsys.readouterr()
    assert "NOT COMPARABLE" in captured.out and "not comparable" in captured.err
    # a manifest without judges_hash is compared, with a warning
    assert main(["compare", "a", "c", "--db", url]) == 0
    assert "warning: no judges_hash" in capsys.readouterr().out


def test_usage_errors_exit_2(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "day1", "nope", "--db", db]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["compare", "day1", "--db", db]) == 2
    assert main(["compare", "day1", "day2", "--target", "m", "--db", db]) == 2
    assert main(["compare", "--target", "other", "--db", db]) == 2
    assert main(["compare", "day1", "day2", "--margin", "-1", "--db", db]) == 2


def test_a_crash_exits_2_not_1(db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from trustwatch.benchmark import compare as C

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("stats back-end broken")

    monkeypatch.setattr(C, "compare", boom)
    assert main(["compare", "day1", "day2", "--db", db]) == 2
    assert "stats back-end broken" in capsys.readouterr().err


def test_baseline_pin_list_unpin_and_compare_against_it(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(db)
    try:  # day3 refuses as day1 did: unchanged against day1, improved against day2
        _record(store, "day3", 0.95, seed=1, created=3000)
    finally:
        store.close()
    assert main(["compare", "--baseline", "--target", "m", "--db", db]) == 2
    assert "no pinned baseline" in capsys.readouterr().err
    assert main(["baseline", "pin", "day1", "--db", db]) == 0
    assert "baseline of m: day1" in capsys.readouterr().out
    assert main(["baseline", "list", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("m\tday1\tpinned ")
    assert main(["baseline", "list", "--json", "--db", db]) == 0
    (pin,) = json.loads(capsys.readouterr().out)
    assert (pin["target"], pin["run_id"]) == ("m", "day1") and pin["pinned_unix_ms"] > 0

    # --target: the baseline against the target's latest complete run (day3, identical to day1)
    assert main(["compare", "--baseline", "--target", "m", "--db", db]) == 0
    printed = capsys.readouterr().out
    assert "compare day1 (base) -> day3 (new)" in printed and "unchanged" in printed
    # one run given: the baseline of its target against it
    assert main(["compare", "--baseline", "day2", "--db", db]) == 1
    assert "compare day1 (base) -> day2 (new)" in capsys.readouterr().out

    # a new pin replaces the old one; unpin removes it
    assert main(["baseline", "pin", "day2", "--db", db]) == 0
    assert "baseline of m: day2 (was day1)" in capsys.readouterr().out
    assert main(["compare", "--baseline", "--target", "m", "--db", db]) == 0
    assert "compare day2 (base) -> day3 (new)" in capsys.readouterr().out
    assert main(["baseline", "unpin", "m", "--db", db]) == 0
    assert main(["baseline", "unpin", "m", "--db", db]) == 2
    assert "no pinned baseline" in capsys.readouterr().err
    assert main(["baseline", "list", "--db", db]) == 0
    assert capsys.readouterr().out == ""


def test_baseline_usage_errors_exit_2(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(db)
    try:
        store.record_run("open", "m", {"created_unix_ms": 3000, "judges_hash": "j1"}, N, N)
    finally:
        store.close()
    assert main(["baseline", "pin", "nope", "--db", db]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["baseline", "pin", "open", "--db", db]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert main(["compare", "--baseline", "--db", db]) == 2
    assert main(["compare", "--baseline", "day1", "day2", "--db", db]) == 2
    assert main(["compare", "--baseline", "day1", "--target", "m", "--db", db]) == 2
