"""Pure logic of the scheduler: a suite and a target become a run: its id, manifest and jobs.

Run identity: a run is one measurement. A new invocation starts a new run (:func:`new_run_id`: a
readable prefix and a fresh suffix), unless the latest run of the same *comparable key* (suite,
sample, target, judge configuration, dataset) is incomplete: then it resumes that run
(:func:`choose_run`). A scheduled run is named by its schedule slot (:func:`slot_run_id`), so a
retried pod resumes instead of duplicating. An explicit ``--run-id`` resumes or starts that id.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trustwatch
from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import EvaluatorSettings, judges_identity, settings_from_env
from trustwatch.benchmark.tasks.base import Task, TaskItem
from trustwatch.platform.messages import dumps_record, job_ref, job_seed, now_ms
from trustwatch.platform.targets import TargetSpec, redact_url
from trustwatch.scheduler.schedule import SampleSpec, stratified_sample
from trustwatch.scheduler.suite import Suite, TaskSpec
from trustwatch.v1 import messages_pb2 as pb

if TYPE_CHECKING:
    from trustwatch.platform.store import Store


@dataclass
class Plan:
    run_id: str
    target: TargetSpec
    manifest: dict[str, Any]
    jobs: list[pb.PromptJob]
    #: the evaluators that will judge each job, by name (job id -> names)
    evaluators: dict[str, tuple[str, ...]]

    @property
    def evaluators_per_job(self) -> dict[str, int]:
        """How many evaluators judge each job (job id -> count)."""
        return {job: len(names) for job, names in self.evaluators.items()}

    @property
    def expected_judgments(self) -> int:
        """Judgments the run will have when complete (one per job and evaluator)."""
        return sum(len(names) for names in self.evaluators.values())

    @property
    def deadline_unix_ms(self) -> int:
        """When the run is overdue (0: no deadline); see the manifest."""
        return int(self.manifest.get("deadline_unix_ms") or 0)

    def pairs(self) -> list[pb.PlannedPair]:
        """Every (job, evaluator) pair the run expects a judgment for, in job order; the job's record
        rides on its first pair only (it is stored once per job)."""
        return [
            pb.PlannedPair(
                job_id=j.ref.job_id,
                evaluator=name,
                task=j.ref.task,
                item_id=j.ref.item_id,
                sample=j.ref.sample,
                record_json=j.record_json if k == 0 else "",
            )
            for j in self.jobs
            for k, name in enumerate(self.evaluators.get(j.ref.job_id, ()))
        ]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_hash(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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


def new_run_id(suite: Suite, target: TargetSpec, now: datetime | None = None) -> str:
    """A fresh run id: ``<suite>-<target>-<UTC time>-<4 hex>``, e.g. ``daily-prod-20260101T020000Z-1a2b``."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{suite.name}-{target.name}-{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def slot_run_id(schedule: str, slot: datetime, target: str | None = None) -> str:
    """The run id of a schedule's slot: ``<schedule>-<slot UTC %Y%m%dT%H%MZ>``, then ``-<target>`` when
    given (a schedule's targets each get their run). Deterministic, so a retried pod resumes it."""
    rid = f"{schedule}-{slot.astimezone(timezone.utc):%Y%m%dT%H%MZ}"
    return f"{rid}-{target}" if target else rid


@dataclass
class Prepared:
    """A suite's items for one target, loaded and checked, with everything that identifies the run
    except its id."""

    suite: Suite
    target: TargetSpec
    tasks: list[tuple[TaskSpec, Task, list[TaskItem]]]
    checksums: dict[str, str]
    judges: dict[str, dict[str, str]]
    judges_hash: str
    sample: SampleSpec | None
    comparable_key: str
    generation: dict[str, dict[str, Any]] = field(default_factory=dict)


