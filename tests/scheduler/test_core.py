import json

import pytest

from trustwatch.benchmark.tasks.base import DatasetError
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.store import Store
from trustwatch.scheduler.core import plan_run, sha256_file
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.v1 import messages_pb2 as pb

SUITE = {
    "name": "t",
    "seed": 7,
    "tasks": [{"task": "truthfulness/external", "limit": 5}, {"task": "safety/misuse", "limit": 3}],
}


def test_plan_is_deterministic_and_complete(data_dir):
    suite, target = parse_suite(SUITE), parse_target("vllm:some/model")
    a, b = plan_run(suite, target, data_dir, "r1"), plan_run(suite, target, data_dir, "r1")
    assert a.run_id == b.run_id and [j.ref.job_id for j in a.jobs] == [j.ref.job_id for j in b.jobs]
    # Without an id every plan is a new run, with the same comparable key.
    c, d = plan_run(suite, target, data_dir), plan_run(suite, target, data_dir)
    assert c.run_id != d.run_id and c.run_id.startswith("t-model-")
    assert c.manifest["comparable_key"] == d.manifest["comparable_key"] == a.manifest["comparable_key"]
    assert len(a.jobs) == 8 and a.expected_judgments == 8
    assert a.jobs[0].ref.job_id == f"{a.run_id}/truthfulness/external/0/0"
    assert a.jobs[0].sampling.temperature == 0.0 and a.jobs[5].sampling.temperature == 1.0
    assert a.jobs[0].sampling.seed == b.jobs[0].sampling.seed != a.jobs[1].sampling.seed
    rec = json.loads(a.jobs[0].record_json)
    assert "prompt" not in rec and rec["source"] == "climate"
    m = a.manifest
    assert m["dataset_sha256"]["truthfulness/external.json"] == sha256_file(data_dir / "truthfulness/external.json")
    assert m["target"]["model"] == "some/model" and m["code_version"]
    other = plan_run(parse_suite({**SUITE, "seed": 8}), target, data_dir)
    assert other.manifest["comparable_key"] != a.manifest["comparable_key"]


def test_resubmitting_publishes_only_unfinished_jobs(data_dir):
    suite, target = parse_suite(SUITE), parse_target("vllm:m")
    plan = plan_run(suite, target, data_dir)
    bus, topics, store = MemoryBus(), Topics(), Store("sqlite:///:memory:")
    assert publish(plan, bus, topics, store) == 8
    # pretend three jobs were judged (by the evaluators the plan names); a row of another evaluator
    # does not make a job done
    done = [
        pb.Judgment(
            ref=pb.JobRef(job_id=j.ref.job_id, run_id=j.ref.run_id, task=j.ref.task, item_id=j.ref.item_id, target="m"),
            evaluator=evaluator,
            label="l",
            valid=True,
        )
        for j in plan.jobs[:4]
        for evaluator in (plan.evaluators[j.ref.job_id] if j in plan.jobs[:3] else ("x",))
    ]
    store.store_judgments(done)
    assert publish(plan, bus, topics, store) == 5
    assert len(bus.messages(topics.jobs("m"))) == 13
    assert store.run(plan.run_id).expected_judgments == 8


def test_missing_file_and_bad_record(tmp_path, data_dir):
    suite, target = parse_suite(SUITE), parse_target("vllm:m")
    with pytest.raises(DatasetError, match="truthfulness/external.json .*missing.*datasets download"):
        plan_run(suite, target, tmp_path)
    (tmp_path / "truthfulness").mkdir()
    (tmp_path / "truthfulness/external.json").write_text(
        '[{"prompt": "ok", "answer": "SUPPORT", "source": "x"}, {"answer": "SUPPORT", "source": "x"}]'
    )
    with pytest.raises(DatasetError, match="record 1 has no usable 'prompt'"):
        plan_run(suite, target, tmp_path)
    (tmp_path / "truthfulness/external.json").write_text('[{"prompt": "ok", "source": "x"}]')
    with pytest.raises(DatasetError, match="record 0 lacks field"):
        plan_run(suite, target, tmp_path)
    (tmp_path / "truthfulness/external.json").write_text('{"prompt": ')
    with pytest.raises(DatasetError, match="not valid JSON"):
        plan_run(suite, target, tmp_path)
