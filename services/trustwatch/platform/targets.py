"""Targets: the model endpoints under test, as the scheduler plans for them and the generator serves
them. ``vllm:PATH_OR_MODEL_ID`` or ``openai:MODEL@BASE_URL``, optionally ``?name=NAME&key_env=VAR``;
an ``openai`` target may also set rate-limit ceilings, ``&rpm=N&tpm=N`` (requests / tokens per minute)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from trustwatch.platform import config


class TargetError(ValueError):
    pass


@dataclass(frozen=True)
class TargetSpec:
    """A model under test. ``api_key_env`` names the variable holding the key; the key itself never
    enters a TargetSpec, a message or a log line. ``rpm`` / ``tpm``: ceilings on the requests and
    tokens per minute the generator sends (0: none), so a run leaves a shared quota to others; they
    change how fast a run goes, not what it measures, so they are not part of :meth:`describe`
    (nor of a run's identity)."""

    name: str
    backend: str
    model: str
    base_url: str = ""
    api_key_env: str = ""
    options: dict[str, str] = field(default_factory=dict)
    rpm: int = 0
    tpm: int = 0

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "backend": self.backend,
            "model": self.model,
            "base_url": redact_url(self.base_url),
            "api_key_env": self.api_key_env,
        }


#: Query parameter names that carry credentials; a target refuses them (keys come from key_env).
SECRET_PARAMS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "key",
        "token",
        "access_token",
        "accesstoken",
        "auth",
        "authorization",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "sig",
        "signature",
        "code",
        "subscription-key",
    }
)
#: A path segment shaped like a pasted API key (sk-..., key=..., token=...).
_PATH_SECRET = re.compile(r"^(?:sk|rk|pk)-[A-Za-z0-9_-]{12,}$|(?:^|;)(?:api_?key|key|token|access_token)=", re.I)
_USERINFO = re.compile(r"(://)[^/?#@]*@")
#: What errors mask wherever it appears in a target string: a key=VALUE, then a pasted key (sk-...).
_KEYLIKE = (
    re.compile(r"((?:api_?key|key|token|access_token)=)[^/;&@\s]+", re.I),
    re.compile(r"((?:sk|rk|pk)-)[A-Za-z0-9_-]{12,}", re.I),
)


def redact_url(url: str) -> str:
    """``url`` fit for errors, logs, manifests and run ids: no user info, no query, no fragment.
    A URL with none of those comes back unchanged."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(r"\1***@", url.split("?", 1)[0].split("#", 1)[0])
    netloc = parts.netloc.rpartition("@")[2]
    if netloc == parts.netloc and not parts.query and not parts.fragment:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _shown(text: str) -> str:
    """A target string as errors may quote it: no query part (options), fragment, user info or key."""
    shown = _USERINFO.sub(r"\1***@", str(text).split("?", 1)[0].split("#", 1)[0])
    for pattern in _KEYLIKE:
        shown = pattern.sub(r"\1***", shown)
    return shown


def check_key_env(name: str, allow: str | None = None) -> str:
    """``name`` if a target may send that variable's value as its API key, else a TargetError.

    Allowed: names matching one of the comma-separated fnmatch patterns of ``allow`` (default:
    TRUSTWATCH_KEY_ENV_ALLOW), and never one of trustwatch's own declared variables."""
    patterns = [p.strip() for p in (config.env("TRUSTWATCH_KEY_ENV_ALLOW") if allow is None else allow).split(",")]
    patterns = [p for p in patterns if p]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise TargetError(f"key_env must be an environment variable name, got {name!r}")
    if name in config.VARIABLES:
        raise TargetError(
            f"key_env {name!r} is one of trustwatch's own settings and is never sent to an endpoint; "
            "put the endpoint's key in a variable of its own (e.g. MY_ENDPOINT_API_KEY)"
        )
    if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
        raise TargetError(
            f"key_env {name!r} is not allowed: names must match TRUSTWATCH_KEY_ENV_ALLOW "
            f"({','.join(patterns) or 'empty: none allowed'}); rename the variable (e.g. {name}_API_KEY) "
            "or add a pattern to TRUSTWATCH_KEY_ENV_ALLOW"
        )
    return name


_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
TARGET_HELP = (
    "expected vllm:PATH_OR_MODEL_ID or openai:MODEL@BASE_URL, optionally followed by "
    "?name=NAME&key_env=ENV_VAR, and for openai &rpm=N&tpm=N (requests / tokens per minute) "
    "(e.g. openai:gpt-4o-mini@https://api.example.com/v1?key_env=OPENAI_API_KEY&rpm=500)"
)
#: Options an ``openai`` target accepts on top of name and key_env: rate-limit ceilings.
_RATE_OPTIONS = ("rpm", "tpm")


