"""Targets and schedules as data: one YAML file lists targets, suites and schedules.

Format (see suites/schedule.example.yaml)::

    targets:                     # name -> target string; the name must be the target's own name
      prod: openai:gpt-4o-mini@https://gw.example.com/v1?name=prod&key_env=PROD_API_KEY
      staging: openai:gpt-4o-mini@https://staging.example.com/v1?name=staging&key_env=STAGING_API_KEY
    suites:                      # name -> suite file (relative to this file) or an inline suite
      daily: default.yaml
    schedules:                   # name -> when, what and against which targets
      daily-sampled:
        cron: "0 2 * * *"        # five-field cron, UTC
        suite: daily
        targets: [prod, staging] # default: every target
        sample: 50               # items per task, stratified by `source`; omit for the full suite
        seed: 1                  # sampling seed (default: derived from the schedule name)

Parsing errors name the file and the key. Cron expressions are read with ``croniter``. Sampling is
stratified by task and by the record's ``source`` field, with a seed fixed per schedule, so
consecutive runs of a schedule measure the same items and can be paired.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import yaml
from croniter import croniter

from trustwatch.benchmark.tasks.base import TaskItem
from trustwatch.platform.targets import TargetError, TargetSpec, parse_target
from trustwatch.scheduler.suite import Suite, SuiteError, load_suite, parse_suite


class ScheduleError(ValueError):
    """A schedule file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SampleSpec:
    """A sampled run: ``n`` items per task, drawn with ``seed``."""

    n: int
    seed: int

    def describe(self) -> dict[str, int]:
        return {"n": self.n, "seed": self.seed}


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    suite_name: str
    suite: Suite
    targets: tuple[TargetSpec, ...]
    sample: SampleSpec | None = None

    def latest_slot(self, at: datetime) -> datetime:
        return latest_slot(self.cron, at)

    def next_slot(self, after: datetime) -> datetime:
        return next_slot(self.cron, after)


@dataclass(frozen=True)
class ScheduleConfig:
    source: str
    targets: Mapping[str, TargetSpec]
    suites: Mapping[str, Suite]
    schedules: tuple[Schedule, ...]


# -- cron ---------------------------------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def next_slot(cron: str, after: datetime) -> datetime:
    """The first fire time of ``cron`` strictly after ``after`` (UTC)."""
    nxt: datetime = croniter(cron, _utc(after)).get_next(datetime)
    return _utc(nxt)


def latest_slot(cron: str, at: datetime) -> datetime:
    """The last fire time of ``cron`` at or before ``at`` (UTC)."""
    at = _utc(at)
    prev: datetime = _utc(croniter(cron, at).get_prev(datetime))
    following = next_slot(cron, prev)
    return following if following <= at else prev


# -- sampling -----------------------------------------------------------------------------------------

T = TypeVar("T")


