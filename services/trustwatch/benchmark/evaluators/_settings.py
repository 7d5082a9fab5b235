"""Evaluator settings: one small frozen dataclass per evaluator family, defined next to its evaluator.

A family's field is either read from an environment variable (:func:`var`) or set by code only
(:func:`code`: batch size, device). A variable is declared once, with its default and meaning, in
:data:`trustwatch.platform.config.VARIABLES`; the field names it and takes its default from there, so
the two cannot drift (``tests/benchmark/evaluators/test_settings.py`` checks every field against the
declarations and back). Every field also has a *key*: its variable's name without ``TRUSTWATCH_``, in
lower case (``judge_model`` for ``TRUSTWATCH_JUDGE_MODEL``), by which flags and callers address it.

:class:`EvaluatorSettings` is the bundle a service reads once at start-up (:func:`settings_from_env`)
and hands to every evaluator; an evaluator takes only its own family from it, with
:meth:`EvaluatorSettings.of`. A new family is a dataclass decorated with :func:`family` in its
evaluator's module; the bundle finds it through :data:`FAMILIES`, as evaluators are found.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from trustwatch.platform import config
from trustwatch.platform.registry import Registry

T = TypeVar("T")
S = TypeVar("S")

_ENV = "trustwatch.env"
_KEY = "trustwatch.key"
_PREFIX = "TRUSTWATCH_"

#: The judge sets ``TRUSTWATCH_JUDGES`` may name.
JUDGE_SETS = ("default", "reference")


class SettingsError(ValueError):
    """An evaluator setting whose value cannot be used; the message names the variable."""


def var(name: str, kind: Callable[[str], T]) -> T:
    """A field read from the declared variable ``name``; its default is the declaration's, as ``kind``."""
    declared = config.VARIABLES.get(name)
    if declared is None:
        raise KeyError(f"{name} is not declared in trustwatch.platform.config.VARIABLES; declare it there first")
    key = name.removeprefix(_PREFIX).lower()
    return field(default=kind(declared.default), metadata={_ENV: name, _KEY: key})


def code(default: T, key: str) -> T:
    """A field no variable sets (code and tests do), addressed by ``key``."""
    return field(default=default, metadata={_KEY: key})


def env_name(f: dataclasses.Field[Any]) -> str:
    """The variable a settings field is read from ("" for a code-only field)."""
    return str(f.metadata.get(_ENV, ""))


def key_of(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata[_KEY])


#: Every settings family, by class name: the dataclasses decorated with :func:`family` in the modules
#: of this package (imported on first use, like the evaluators).
FAMILIES: Registry[type[Any]] = Registry(
    "evaluator settings family", "trustwatch.benchmark.evaluators", lambda c: c.__name__
)


