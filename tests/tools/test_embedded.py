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
    again = build_report(report.run_id, "fake", rows)
    assert again.to_json()["tasks"] == report.to_json()["tasks"]


def test_rerunning_resumes_without_generating_again(tmp_path, data_dir):
    db = f"sqlite:///{tmp_path}/r.db"
    suite, target = parse_suite(SUITE), [parse_target("vllm:fake")]
    first = ScriptedBackend()
    (r1,) = run_embedded(suite, target, data_dir, db, lambda t: first, progress=lambda s: None)
    second = ScriptedBackend()
    messages = []
    (r2,) = run_embedded(suite, target, data_dir, db, lambda t: second, progress=messages.append)
    assert second.calls == [] and any("50 already done" in m for m in messages)
    assert r2.to_json()["tasks"] == r1.to_json()["tasks"]
    assert Store(db).judgment_count(r1.run_id) == 50


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