def _allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over strata: one each first (when ``n`` allows), the rest in proportion to what is
    left of each stratum, by largest remainder (ties by name)."""
    alloc = {k: 0 for k in sizes}
    if n >= len(sizes):
        alloc = {k: 1 for k in sizes}
        n -= len(sizes)
    room = {k: sizes[k] - alloc[k] for k in sizes}
    total = sum(room.values())
    if n <= 0 or total <= 0:
        return alloc
    shares = {k: n * room[k] / total for k in sizes}
    for k in sizes:
        alloc[k] += int(shares[k])
    left = n - sum(int(shares[k]) for k in sizes)
    for k in sorted(sizes, key=lambda k: (-(shares[k] - int(shares[k])), k))[:left]:
        alloc[k] += 1
    return {k: min(v, sizes[k]) for k, v in alloc.items()}


def stratified_sample(items: Sequence[T], n: int, seed: int, stratum: Callable[[T], str] | None = None) -> list[T]:
    """``n`` of ``items`` (all of them when there are no more), stratified by ``stratum`` (default: the
    record's ``source`` field where present), in their original order. The same seed gives the same
    items, so consecutive runs of a schedule share them."""
    if n >= len(items):
        return list(items)
    key = stratum or _source
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    alloc = _allocate({k: len(v) for k, v in groups.items()}, n)
    chosen: list[int] = []
    for k, idx in groups.items():
        rng = random.Random(f"{seed}/{k}")
        chosen.extend(rng.sample(idx, alloc[k]))
    return [items[i] for i in sorted(chosen)]


def _source(item: Any) -> str:
    record = item.record if isinstance(item, TaskItem) else getattr(item, "record", None)
    if isinstance(record, Mapping):
        value = record.get("source")
        return "" if value is None else str(value)
    return ""


# -- parsing ------------------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TOP_KEYS = {"targets", "suites", "schedules"}
_SCHEDULE_KEYS = {"cron", "suite", "targets", "sample", "seed", "description"}


def default_seed(schedule: str) -> int:
    """The sampling seed of a schedule that names none: fixed by its name."""
    return int.from_bytes(hashlib.sha256(schedule.encode()).digest()[:4], "big")


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise ScheduleError(f"{where} must be a non-empty mapping of {what}")
    for k in value:
        if not isinstance(k, str) or not _NAME.match(k):
            raise ScheduleError(f"{where}.{k}: names must be letters, digits, '.', '_' or '-' (up to 63)")
    return value


def parse_config(data: Any, source: str = "schedule", base_dir: Path | None = None) -> ScheduleConfig:
    """A schedule file's content; errors read ``<file>: <key>: <problem>``."""
    if not isinstance(data, dict):
        raise ScheduleError(f"{source}: the top level must be a mapping with targets, suites and schedules")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ScheduleError(
            f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    base = base_dir if base_dir is not None else Path(source).parent
    targets: dict[str, TargetSpec] = {}
    for name, text in _mapping(data.get("targets"), f"{source}: targets", "name -> target string").items():
        where = f"{source}: targets.{name}"
        if not isinstance(text, str):
            raise ScheduleError(f"{where} must be a target string (vllm:... or openai:MODEL@URL)")
        try:
            spec = parse_target(text)
        except TargetError as exc:
            raise ScheduleError(f"{where}: {exc}") from None
        if spec.name != name:
            raise ScheduleError(
                f"{where}: the target's name is {spec.name!r}; add ?name={name} to the target string "
                "(and use the same string for that target's generator)"
            )
        targets[name] = replace(spec, name=name)
    suites: dict[str, Suite] = {}
    for name, value in _mapping(data.get("suites"), f"{source}: suites", "name -> suite file or suite").items():
        where = f"{source}: suites.{name}"
        try:
            if isinstance(value, str):
                path = Path(value) if Path(value).is_absolute() else base / value
                suites[name] = load_suite(path)
            elif isinstance(value, dict):
                suites[name] = parse_suite({"name": name, **value}, where)
            else:
                raise ScheduleError(f"{where} must be a suite file path or an inline suite mapping")
        except SuiteError as exc:
            raise ScheduleError(f"{where}: {exc}") from None
    schedules: list[Schedule] = []
    for name, spec in _mapping(data.get("schedules"), f"{source}: schedules", "name -> schedule").items():
        schedules.append(_parse_schedule(name, spec, f"{source}: schedules.{name}", targets, suites))
    return ScheduleConfig(source, targets, suites, tuple(schedules))


def _parse_schedule(
    name: str, spec: Any, where: str, targets: Mapping[str, TargetSpec], suites: Mapping[str, Suite]
) -> Schedule:
    if not isinstance(spec, dict):
        raise ScheduleError(f"{where} must be a mapping with cron and suite")
    bad = set(spec) - _SCHEDULE_KEYS
    if bad:
        raise ScheduleError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, bad)))}; allowed: {', '.join(sorted(_SCHEDULE_KEYS))}"
        )
    cron = spec.get("cron")
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ScheduleError(f"{where}.cron: {cron!r} is not a five-field cron expression (e.g. '0 2 * * *')")
    try:
        latest_slot(cron, datetime.now(timezone.utc))
    except ValueError:  # croniter's CroniterBadDateError: no such day (e.g. '0 0 30 2 *')
        raise ScheduleError(f"{where}.cron: {cron!r} never fires (no such date); fix the day and month") from None
    suite_name = spec.get("suite")
    if suite_name not in suites:
        raise ScheduleError(f"{where}.suite: {suite_name!r} is not one of suites: {', '.join(suites)}")
    chosen = spec.get("targets", list(targets))
    if isinstance(chosen, str):
        chosen = [chosen]
    if not isinstance(chosen, list) or not chosen:
        raise ScheduleError(f"{where}.targets must be a non-empty list of target names")
    for t in chosen:
        if t not in targets:
            raise ScheduleError(f"{where}.targets: {t!r} is not one of targets: {', '.join(targets)}")
    if len(set(chosen)) != len(chosen):
        raise ScheduleError(f"{where}.targets: a target is listed twice")
    sample = None
    if spec.get("sample") is not None:
        n = spec["sample"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ScheduleError(f"{where}.sample must be an integer >= 1 (items per task), got {n!r}")
        seed = spec.get("seed", default_seed(name))
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ScheduleError(f"{where}.seed must be an integer >= 0, got {seed!r}")
        sample = SampleSpec(n, seed)
    elif spec.get("seed") is not None:
        raise ScheduleError(f"{where}.seed: only a sampled schedule (with `sample`) takes a seed")
    return Schedule(
        name=name,
        cron=cron,
        suite_name=str(suite_name),
        suite=suites[str(suite_name)],
        targets=tuple(targets[t] for t in chosen),
        sample=sample,
    )


def load_config(path: str | Path) -> ScheduleConfig:
    p = Path(path)
    if not p.is_file():
        raise ScheduleError(f"schedule file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise ScheduleError(f"{p} is not valid YAML (in UTF-8): {exc}") from exc
    return parse_config(data, str(p), p.parent)


def slots_due(config: ScheduleConfig, after: datetime, until: datetime) -> list[tuple[Schedule, datetime]]:
    """Each schedule's latest slot in (``after``, ``until``], if any (older missed slots are not fired)."""
    due = []
    for s in config.schedules:
        slot = s.latest_slot(until)
        if slot > _utc(after):
            due.append((s, slot))
    return due
