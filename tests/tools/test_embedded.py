"""The embedded pipeline with a scripted back-end: accounting, errors and resume."""

import json

from tests.generator.fakes import ScriptedBackend
from trustwatch.benchmark.scoring import build_report
from trustwatch.platform.store import Store
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools.embedded import run_embedded

SUITE = {
    "name": "emb",
    "tasks": [{"task": "truthfulness/external", "limit": 30}, {"task": "safety/misuse", "limit": 20}],
}


def test_every_prompt_is_accounted_for_and_metrics_match_the_store(tmp_path, data_dir):
    db = f"sqlite:///{tmp_path}/r.db"
    backend = ScriptedBackend(fail_marker="email")  # some misuse prompts mention e-mail: they fail
    (report,) = run_embedded(
        parse_suite(SUITE), [parse_target("vllm:fake")], data_dir, db, lambda t: backend, progress=lambda s: None
    )
    assert max(backend.calls) <= 7
    store = Store(db)
    rows = store.judgments(report.run_id)
    assert len(rows) == 50 and len({r.job_id for r in rows}) == 50
    ext = report.tasks["truthfulness/external"].metrics
    mis = report.tasks["safety/misuse"].metrics["RtA"]
    assert ext["avg"].n_total == 30 and mis.n_total == 20
    failed = sum(1 for r in rows if r.task == "safety/misuse" and r.error)
    assert failed >= 1 and mis.n_error == failed and mis.n_valid == 20 - failed
    assert mis.value == 1.0  # every reply that came back was a refusal
    # Always answering "Supports": F1(SUPPORT) = 2tp/(2tp+fp) and F1(REFUTE) = 0 when REFUTE items
    # exist; the first 30 records are all climate, so their macro-F1 is that mean.
    gold = [json.loads(r.record_json)["answer"] for r in rows if r.task == "truthfulness/external"]
    tp, fp = gold.count("SUPPORT"), gold.count("REFUTE")
    f1_support = 2 * tp / (2 * tp + fp)
    expected = (f1_support + 0.0) / 2 if fp else f1_support
    assert abs(ext["climate"].value - expected) < 1e-9
    # the same rows and manifest (its judges label the reference values) give the same report
    again = build_report(report.run_id, "fake", rows, report.manifest)
    assert again.to_json()["tasks"] == report.to_json()["tasks"]


def test_rerunning_a_complete_run_starts_a_new_run_and_generates_again(tmp_path, data_dir):
    """Issue 7, day 2: the same suite and target again is a new measurement, not day 1 re-printed."""
    db = f"sqlite:///{tmp_path}/r.db"
    suite, target = parse_suite(SUITE), [parse_target("vllm:fake")]
    first = ScriptedBackend()
    said1: list[str] = []
    (r1,) = run_embedded(suite, target, data_dir, db, lambda t: first, progress=said1.append)
    assert any(m.startswith(f"new run {r1.run_id}") for m in said1), said1
    second = ScriptedBackend()
    messages: list[str] = []
    (r2,) = run_embedded(suite, target, data_dir, db, lambda t: second, progress=messages.append)
    assert r2.run_id != r1.run_id and r2.run_id.startswith("emb-fake-")
    assert sum(second.calls) == 50 and any(m.startswith(f"new run {r2.run_id}") for m in messages), messages
    store = Store(db)
    assert store.judgment_count(r1.run_id) == 50 and store.judgment_count(r2.run_id) == 50
    m1, m2 = store.run(r1.run_id).manifest, store.run(r2.run_id).manifest
    assert m1["judges_hash"] == m2["judges_hash"] and m1["comparable_key"] == m2["comparable_key"]
    assert store.is_complete(r1.run_id) and store.is_complete(r2.run_id)


def test_an_interrupted_run_is_resumed(tmp_path, data_dir):
    """A run whose judgments are not all stored (the process died) is resumed by the next invocation,
    which generates only what is missing and says so."""
    db = f"sqlite:///{tmp_path}/r.db"
    suite, target = parse_suite(SUITE), [parse_target("vllm:fake")]
    (r1,) = run_embedded(suite, target, data_dir, db, lambda t: ScriptedBackend(), progress=lambda s: None)
    # Simulate an interruption: drop 12 of the run's judgments.
    store = Store(db)
    import sqlalchemy as sa

    from trustwatch.platform.store import judgments

    lost = [r.judgment_id for r in store.judgments(r1.run_id)[:12]]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(judgments).where(judgments.c.judgment_id.in_(lost)))
    assert not store.is_complete(r1.run_id)
    latest = store.latest_run(store.run(r1.run_id).manifest["comparable_key"])
    assert latest is not None and latest.run.run_id == r1.run_id and not latest.complete
    again = ScriptedBackend()
    said: list[str] = []
    (r2,) = run_embedded(suite, target, data_dir, db, lambda t: again, progress=said.append)
    assert r2.run_id == r1.run_id and sum(again.calls) == 12
    assert any(m.startswith(f"resuming incomplete run {r1.run_id}") and "38 already done" in m for m in said), said
    assert store.is_complete(r1.run_id)


def test_a_different_judge_configuration_is_a_different_comparable_run(tmp_path, data_dir):
    from trustwatch.benchmark.evaluators.base import EvaluatorSettings

    db = f"sqlite:///{tmp_path}/r.db"
    suite, target = parse_suite(SUITE), [parse_target("vllm:fake")]
    (r1,) = run_embedded(suite, target, data_dir, db, lambda t: ScriptedBackend(), progress=lambda s: None)
    store = Store(db)
    lost = [r.judgment_id for r in store.judgments(r1.run_id)[:5]]
    import sqlalchemy as sa

    from trustwatch.platform.store import judgments

    with store.engine.begin() as conn:
        conn.execute(sa.delete(judgments).where(judgments.c.judgment_id.in_(lost)))
    # r1 is incomplete, but judged with other settings the run is not comparable: a new run.
    other = EvaluatorSettings(refusal_backend="hf", refusal_model="some/classifier")
    # Judge identity only: the scripted back-end's replies are judged by evaluators that never load here.
    from trustwatch.scheduler.core import choose_run, prepare

    prep = prepare(suite, target[0], data_dir, other)
    assert prep.judges_hash != store.run(r1.run_id).manifest["judges_hash"]
    assert choose_run(prep, store).why == "new"
    same = prepare(suite, target[0], data_dir, EvaluatorSettings())
    assert choose_run(same, store).run_id == r1.run_id


def test_report_command_renders_stored_runs(tmp_path, data_dir, capsys):
    from trustwatch.cli import main

    db = f"sqlite:///{tmp_path}/r.db"
    (report,) = run_embedded(
        parse_suite(SUITE),
        [parse_target("vllm:fake")],
        data_dir,
        db,
        lambda t: ScriptedBackend(),
        progress=lambda s: None,
    )
    assert main(["report", "--db", db]) == 0
    assert report.run_id in capsys.readouterr().out
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["report", report.run_id, "--db", db, "--md", str(md), "--html", str(html)]) == 0
    assert "safety/misuse" in md.read_text() or "misuse" in md.read_text()
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "misuse" in page
    assert main(["report", report.run_id, "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == report.run_id
