"""Property-based fuzzing with hypothesis, reproducible: examples are derandomized (a fixed seed
derived from the test), nothing is stored between runs, and there is no per-example deadline.

Each property runs ``fast`` examples in the default test run and ``many`` in the slow one
(``budget`` is parametrized by tests/fuzz/conftest.py). :data:`CASES` records how many examples
each property asked for, so the suite's total can be printed and checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: (test property, budget) -> examples asked for, summed over its runs (one per decoder, ...).
CASES: dict[tuple[str, str], int] = {}


def fuzz(budget: str, fast: int, many: int, *strategies: Any, **kw: Any) -> Callable[[Callable[..., None]], None]:
    """Decorator that runs the decorated property right away over ``strategies``."""
    n = fast if budget == "fast" else many

    def run(prop: Callable[..., None]) -> None:
        key = (f"{prop.__module__}.{prop.__qualname__}", budget)
        CASES[key] = CASES.get(key, 0) + n
        wrapped = settings(
            max_examples=n,
            derandomize=True,
            database=None,
            deadline=None,
            print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )(given(*strategies, **kw)(prop))
        wrapped()

    return run


#: Any str Python can hold: every code point, lone surrogates and NUL included.
any_char = st.one_of(st.characters(codec="utf-8"), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
any_text = st.text(any_char, max_size=200)
#: Characters that could be stored or sent (no lone surrogates).
utf8_chars = st.characters(codec="utf-8")
utf8_text = st.text(utf8_chars, max_size=200)


def huge(piece: st.SearchStrategy[str], size: int = 200_000) -> st.SearchStrategy[str]:
    """A piece repeated to about ``size`` characters: regexes must stay linear on it."""
    return piece.filter(bool).map(lambda s: (s * (size // len(s) + 1))[:size])


#: Texts for rules and parsers: arbitrary, with surrogates and NUL, and now and then huge.
small_texts = st.one_of(
    any_text,
    st.text(st.sampled_from(list("yes no not \n\t.:[]()ABCD12-*#\"'\x00\ud800")), max_size=80),
)
texts = st.one_of(
    any_text,
    st.text(st.sampled_from(list("yes no not \n\t.:[]()ABCD12-*#\"'\x00\ud800")), max_size=80),
    huge(st.text(any_char, min_size=1, max_size=12), 100_000),
)

JSON = Any
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    utf8_text,
)
json_values: st.SearchStrategy[JSON] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(utf8_text, inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def mutated_record(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A dataset record with fields dropped, retyped or added (its prompt too); now and then not an object."""
    rec = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "retype", "add", "prompt"]))
        keys = sorted(rec)
        if op == "drop" and keys:
            del rec[draw(st.sampled_from(keys))]
        elif op == "retype" and keys:
            rec[draw(st.sampled_from(keys))] = draw(json_values)
        elif op == "add":
            rec[draw(utf8_text)] = draw(json_values)
        else:
            rec["prompt"] = draw(st.one_of(small_texts, json_values))
    return rec if draw(st.integers(0, 9)) else draw(json_values)
