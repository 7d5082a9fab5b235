"""Issue 7, run identity: new runs per invocation, resume of an incomplete comparable run, slot ids,
and a manifest that records every judge's identity (never a secret)."""

import json
from datetime import datetime, timezone

from trustwatch.benchmark.evaluators.base import EvaluatorSettings, judges_identity
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.store import Store
from trustwatch.scheduler.core import canonical_hash, choose_run, plan_for, plan_run, prepare, slot_run_id
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.v1 import messages_pb2 as pb

CANARY = "sk-CANARY-0123456789abcdef"
SUITE = {
    "name": "j",
    "tasks": [
        {"task": "safety/jailbreak", "limit": 3},  # refusal + toxicity
        {"task": "fairness/stereotype_agreement", "limit": 3},  # hybrid -> llm_judge
        {"task": "robustness/AdvInstruction", "limit": 2},  # embedding
        {"task": "truthfulness/external", "limit": 2},  # rules
    ],
}


def _settings() -> EvaluatorSettings:
    return EvaluatorSettings(
        judge_base_url=f"https://user:{CANARY}@judge.example.com:8443/v1?api_key={CANARY}",
        judge_model="gpt-4o-judge",
        judge_api_key_env="JUDGE_KEY",
        embedding_backend="openai",
        embedding_model="text-embedding-3-small",
        embedding_base_url=f"https://emb.example.org/v1?key={CANARY}",
        toxicity_backend="perspective",
        perspective_url=f"https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze?key={CANARY}",
    )


def test_manifest_records_judges_and_their_hash_without_secrets(data_dir, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", CANARY)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    target = parse_target("openai:m@https://gw.example/v1?key_env=OPENAI_API_KEY")
    plan = plan_run(parse_suite(SUITE), target, data_dir, "r", _settings())
    m = plan.manifest
    text = json.dumps(m)
    assert CANARY not in text and "JUDGE_KEY" not in text
    judges = m["judges"]
    assert set(judges) == {"refusal", "toxicity", "stereotype_agreement_hybrid", "embedding", "fact_check"}
    llm = judges["stereotype_agreement_hybrid"]
    assert llm["model"] == "gpt-4o-judge" and llm["endpoint_host"] == "judge.example.com:8443"
    assert llm["template"] == "llm_judge.stereotype_agreement" and llm["template_set"].startswith("sha256:")
    assert judges["embedding"] == {
        "backend": "openai",
        "model": "text-embedding-3-small",
        "endpoint_host": "emb.example.org",
    }
    assert judges["toxicity"]["endpoint_host"] == "commentanalyzer.googleapis.com"
    assert judges["refusal"]["backend"] == "phrases" and judges["fact_check"]["backend"] == "rules"
    assert m["judges_hash"] == canonical_hash(judges) and len(m["judges_hash"]) == 64
    for key in ("dataset_sha256", "suite", "target", "generation", "code_version", "comparable_key"):
        assert m[key], key
    assert m["generation"]["safety/jailbreak"]["temperature"] == 1.0
    # Another judge model: another judges hash, another comparable key.
    other = plan_run(parse_suite(SUITE), target, data_dir, "r", _settings().replace(judge_model="x"))
    assert other.manifest["judges_hash"] != m["judges_hash"]
    assert other.manifest["comparable_key"] != m["comparable_key"]


def test_offline_runs_record_judges_as_not_judged():
    ids = judges_identity(["llm_judge.squad", "toxicity", "refusal"], EvaluatorSettings(), offline_only=True)
    assert ids["llm_judge.squad"]["backend"] == "not-judged-offline"
    assert ids["toxicity"]["backend"] == "not-judged-offline"
    assert ids["refusal"]["backend"] == "phrases"


def test_slot_run_ids_are_deterministic():
    slot = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
    assert slot_run_id("daily", slot) == "daily-20260301T0200Z"
    assert slot_run_id("daily", slot, "prod") == slot_run_id("daily", slot, "prod") == "daily-20260301T0200Z-prod"
    assert slot_run_id("daily", slot, "staging") != slot_run_id("daily", slot, "prod")


def test_distributed_one_shot_resumes_an_incomplete_run_and_starts_a_new_one_after(data_dir):
    suite = parse_suite({"name": "t", "tasks": [{"task": "truthfulness/external", "limit": 4}]})
    target = parse_target("vllm:m")
    store, bus, topics = Store("sqlite:///:memory:"), MemoryBus(), Topics()
    settings = EvaluatorSettings()
    p1, c1 = plan_for(suite, target, data_dir, store, settings=settings)
    assert c1.message() == f"new run {p1.run_id}" and not c1.resumed
    assert publish(p1, bus, topics, store) == 4
    # Nothing judged yet: the next invocation resumes it.
    p2, c2 = plan_for(suite, target, data_dir, store, settings=settings)
    assert p2.run_id == p1.run_id and c2.message() == f"resuming incomplete run {p1.run_id}"
    # Rows of an evaluator the plan does not name never complete it (completion is exact).
    store.store_judgments(
        [
            pb.Judgment(
                ref=pb.JobRef(
                    job_id=j.ref.job_id, run_id=j.ref.run_id, task=j.ref.task, item_id=j.ref.item_id, target="m"
                ),
                evaluator="x",
            )
            for j in p1.jobs
        ]
    )
    assert not store.is_complete(p1.run_id)
    assert plan_for(suite, target, data_dir, store, settings=settings)[1].why == "incomplete"
    store.store_judgments(
        [
            pb.Judgment(
                ref=pb.JobRef(
                    job_id=j.ref.job_id, run_id=j.ref.run_id, task=j.ref.task, item_id=j.ref.item_id, target="m"
                ),
                evaluator=e,
            )
            for j in p1.jobs
            for e in p1.evaluators[j.ref.job_id]
        ]
    )
    assert store.is_complete(p1.run_id)
    p3, c3 = plan_for(suite, target, data_dir, store, settings=settings)
    assert p3.run_id != p1.run_id and c3.why == "new"
    # An explicit id resumes (or starts) exactly that run.
    assert choose_run(prepare(suite, target, data_dir, settings), store, p1.run_id).resumed


def test_old_databases_get_the_comparable_key_column(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/old.db"
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE runs (run_id VARCHAR(300) PRIMARY KEY, target VARCHAR(200) NOT NULL, "
                "manifest_json TEXT NOT NULL, expected_jobs INTEGER NOT NULL, expected_judgments INTEGER NOT NULL, "
                "created_unix_ms BIGINT NOT NULL, completed_unix_ms BIGINT)"
            )
        )
        conn.execute(sa.text("INSERT INTO runs VALUES ('old', 't', '{}', 1, 1, 1, NULL)"))
    eng.dispose()
    store = Store(url)
    assert "runs.comparable_key" in store.added_columns
    assert store.latest_run("k") is None
    store.record_run("new", "t", {"comparable_key": "k", "created_unix_ms": 5}, 1, 1)
    latest = store.latest_run("k")
    assert latest is not None and latest.run.run_id == "new" and not latest.complete
