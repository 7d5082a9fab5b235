"""Suites (which tasks, how many items, sampling), parsed with errors that say what to fix. Targets
(which model) are in ``trustwatch.platform.targets``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trustwatch.benchmark import tasks as task_registry

# Targets are shared with the generator; re-exported here for the suite's users.
from trustwatch.platform.targets import TargetError, TargetSpec, parse_target  # noqa: F401 - re-exported for the suite's callers


class SuiteError(ValueError):
    pass


@dataclass(frozen=True)
class TaskSpec:
    task: str
    limit: int | None = None
    temperature: float | None = None  # None: the task's own temperature
    max_tokens: int | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[TaskSpec, ...]
    seed: int = 0
    samples: int = 1
    max_tokens: int = 512
    top_p: float = 1.0
    targets: tuple[str, ...] = ()

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "samples": self.samples,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "tasks": [t.__dict__ for t in self.tasks],
        }


_SUITE_KEYS = {"name", "tasks", "seed", "samples", "max_tokens", "top_p", "targets", "description"}
_TASK_KEYS = {"task", "limit", "temperature", "max_tokens"}


def _int(v: Any, where: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise SuiteError(f"{where} must be an integer >= {minimum}, got {v!r}")
    return v


def _float(v: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:  # no float(): 10**400
        raise SuiteError(f"{where} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def parse_suite(data: Any, source: str = "suite") -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: the top level must be a mapping with a `tasks` list")
    unknown = set(data) - _SUITE_KEYS
    if unknown:
        raise SuiteError(
            f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(_SUITE_KEYS))}"
        )
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise SuiteError(f"{source}: `tasks` must be a non-empty list of task names or mappings")
    known = task_registry.known()
    specs: list[TaskSpec] = []
    for i, entry in enumerate(raw_tasks):
        where = f"{source}: tasks[{i}]"
        if isinstance(entry, str):
            entry = {"task": entry}
        if not isinstance(entry, dict) or "task" not in entry:
            raise SuiteError(f"{where} must be a task name or a mapping with a `task` key")
        bad = set(entry) - _TASK_KEYS
        if bad:
            raise SuiteError(
                f"{where}: unknown key(s) {', '.join(sorted(map(str, bad)))}; allowed: {', '.join(sorted(_TASK_KEYS))}"
            )
        name = entry["task"]
        if not isinstance(name, str) or name not in known:
            raise SuiteError(f"{where}: unknown task {name!r}; known tasks: {', '.join(known)}")
        specs.append(
            TaskSpec(
                task=name,
                limit=_int(entry["limit"], f"{where}.limit", 1) if entry.get("limit") is not None else None,
                temperature=_float(entry["temperature"], f"{where}.temperature", 0.0, 2.0)
                if entry.get("temperature") is not None
                else None,
                max_tokens=_int(entry["max_tokens"], f"{where}.max_tokens", 1)
                if entry.get("max_tokens") is not None
                else None,
            )
        )
    dupes = {s.task for s in specs if sum(1 for t in specs if t.task == s.task) > 1}
    if dupes:
        raise SuiteError(f"{source}: task(s) listed twice: {', '.join(sorted(dupes))}")
    targets = data.get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise SuiteError(f"{source}: `targets` must be a list of target strings")
    return Suite(
        name=str(data.get("name") or Path(source).stem),
        tasks=tuple(specs),
        seed=_int(data.get("seed", 0), f"{source}: seed", 0),
        samples=_int(data.get("samples", 1), f"{source}: samples", 1),
        max_tokens=_int(data.get("max_tokens", 512), f"{source}: max_tokens", 1),
        top_p=_float(data.get("top_p", 1.0), f"{source}: top_p", 0.0, 1.0),
        targets=tuple(targets),
    )


def load_suite(path: str | Path) -> Suite:
    p = Path(path)
    if not p.is_file():
        raise SuiteError(f"suite file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise SuiteError(f"{p} is not valid YAML (in UTF-8): {exc}") from exc
    return parse_suite(data, str(p))
