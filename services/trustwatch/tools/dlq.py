"""`trustwatch dlq list|replay`: the dead letters the aggregator stored (``dead_letters`` table), and
sending chosen ones back to the topic they came from.

Every message a service dead-letters is stored by the aggregator with its payload, and each planned
judgment of its job becomes a POISON error, so its run completes with the item counted as an error.
Replaying sends the payload back to its source topic with its key; when it now goes through, its
judgments replace the POISON rows (see ``trustwatch.platform.store``). Listing reads the database, so
it works for embedded and distributed runs alike. Replaying a distributed run's dead letters needs
the services that consume the source topic running on Kafka; an embedded run's (``--embedded``) are
fed, in this process, through the embedded pipeline's own handlers over an in-memory bus: a job is
generated and judged, a completion judged, a judgment stored (:func:`replay_embedded`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import Aggregator, aggregator_workers
from trustwatch.generator.backends.base import Backend
from trustwatch.generator.service import generator_worker
from trustwatch.judge.client import EvaluatorClient
from trustwatch.judge.dispatcher import dispatcher_worker
from trustwatch.platform import config, wiring
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.bus.base import Bus
from trustwatch.platform.messages import now_ms
from trustwatch.platform.runtime import ConsumerLoop
from trustwatch.platform.store import DeadLetterRow, Store
from trustwatch.platform.targets import TargetSpec
from trustwatch.platform.telemetry.metrics import ServiceMetrics

#: Longest reason shown in the table (``--json`` shows it whole).
_REASON_COLUMN = 80


class DlqError(Exception):
    """A dlq command that cannot be done as asked; the text says what to change."""


def as_dict(d: DeadLetterRow) -> dict[str, Any]:
    """A dead letter for ``--json``: everything but the payload itself (its size instead)."""
    return {
        "id": d.id,
        "source_topic": d.source_topic,
        "partition": d.source_partition,
        "offset": d.source_offset,
        "key": d.key.decode("utf-8", "replace"),
        "payload_bytes": len(d.payload),
        "service": d.service,
        "reason": d.reason,
        "created_unix_ms": d.created_unix_ms,
        "run_id": d.run_id,
        "job_id": d.job_id,
        "evaluator": d.evaluator,
        "replayed_unix_ms": d.replayed_unix_ms,
    }


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_table(rows: Sequence[DeadLetterRow]) -> str:
    """One line per dead letter: id, when, service, source, run, job (and evaluator), replayed, reason."""
    if not rows:
        return "no dead letters"
    header = ("id", "created", "service", "source", "run", "job", "replayed", "reason")
    lines = [header]
    for d in rows:
        reason = d.reason if len(d.reason) <= _REASON_COLUMN else d.reason[: _REASON_COLUMN - 1] + "\u2026"
        job = (d.job_id or "-") + (f"#{d.evaluator}" if d.evaluator else "")
        lines.append(
            (
                str(d.id),
                _when(d.created_unix_ms),
                d.service,
                f"{d.source_topic}[{d.source_partition}]@{d.source_offset}",
                d.run_id or "-",
                job,
                _when(d.replayed_unix_ms),
                reason,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(line, widths)), line[-1]]) for line in lines)


def select(
    store: Store,
    ids: Collection[int] | None = None,
    run_id: str | None = None,
    all_: bool = False,
    force: bool = False,
) -> list[DeadLetterRow]:
    """The dead letters a replay sends: by id, of a run, or all; replayed ones only with ``force``
    (raises :class:`DlqError` for unknown ids, or ids already replayed without ``force``). Entries whose
    payload retention cleared (``TRUSTWATCH_RETENTION_DAYS``) are never sent: by id, they are an error."""
    if sum((bool(ids), run_id is not None, all_)) != 1:
        raise DlqError("dlq replay: choose the dead letters with one of --id N..., --run RUN_ID or --all")
    if ids:
        rows = store.dead_letters(ids=ids)
        unknown = sorted(set(ids) - {d.id for d in rows})
        if unknown:
            raise DlqError(f"no dead letter with id {', '.join(map(str, unknown))}; `trustwatch dlq list` shows them")
        done = [d.id for d in rows if d.replayed_unix_ms]
        if done and not force:
            raise DlqError(
                f"dead letter(s) {', '.join(map(str, done))} were replayed already; pass --force to send them again"
            )
        pruned = [d.id for d in rows if not d.payload]
        if pruned:
            raise DlqError(
                f"dead letter(s) {', '.join(map(str, pruned))} have no payload left (cleared by retention, "
                "TRUSTWATCH_RETENTION_DAYS): nothing to replay"
            )
        return rows
    rows = [d for d in store.dead_letters(run_id=run_id) if d.payload]
    return rows if force else [d for d in rows if not d.replayed_unix_ms]


def replay(store: Store, bus: Bus, rows: Sequence[DeadLetterRow]) -> list[int]:
    """Produce each dead letter's payload to its source topic with its key, flush, then mark them
    replayed; returns their ids. Nothing is marked when the flush fails."""
    if not rows:
        return []
    producer = bus.producer()
    try:
        for d in rows:
            producer.produce(d.source_topic, d.payload, d.key or None)
        producer.flush()
    finally:
        producer.close()
    ids = [d.id for d in rows]
    store.mark_replayed(ids, now_ms())
    return ids


def run_target(store: Store, name: str) -> TargetSpec:
    """The target a run of ``name`` generated with, from the newest such run's manifest (raises
    :class:`DlqError` when no stored run names it)."""
    for run in reversed(store.runs(target=name)):
        t = run.manifest.get("target") or {}
        if t.get("backend"):
            return TargetSpec(
                name=name,
                backend=str(t["backend"]),
                model=str(t.get("model", "")),
                base_url=str(t.get("base_url", "")),
                api_key_env=str(t.get("api_key_env", "")),
            )
    raise DlqError(f"no stored run of target {name!r} says how it was generated; replay its jobs over Kafka")


def replay_embedded(
    store: Store,
    rows: Sequence[DeadLetterRow],
    evaluators: EvaluatorClient,
    backend_factory: Callable[[TargetSpec], Backend],
) -> tuple[list[int], list[int]]:
    """Replay an embedded run's dead letters in this process; returns (the ids replayed, the ids of
    the dead letters the replay made: those that failed again).

    Each payload goes back, with its key, to its source topic on a fresh in-memory bus, and the
    embedded pipeline's own handlers take it from there in this thread, until every stage is drained:
    a job is generated (``backend_factory`` of its target, as the newest stored run of that target
    names it: :func:`run_target`) and judged, a completion judged by ``evaluators``, a judgment stored;
    a success replaces the POISON judgment. One that fails again is dead-lettered, and stored, anew.
    The chosen dead letters are marked replayed only when the pipeline has drained; an error before
    that (a transient fault) marks nothing, so replaying again retries them (storage is idempotent).
    """
    if not rows:
        return [], []
    topics = Topics()
    known = {topics.completions, topics.judgments, topics.runs, topics.dlq}
    jobs_prefix = topics.jobs("")
    foreign = sorted({d.source_topic for d in rows if d.source_topic not in known and not _is_jobs(d, jobs_prefix)})
    if foreign:
        raise DlqError(
            f"dead letters of {', '.join(foreign)}: not a topic of the embedded pipeline ({topics.completions}, "
            f"{jobs_prefix}<target>, ...); replay a distributed run's dead letters over Kafka (without --embedded)"
        )
    bus = MemoryBus()
    metrics = ServiceMetrics(CollectorRegistry())
    workers: list[ConsumerLoop] = []  # in pipeline order
    backends: list[Backend] = []
    try:
        for name in sorted({d.source_topic.removeprefix(jobs_prefix) for d in rows if _is_jobs(d, jobs_prefix)}):
            spec = run_target(store, name)
            backend = backend_factory(spec)
            backends.append(backend)
            workers.append(generator_worker(bus, topics, name, spec.backend, backend, metrics, outage_after=0))
        workers.append(dispatcher_worker(bus, topics, evaluators, metrics))
        agg = Aggregator(store, metrics, topics)
        workers.extend(aggregator_workers(bus, topics, agg, metrics))
        before = {d.id for d in store.dead_letters()}
        producer = bus.producer()
        for d in rows:
            producer.produce(d.source_topic, d.payload, d.key or None)
        producer.flush()
        _drain(workers)
        for run_id in {d.run_id for d in rows if d.run_id}:
            agg.touch(run_id)
        agg.refresh()
    finally:
        for w in workers:
            w.close()
        for b in backends:
            b.close()
    ids = [d.id for d in rows]
    store.mark_replayed(ids, now_ms())
    return ids, sorted({d.id for d in store.dead_letters()} - before)


def _is_jobs(d: DeadLetterRow, jobs_prefix: str) -> bool:
    return d.source_topic.startswith(jobs_prefix) and len(d.source_topic) > len(jobs_prefix)


def _drain(workers: Sequence[ConsumerLoop]) -> None:
    """Turn the loops (in pipeline order) in this thread until a round moves nothing and none has lag
    (a streaming generator's requests in flight are uncommitted: lag; a round after one that moved
    nothing waits a little for their results)."""
    moved = 1
    while True:
        moved = sum(w.run_once(timeout=0 if moved else 0.05) for w in workers)
        if not moved and all(w.consumer.lag() == 0 for w in workers):
            return


def cmd_dlq(args: argparse.Namespace, bus: Bus | None = None) -> int:
    """`trustwatch dlq list|replay` (``bus``: for tests; default the configured Kafka)."""
    store = Store(args.db or config.env("TRUSTWATCH_DB_URL"))
    try:
        if args.dlq_command == "list":
            rows = store.dead_letters(run_id=args.run, service=args.service)
            if args.json:
                print(json.dumps([as_dict(d) for d in rows], indent=2))
            else:
                print(format_table(rows))
            return 0
        chosen = select(store, ids=args.id, run_id=args.run, all_=args.all, force=args.force)
        if not chosen:
            print("nothing to replay (entries replayed before are skipped; --force sends them again)")
            return 0
        if getattr(args, "embedded", False):
            from trustwatch.generator.backends import backend_for
            from trustwatch.judge.client import LocalEvaluators
            from trustwatch.tools.commands import settings

            judges = LocalEvaluators(settings(args))
            try:
                ids, again = replay_embedded(store, chosen, judges, backend_for)
            finally:
                judges.close()
            print(f"replayed {len(ids)} dead letter(s) in this process: ids {', '.join(map(str, ids))}")
            if again:
                print(f"{len(again)} failed again and were dead-lettered anew: ids {', '.join(map(str, again))}")
            return 0
        own = bus is None
        bus = bus or wiring.kafka(args.bootstrap)
        try:
            ids = replay(store, bus, chosen)
        finally:
            if own:
                bus.close()
        topics = sorted({d.source_topic for d in chosen})
        print(f"replayed {len(ids)} dead letter(s) to {', '.join(topics)}: ids {', '.join(map(str, ids))}")
        return 0
    finally:
        store.close()