def _rate(shown: str, query: dict[str, str], option: str) -> int:
    raw = query.get(option)
    if raw is None:
        return 0
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        unit = "requests" if option == "rpm" else "tokens"
        raise TargetError(
            f"target {shown!r}: {option} must be a positive whole number of {unit} per minute, got {raw!r}"
        )
    return int(raw)


_KEY_HINT = "API keys come from the environment variable named by ?key_env=VAR (default OPENAI_API_KEY)"


def parse_target(text: str, key_env_allow: str | None = None) -> TargetSpec:
    """Parse a target string. Errors quote it without its query part or user info, which could hold a
    pasted secret. Credentials in the URL are refused: keys come from ``key_env`` only, which must
    match ``key_env_allow`` (default: TRUSTWATCH_KEY_ENV_ALLOW)."""
    if not isinstance(text, str) or ":" not in text:
        raise TargetError(f"cannot parse target {_shown(text)!r}: {TARGET_HELP}")
    shown = _shown(text)
    backend, rest = text.split(":", 1)
    query: dict[str, str] = {}
    if "?" in rest:
        rest, qs = rest.split("?", 1)
        parsed = parse_qs(qs, keep_blank_values=False, strict_parsing=False)
        query = {k: v[-1] for k, v in parsed.items()}
        secret = sorted(k for k in query if k.lower() in SECRET_PARAMS)
        if secret:
            raise TargetError(
                f"target {shown!r}: credentials in the URL are refused ({', '.join(secret)}=...); "
                f"{_KEY_HINT}, e.g. ?key_env=OPENAI_API_KEY"
            )
        bad = set(query) - {"name", "key_env", *_RATE_OPTIONS}
        if bad:
            raise TargetError(f"target {shown!r}: unknown option(s) {', '.join(sorted(bad))}; {TARGET_HELP}")
    if backend == "vllm":
        rates = sorted(set(query) & set(_RATE_OPTIONS))
        if rates:
            raise TargetError(
                f"target {shown!r}: {', '.join(rates)} apply to API targets (openai:...) only; a vllm "
                "target runs in-process and has no quota"
            )
        if not rest:
            raise TargetError(f"target {shown!r} names no model; {TARGET_HELP}")
        default_name = Path(rest.rstrip("/")).name or rest
        return TargetSpec(name=_NAME_SAFE.sub("_", query.get("name", default_name)), backend="vllm", model=rest)
    if backend == "openai":
        if "@" not in rest:
            raise TargetError(f"target {shown!r} has no @BASE_URL; {TARGET_HELP}")
        model, base_url = rest.split("@", 1)
        try:
            url = urlsplit(base_url)
        except ValueError:
            raise TargetError(f"target {shown!r}: the base URL cannot be parsed; {TARGET_HELP}") from None
        if "@" in url.netloc:
            raise TargetError(f"target {shown!r}: credentials in the URL (user:password@host) are refused; {_KEY_HINT}")
        if "#" in base_url or any(_PATH_SECRET.search(seg) for seg in url.path.split("/")):
            raise TargetError(
                f"target {_shown(f'{backend}:{model}@{url.scheme}://{url.netloc}')}/...: the base URL looks like it "
                f"holds a credential (a key in its path or fragment) and is refused; {_KEY_HINT}"
            )
        if not model or url.scheme not in ("http", "https") or not url.netloc:
            raise TargetError(f"target {shown!r}: need a model name and an http(s) base URL; {TARGET_HELP}")
        key_env = query.get("key_env", "OPENAI_API_KEY")
        try:
            check_key_env(key_env, key_env_allow)
        except TargetError as e:
            raise TargetError(f"target {shown!r}: {e}") from None
        return TargetSpec(
            name=_NAME_SAFE.sub("_", query.get("name", model)),
            backend="openai",
            model=model,
            base_url=base_url.rstrip("/"),
            api_key_env=key_env,
            rpm=_rate(shown, query, "rpm"),
            tpm=_rate(shown, query, "tpm"),
        )
    if backend == "echo":  # instant replies, for benchmarks of the plumbing (generator/backends/echo.py)
        return TargetSpec(name=_NAME_SAFE.sub("_", query.get("name", rest or "echo")), backend="echo", model=rest)
    raise TargetError(f"unknown back-end {_shown(backend)!r} in target {shown!r}; {TARGET_HELP}")


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
