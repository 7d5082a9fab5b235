"""Suites (which tasks, how many items, sampling) and targets (which model), parsed with errors that
say what to fix."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from trustwatch.benchmark import tasks as task_registry


class SuiteError(ValueError):
    pass


class TargetError(ValueError):
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
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
        raise SuiteError(f"{where} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def parse_suite(data: Any, source: str = "suite") -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: the top level must be a mapping with a `tasks` list")
    unknown = set(data) - _SUITE_KEYS
    if unknown:
        raise SuiteError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_SUITE_KEYS))}")
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
            raise SuiteError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; allowed: {', '.join(sorted(_TASK_KEYS))}")
        name = entry["task"]
        if name not in known:
            raise SuiteError(f"{where}: unknown task {name!r}; known tasks: {', '.join(known)}")
        specs.append(
            TaskSpec(
                task=name,
                limit=_int(entry["limit"], f"{where}.limit", 1) if entry.get("limit") is not None else None,
                temperature=_float(entry["temperature"], f"{where}.temperature", 0.0, 2.0)
                if entry.get("temperature") is not None
                else None,
                max_tokens=_int(entry["max_tokens"], f"{where}.max_tokens", 1) if entry.get("max_tokens") is not None else None,
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
    except yaml.YAMLError as exc:
        raise SuiteError(f"{p} is not valid YAML: {exc}") from exc
    return parse_suite(data, str(p))


@dataclass(frozen=True)
class TargetSpec:
    """A model under test. ``api_key_env`` names the variable holding the key; the key itself never
    enters a TargetSpec, a message or a log line."""

    name: str
    backend: str
    model: str
    base_url: str = ""
    api_key_env: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "backend": self.backend, "model": self.model, "base_url": self.base_url,
                "api_key_env": self.api_key_env}


_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
TARGET_HELP = (
    "expected vllm:PATH_OR_MODEL_ID or openai:MODEL@BASE_URL, optionally followed by "
    "?name=NAME&key_env=ENV_VAR (e.g. openai:gpt-4o-mini@https://api.example.com/v1?key_env=OPENAI_API_KEY)"
)


def parse_target(text: str) -> TargetSpec:
    """Parse a target string. Errors quote it without its query part, which could hold a pasted secret."""
    if not isinstance(text, str) or ":" not in text:
        raise TargetError(f"cannot parse target {str(text).split('?', 1)[0]!r}: {TARGET_HELP}")
    shown = text.split("?", 1)[0]
    backend, rest = text.split(":", 1)
    query: dict[str, str] = {}
    if "?" in rest:
        rest, qs = rest.split("?", 1)
        parsed = parse_qs(qs, keep_blank_values=False, strict_parsing=False)
        query = {k: v[-1] for k, v in parsed.items()}
        bad = set(query) - {"name", "key_env"}
        if bad:
            raise TargetError(f"target {shown!r}: unknown option(s) {', '.join(sorted(bad))}; {TARGET_HELP}")
    if backend == "vllm":
        if not rest:
            raise TargetError(f"target {shown!r} names no model; {TARGET_HELP}")
        default_name = Path(rest.rstrip("/")).name or rest
        return TargetSpec(name=_NAME_SAFE.sub("_", query.get("name", default_name)), backend="vllm", model=rest)
    if backend == "openai":
        if "@" not in rest:
            raise TargetError(f"target {shown!r} has no @BASE_URL; {TARGET_HELP}")
        model, base_url = rest.split("@", 1)
        url = urlsplit(base_url)
        if not model or url.scheme not in ("http", "https") or not url.netloc:
            raise TargetError(f"target {shown!r}: need a model name and an http(s) base URL; {TARGET_HELP}")
        key_env = query.get("key_env", "OPENAI_API_KEY")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
            raise TargetError(f"target {shown!r}: key_env must be an environment variable name, got {key_env!r}")
        return TargetSpec(
            name=_NAME_SAFE.sub("_", query.get("name", model)),
            backend="openai",
            model=model,
            base_url=base_url.rstrip("/"),
            api_key_env=key_env,
        )
    raise TargetError(f"unknown back-end {backend!r} in target {shown!r}; {TARGET_HELP}")