def prepare(
    suite: Suite,
    target: TargetSpec,
    data_dir: Path,
    settings: EvaluatorSettings | None = None,
    sample: SampleSpec | None = None,
    offline_only: bool = False,
) -> Prepared:
    """Load every task's items (failing before anything is published if a file is bad), sample them
    when ``sample`` is given, and work out the judges and the comparable key.

    ``settings``: the evaluator settings the run is judged with (default: from the environment).
    """
    settings = settings if settings is not None else settings_from_env()
    loaded: list[tuple[TaskSpec, Task, list[TaskItem]]] = []
    checksums: dict[str, str] = {}
    evaluator_names: set[str] = set()
    generation: dict[str, dict[str, Any]] = {}
    for spec in suite.tasks:
        task = task_registry.get(spec.task)
        items = task_registry.load_items(task, data_dir, spec.limit)
        if sample is not None:
            items = stratified_sample(items, sample.n, _task_seed(sample.seed, task.name))
        checksums[task.dataset] = sha256_file(Path(data_dir) / task.dataset)
        for item in items:
            evaluator_names.update(task.evaluators_for(item.record))
        generation[task.name] = {
            "temperature": task.temperature if spec.temperature is None else spec.temperature,
            "max_tokens": spec.max_tokens or min(task.max_tokens, suite.max_tokens),
            "top_p": suite.top_p,
            "samples": suite.samples,
            "seed": suite.seed,
        }
        loaded.append((spec, task, items))
    judges = judges_identity(evaluator_names, settings, offline_only)
    judges_hash = canonical_hash(judges)
    key = canonical_hash(
        {
            "suite": canonical_hash(suite.canonical()),
            "sample": sample.describe() if sample else None,
            "target": target.describe(),
            "judges_hash": judges_hash,
            "dataset_sha256": checksums,
        }
    )
    return Prepared(suite, target, loaded, checksums, judges, judges_hash, sample, key, generation)


