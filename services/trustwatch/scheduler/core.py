"""Pure logic of the scheduler: a suite and a target become a run: its id, manifest and jobs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustwatch
from trustwatch.benchmark import tasks as task_registry
from trustwatch.platform.messages import dumps_record, job_id, job_seed, now_ms
from trustwatch.platform.targets import TargetSpec, redact_url
from trustwatch.scheduler.suite import Suite
from trustwatch.v1 import messages_pb2 as pb


@dataclass
class Plan:
    run_id: str
    target: TargetSpec
    manifest: dict[str, Any]
    jobs: list[pb.PromptJob]
    #: evaluators that will judge each job (job id -> count)
    evaluators_per_job: dict[str, int]

    @property
    def expected_judgments(self) -> int:
        """Judgments the run will have when complete (one per job and evaluator)."""
        return sum(self.evaluators_per_job.values())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{trustwatch.__version__}+{commit}" if commit else trustwatch.__version__


def default_run_id(suite: Suite, target: TargetSpec) -> str:
    """Deterministic: re-submitting the same suite for the same target resumes the same run."""
    key = json.dumps({"suite": suite.canonical(), "target": target.describe()}, sort_keys=True)
    return f"{suite.name}-{target.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def plan_run(suite: Suite, target: TargetSpec, data_dir: Path, run_id: str | None = None) -> Plan:
    """Load every task's items (failing before anything is published if a file is bad) and build jobs."""
    run_id = run_id or default_run_id(suite, target)
    created = now_ms()
    # Jobs, the manifest and the run id carry the URL without credentials (describe() redacts too).
    target_pb = pb.Target(
        name=target.name,
        backend=target.backend,
        model=target.model,
        base_url=redact_url(target.base_url),
        api_key_env=target.api_key_env,
    )
    jobs: list[pb.PromptJob] = []
    checksums: dict[str, str] = {}
    counts: dict[str, int] = {}
    per_job: dict[str, int] = {}
    for spec in suite.tasks:
        task = task_registry.get(spec.task)
        items = task_registry.load_items(task, data_dir, spec.limit)
        checksums[task.dataset] = sha256_file(Path(data_dir) / task.dataset)
        counts[task.name] = len(items) * suite.samples
        temperature = task.temperature if spec.temperature is None else spec.temperature
        max_tokens = spec.max_tokens or min(task.max_tokens, suite.max_tokens)
        for item in items:
            n_eval = len(task.evaluators_for(item.record))
            record_json = dumps_record(item.record)
            for sample in range(suite.samples):
                jid = job_id(run_id, task.name, item.item_id, sample)
                jobs.append(
                    pb.PromptJob(
                        job_id=jid,
                        run_id=run_id,
                        task=task.name,
                        item_id=item.item_id,
                        sample=sample,
                        prompt=item.prompt,
                        sampling=pb.SamplingParams(
                            temperature=temperature,
                            max_tokens=max_tokens,
                            top_p=suite.top_p,
                            seed=job_seed(suite.seed, jid),
                        ),
                        target=target_pb,
                        record_json=record_json,
                        created_unix_ms=created,
                    )
                )
                per_job[jid] = n_eval
    manifest = {
        "run_id": run_id,
        "suite": suite.canonical(),
        "target": target.describe(),
        "dataset_sha256": checksums,
        "jobs_per_task": counts,
        "expected_jobs": len(jobs),
        "expected_judgments": sum(per_job.values()),
        "code_version": code_version(),
        "created_unix_ms": created,
    }
    return Plan(run_id=run_id, target=target, manifest=manifest, jobs=jobs, evaluators_per_job=per_job)


def run_event(plan: Plan, kind: int) -> pb.RunEvent:
    return pb.RunEvent(
        run_id=plan.run_id,
        kind=kind,  # type: ignore[arg-type]  # protobuf enum fields take plain ints
        target=plan.target.name,
        manifest_json=json.dumps(plan.manifest, sort_keys=True),
        expected_jobs=len(plan.jobs),
        expected_judgments=plan.expected_judgments,
        created_unix_ms=now_ms(),
    )


def pending_jobs(plan: Plan, done_job_ids: Iterable[str]) -> list[pb.PromptJob]:
    """Jobs whose judgments are not all stored yet (a resumed run publishes only these)."""
    done = set(done_job_ids)
    return [j for j in plan.jobs if j.job_id not in done]
