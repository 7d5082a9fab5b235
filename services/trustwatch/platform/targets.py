"""Targets: the model endpoints under test, as the scheduler plans for them and the generator serves
them. ``vllm:PATH_OR_MODEL_ID`` or ``openai:MODEL@BASE_URL``, optionally ``?name=NAME&key_env=VAR``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class TargetError(ValueError):
    pass


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


def parse_targets(texts: Iterable[str] | None, defaults: Iterable[str] = ()) -> list[TargetSpec]:
    """Targets given on the command line, else a suite's own; names must be distinct."""
    chosen = list(texts or []) or list(defaults)
    if not chosen:
        raise TargetError("no target: pass --target vllm:PATH_OR_MODEL_ID or --target openai:MODEL@BASE_URL")
    targets = [parse_target(t) for t in chosen]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise TargetError(f"two targets share a name ({', '.join(names)}); add ?name=... to tell them apart")
    return targets