def family(cls: type[S]) -> type[S]:
    """Class decorator for a frozen settings dataclass: checks each field has a key and makes it known.

    A family may set ``reference_set`` (field name -> value): what the ``reference`` judge set changes
    in it where the field is not set explicitly (variable or flag).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__}: a settings family is a dataclass; decorate it with @dataclass(frozen=True)")
    for f in dataclasses.fields(cls):
        if _KEY not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with var(...) or code(...)")
    for name in getattr(cls, "reference_set", {}):
        if name not in {f.name for f in dataclasses.fields(cls)}:
            raise TypeError(f"{cls.__name__}.reference_set names {name!r}, which is not a field")
    return FAMILIES.add(cls)


def families() -> list[type[Any]]:
    return list(FAMILIES.known().values())


def _fields_by_key() -> dict[str, tuple[type[Any], str]]:
    out: dict[str, tuple[type[Any], str]] = {}
    for cls in families():
        for f in dataclasses.fields(cls):
            key = key_of(f)
            if key in out:
                raise TypeError(f"settings key {key!r} is declared by both {out[key][0].__name__} and {cls.__name__}")
            out[key] = (cls, f.name)
    return out


class EvaluatorSettings:
    """Every family's settings, keyed by type; an evaluator reads its own with :meth:`of`.

    Built from family objects and/or keyword arguments by key (``EvaluatorSettings(judge_model="m")``);
    a family not given gets its defaults. Immutable: :meth:`replace` makes a changed copy.
    """

    __slots__ = ("_parts",)
    _parts: dict[type[Any], Any]

    def __init__(self, *parts: Any, **values: Any) -> None:
        known = families()
        given: dict[type[Any], Any] = {}
        for p in parts:
            if type(p) not in known:
                raise TypeError(f"{type(p).__name__} is not a settings family; decorate it with @family")
            given[type(p)] = p
        by_key = _fields_by_key()
        changes: dict[type[Any], dict[str, Any]] = {}
        for key, value in values.items():
            if key not in by_key:
                raise TypeError(f"unknown evaluator setting {key!r}; known settings: {', '.join(sorted(by_key))}")
            cls, name = by_key[key]
            changes.setdefault(cls, {})[name] = value
        parts_out: dict[type[Any], Any] = {}
        for cls in known:
            base = given[cls] if cls in given else cls()
            parts_out[cls] = dataclasses.replace(base, **changes[cls]) if cls in changes else base
        object.__setattr__(self, "_parts", parts_out)

    def of(self, kind: type[S]) -> S:
        """This bundle's settings of family ``kind``."""
        try:
            return cast(S, self._parts[kind])
        except KeyError:
            raise TypeError(f"{kind.__name__} is not a settings family; decorate it with @family") from None

    def replace(self, **values: Any) -> EvaluatorSettings:
        """A copy with the settings named by key changed."""
        return EvaluatorSettings(*self._parts.values(), **values)

    def as_dict(self) -> dict[str, Any]:
        """Every setting by key (for logs and tests; holds names of key variables, never a key)."""
        return {key_of(f): getattr(p, f.name) for p in self._parts.values() for f in dataclasses.fields(p)}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("EvaluatorSettings is immutable; use .replace(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvaluatorSettings) and self._parts == other._parts

    def __hash__(self) -> int:
        return hash(tuple(self._parts.values()))

    def __repr__(self) -> str:
        return f"EvaluatorSettings({', '.join(repr(p) for p in self._parts.values())})"


def settings_from_env(**overrides: Any) -> EvaluatorSettings:
    """Evaluator settings, each field from its declared variable; ``overrides`` (by key, e.g.
    command-line flags) win where they are not None or empty."""
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for cls in families():
        for f in dataclasses.fields(cls):
            name = env_name(f)
            if not name:
                continue
            raw = config.env(name)
            if config.is_set(name):
                explicit.add(key_of(f))
            kind = type(f.default)
            try:
                values[key_of(f)] = kind(raw) if kind in (int, float) else raw
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    given = {k: v for k, v in overrides.items() if v}
    values.update(given)
    explicit |= set(given)
    return with_judge_set(EvaluatorSettings(**values), explicit)


def with_judge_set(settings: EvaluatorSettings, explicit: Iterable[str] = ()) -> EvaluatorSettings:
    """``settings`` with its judge set's defaults (each family's ``reference_set``) applied to every
    setting whose key is not in ``explicit``."""
    judges = settings.of(JudgeSet).judges
    if judges not in JUDGE_SETS:
        raise SettingsError(f"TRUSTWATCH_JUDGES={judges!r}: use one of {', '.join(JUDGE_SETS)}")
    if judges != "reference":
        return settings
    keep = set(explicit)
    changes: dict[str, Any] = {}
    for cls in families():
        ref: Mapping[str, Any] = getattr(cls, "reference_set", {})
        for f in dataclasses.fields(cls):
            if f.name in ref and key_of(f) not in keep:
                changes[key_of(f)] = ref[f.name]
    return settings.replace(**changes)


# -- the families every evaluator shares ------------------------------------------------------------------


@family
@dataclass(frozen=True)
class JudgeSet:
    """Which judges: ``default`` (trustwatch's) or ``reference`` (the reference toolkit's: its GPT judge
    templates, pair-mode sycophancy, and each family's ``reference_set``)."""

    judges: str = var("TRUSTWATCH_JUDGES", str)


@family
@dataclass(frozen=True)
class RemoteSettings:
    """Every remote evaluator call (judge, embedding API, Perspective): retries after the first attempt,
    and the per-request timeout of the embedding API and Perspective."""

    max_retries: int = var("TRUSTWATCH_REMOTE_MAX_RETRIES", int)
    timeout_s: float = var("TRUSTWATCH_REMOTE_TIMEOUT_S", float)


@family
@dataclass(frozen=True)
class LocalModelSettings:
    """Local classifier and embedding models (hf refusal, hf toxicity, local embeddings): batch size and
    torch device ("" = the library's choice). Set by code, not by variables."""

    batch_size: int = code(32, "batch_size")
    device: str = code("", "device")