def _task_seed(seed: int, task: str) -> int:
    """A task's own sampling seed, derived from the schedule's."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{task}".encode()).digest()[:8], "big")


def build_plan(
    prep: Prepared, run_id: str, extra: dict[str, Any] | None = None, deadline_s: float | None = None
) -> Plan:
    """The run's jobs and manifest under ``run_id``; ``extra`` is merged into the manifest.

    ``deadline_s``: seconds after creation when the run is overdue (manifest ``deadline_unix_ms``;
    None or 0: no deadline). A resumed run keeps the deadline it was recorded with (the store keeps
    the first manifest).
    """
    suite, target = prep.suite, prep.target
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
    counts: dict[str, int] = {}
    per_job: dict[str, tuple[str, ...]] = {}
    for _spec, task, items in prep.tasks:
        counts[task.name] = len(items) * suite.samples
        gen = prep.generation[task.name]
        for item in items:
            evaluator_names = tuple(task.evaluators_for(item.record))
            record_json = dumps_record(item.record)
            for sample in range(suite.samples):
                ref = job_ref(run_id, task.name, item.item_id, sample, target.name)
                jid = ref.job_id
                jobs.append(
                    pb.PromptJob(
                        ref=ref,
                        prompt=item.prompt,
                        sampling=pb.SamplingParams(
                            temperature=gen["temperature"],
                            max_tokens=gen["max_tokens"],
                            top_p=suite.top_p,
                            seed=job_seed(suite.seed, jid),
                        ),
                        target=target_pb,
                        record_json=record_json,
                        created_unix_ms=created,
                    )
                )
                per_job[jid] = evaluator_names
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "suite": suite.canonical(),
        "suite_sha256": canonical_hash(suite.canonical()),
        "target": target.describe(),
        "dataset_sha256": prep.checksums,
        "generation": prep.generation,
        "sample": prep.sample.describe() if prep.sample else None,
        "jobs_per_task": counts,
        "expected_jobs": len(jobs),
        "expected_judgments": sum(len(names) for names in per_job.values()),
        "code_version": code_version(),
        "trustwatch_version": trustwatch.__version__,
        "judges": prep.judges,
        "judges_hash": prep.judges_hash,
        "comparable_key": prep.comparable_key,
        "created_unix_ms": created,
        "deadline_unix_ms": created + int(deadline_s * 1000) if deadline_s else 0,
        # The run's completion is decided by its planned (job, evaluator) pairs (see Store.is_complete).
        "completion": "planned_pairs",
        **(extra or {}),
    }
    return Plan(run_id=run_id, target=target, manifest=manifest, jobs=jobs, evaluators=per_job)


def plan_run(
    suite: Suite,
    target: TargetSpec,
    data_dir: Path,
    run_id: str | None = None,
    settings: EvaluatorSettings | None = None,
    sample: SampleSpec | None = None,
    offline_only: bool = False,
    deadline_s: float | None = None,
) -> Plan:
    """Plan a run without looking at stored runs: under ``run_id``, or a fresh :func:`new_run_id`."""
    prep = prepare(suite, target, data_dir, settings, sample, offline_only)
    return build_plan(prep, run_id or new_run_id(suite, target), deadline_s=deadline_s)


@dataclass(frozen=True)
class RunChoice:
    """Which run an invocation measures, and why."""

    run_id: str
    resumed: bool
    why: str  # "new", "incomplete", "explicit"

    def message(self) -> str:
        if self.why == "incomplete":
            return f"resuming incomplete run {self.run_id}"
        if self.resumed:
            return f"resuming run {self.run_id} (--run-id)"
        return f"new run {self.run_id}"


def choose_run(prep: Prepared, store: Store | None, run_id: str | None = None) -> RunChoice:
    """The run an invocation measures: ``run_id`` when given (resumed if stored), else the latest run of
    the same comparable key when it is incomplete, else a new run."""
    if run_id:
        return RunChoice(run_id, store is not None and store.run(run_id) is not None, "explicit")
    if store is not None:
        latest = store.latest_run(prep.comparable_key)
        if latest is not None and not latest.complete:
            return RunChoice(latest.run.run_id, True, "incomplete")
    return RunChoice(new_run_id(prep.suite, prep.target), False, "new")


def plan_for(
    suite: Suite,
    target: TargetSpec,
    data_dir: Path,
    store: Store | None,
    run_id: str | None = None,
    settings: EvaluatorSettings | None = None,
    sample: SampleSpec | None = None,
    offline_only: bool = False,
    deadline_s: float | None = None,
) -> tuple[Plan, RunChoice]:
    """Plan the run an invocation measures (see :func:`choose_run`)."""
    prep = prepare(suite, target, data_dir, settings, sample, offline_only)
    choice = choose_run(prep, store, run_id)
    return build_plan(prep, choice.run_id, deadline_s=deadline_s), choice


def run_event(plan: Plan, kind: int, planned: Sequence[pb.PlannedPair] = ()) -> pb.RunEvent:
    """A run event; PLANNED events carry a chunk of the plan in ``planned`` and no manifest."""
    return pb.RunEvent(
        run_id=plan.run_id,
        kind=kind,  # type: ignore[arg-type]  # protobuf enum fields take plain ints
        target=plan.target.name,
        manifest_json="" if kind == pb.RunEvent.PLANNED else json.dumps(plan.manifest, sort_keys=True),
        expected_jobs=len(plan.jobs),
        expected_judgments=plan.expected_judgments,
        created_unix_ms=now_ms(),
        planned=planned,
        deadline_unix_ms=plan.deadline_unix_ms,
    )


#: Most pairs per PLANNED event.
PLAN_CHUNK = 1000
#: Most bytes of pairs per PLANNED event: far below Kafka's default 1 MB message limit. A pair is its
#: ids and its job's record (the 16,441 records of the full benchmark are ~5 MB, the largest ~50 kB),
#: so the full benchmark's plan is a few dozen events.
PLAN_CHUNK_BYTES = 256 * 1024


def plan_events(plan: Plan, chunk: int = PLAN_CHUNK, chunk_bytes: int = PLAN_CHUNK_BYTES) -> list[pb.RunEvent]:
    """The run's plan as PLANNED events of at most ``chunk`` pairs and about ``chunk_bytes`` bytes each."""
    events: list[pb.RunEvent] = []
    current: list[pb.PlannedPair] = []
    size = 0
    for pair in plan.pairs():
        n = pair.ByteSize() + 4  # the field's tag and length
        if current and (len(current) >= chunk or size + n > chunk_bytes):
            events.append(run_event(plan, pb.RunEvent.PLANNED, current))
            current, size = [], 0
        current.append(pair)
        size += n
    if current:
        events.append(run_event(plan, pb.RunEvent.PLANNED, current))
    return events


def pending_jobs(plan: Plan, done_job_ids: Iterable[str]) -> list[pb.PromptJob]:
    """Jobs whose judgments are not all stored yet (a resumed run publishes only these)."""
    done = set(done_job_ids)
    return [j for j in plan.jobs if j.ref.job_id not in done]
