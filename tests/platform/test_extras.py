"""Optional dependencies: a back-end whose package is missing says which extra (or command) installs it.

The missing package is simulated by a ``None`` entry in ``sys.modules``, which makes importing it fail
exactly as an uninstalled package does (``ModuleNotFoundError`` naming it).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trustwatch.benchmark.evaluators import EvalItem, EvaluatorSettings, create, evaluate_items
from trustwatch.benchmark.evaluators import embedding as E
from trustwatch.benchmark.evaluators import toxicity as T
from trustwatch.benchmark.evaluators._openai_endpoint import OpenAIEndpoint
from trustwatch.generator.backends.openai_api import OpenAIBackend
from trustwatch.generator.backends.vllm_engine import VllmBackend
from trustwatch.platform.extras import MissingDependency, require

JUDGE_EXTRA = "pip install 'trustwatch[judge]'"


def _missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    # The real packages are loaded first: transformers decides once, when it is first imported, whether
    # torch is there, and importing it while torch is hidden here left it deciding "no" for every later
    # test in the process (test_bench's HF loop then failed, in some test orders).
    if "torch" in modules:
        for name in ("torch", "transformers"):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def test_require_imports_an_installed_module() -> None:
    assert require("json", "a test", "nothing") is sys.modules["json"]


def test_require_names_the_package_and_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "transformers")
    with pytest.raises(MissingDependency) as info:
        require("transformers", "the hf thing", JUDGE_EXTRA)
    msg = str(info.value)
    assert msg == (
        "the hf thing needs the Python package 'transformers', which is not installed; "
        "install it with: pip install 'trustwatch[judge]'"
    )
    assert isinstance(info.value, ImportError)  # callers that catch ImportError still do


def test_require_leaves_a_broken_install_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed package that fails to import (its own dependency is missing) is not "not installed".
    pkg = tmp_path / "tw_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import tw_absent_dependency_xyz\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("tw_broken_pkg", "a test", "nothing")
    assert not isinstance(info.value, MissingDependency) and info.value.name == "tw_absent_dependency_xyz"


def _refusal_hf() -> Any:
    return create("refusal", EvaluatorSettings(refusal_backend="hf", refusal_model="/no/model"))._pipeline()  # type: ignore[attr-defined]  # the hf back-end's method


def _toxicity_hf() -> Any:
    return T.HFBackend("/no/model")._pipeline()


def _embedding_local() -> Any:
    return E.LocalBackend("/no/model/for-test_extras")._model()


def _judge_endpoint() -> Any:
    return OpenAIEndpoint("judge endpoint", "http://127.0.0.1:9/v1").client()


def _vllm_backend() -> Any:
    return VllmBackend("/no/model")


def _openai_backend() -> Any:
    return OpenAIBackend("m", "http://127.0.0.1:9/v1")


CASES: list[tuple[str, tuple[str, ...], Callable[[], Any], str, str]] = [
    ("refusal-hf", ("transformers",), _refusal_hf, "the hf refusal back-end", JUDGE_EXTRA),
    ("refusal-hf-torch", ("torch",), _refusal_hf, "the hf refusal back-end", JUDGE_EXTRA),
    ("toxicity-hf", ("torch", "transformers"), _toxicity_hf, "the hf toxicity back-end", JUDGE_EXTRA),
    ("embedding-local", ("sentence_transformers",), _embedding_local, "the local embedding back-end", JUDGE_EXTRA),
    ("llm-judge", ("openai",), _judge_endpoint, "the judge endpoint", "pip install -r requirements/base.txt"),
    ("vllm", ("vllm",), _vllm_backend, "the vllm generation back-end", "pip install vllm"),
    (
        "openai-gen",
        ("aiohttp",),
        _openai_backend,
        "the openai generation back-end",
        "pip install -r requirements/base.txt",
    ),
]


@pytest.mark.parametrize(("missing", "build", "who", "install"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_optional_import_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...], build: Callable[[], Any], who: str, install: str
) -> None:
    _missing(monkeypatch, *missing)
    with pytest.raises(MissingDependency) as info:
        build()
    msg = str(info.value)
    assert msg.startswith(who) and install in msg, msg
    assert any(f"'{m}'" in msg for m in missing), msg


def test_a_missing_classifier_library_reaches_the_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "transformers")
    ev = create("refusal", EvaluatorSettings(refusal_backend="hf", refusal_model="/no/model"))
    (verdict,) = evaluate_items(ev, [EvalItem("j", "safety/jailbreak", "p", "Sure, here it is.")])
    assert verdict.label == "error" and "pip install 'trustwatch[judge]'" in verdict.error
