"""`trustwatch dlq list|replay`: the dead letters the aggregator stored (``dead_letters`` table), and
sending chosen ones back to the topic they came from.

Every message a service dead-letters is stored by the aggregator with its payload, and each planned
judgment of its job becomes a POISON error, so its run completes with the item counted as an error.
Replaying sends the payload back to its source topic with its key; when it now goes through, its
judgments replace the POISON rows (see ``trustwatch.platform.store``). Listing reads the database, so
it works for embedded and distributed runs alike; replaying needs the services that consume the
source topic running on the bus (the distributed stack).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import Any

from trustwatch.platform import config, wiring
from trustwatch.platform.bus.base import Bus
from trustwatch.platform.messages import now_ms
from trustwatch.platform.store import DeadLetterRow, Store

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
    (raises :class:`DlqError` for unknown ids, or ids already replayed without ``force``)."""
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
        return rows
    rows = store.dead_letters(run_id=run_id)
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
