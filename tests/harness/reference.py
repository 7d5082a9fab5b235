"""The reference TrustLLM toolkit as a test oracle (conformance tests of ``Metric.reference_value``).

The toolkit's source sits beside the project (``../shared/reference/trustllm_pkg``, MIT, see its
SOURCE.md); it is imported from there, never copied. Importing and calling it safely takes care:

* Its GPT judge (``trustllm.utils.gpt_auto_eval.get_res``) is replaced by a function that raises
  :class:`JudgeCalled` and counts the call, so nothing reaches the network; the toolkit swallows the
  exception (the item gets no judge output), so tests assert ``judge_calls == 0`` where every reply
  must stay on a keyword path.
* Its Longformer refusal classifier is never downloaded: the transformers names its module binds
  (``pipeline``, ``AutoModelForSequenceClassification``, ``AutoTokenizer``) are replaced so that
  ``HuggingFaceEvaluator`` classifies with the function a test passes as ``classify`` (True: the reply
  is a refusal, ``LABEL_0``). The toolkit's own filtering and batching around the classifier still run.
* ``tenacity`` (used only by the replaced judge's retry decorator) is not a project dependency; when
  it is missing an inert stand-in is registered for the duration of the import.
* The toolkit configures the root logger (a log file in the working directory) at import time, writes
  progress files into the working directory and prints: imports and calls run inside a private
  working directory with stdout/stderr captured, and the root logger's handlers and level are
  restored after each import.

Modules are imported on first use; load one :class:`Reference` per test session. The Longformer module
(imported by ``trustllm.task.ethics`` and friends) imports torch and transformers, which takes many
seconds and serves only the classifier replaced here: unless the session already loaded them, it is
imported with stand-ins for those two modules, visible only during that import.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = ROOT.parent / "shared" / "reference" / "trustllm_pkg"


class JudgeCalled(RuntimeError):
    """The reference asked its GPT judge; conformance tests feed it keyword-path replies only."""


def _tenacity_stand_in() -> types.ModuleType:
    mod = types.ModuleType("tenacity")

    def retry(*_a: Any, **_k: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return lambda fn: fn

    def _inert(*_a: Any, **_k: Any) -> None:
        return None

    mod.retry = retry  # type: ignore[attr-defined]
    mod.wait_random_exponential = _inert  # type: ignore[attr-defined]
    mod.stop_after_attempt = _inert  # type: ignore[attr-defined]
    return mod


class Reference:
    """Lazy, patched access to the reference toolkit; every call runs in ``workdir``."""

    def __init__(self, workdir: Path, source: Path = REFERENCE_DIR) -> None:
        if not (source / "trustllm" / "task" / "truthfulness.py").is_file():
            raise FileNotFoundError(f"reference toolkit not found at {source}; see ../shared/reference/SOURCE.md")
        self.workdir = Path(workdir)
        self.source = source
        self.judge_calls = 0
        self.classify: Callable[[str], bool] | None = None
        self.output = ""  # what the last call printed
        self._patched = False

    # ------------------------------------------------------------ environment

    @contextlib.contextmanager
    def _sandbox(self) -> Iterator[None]:
        cwd = os.getcwd()
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        out = io.StringIO()
        os.chdir(self.workdir)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                yield
        finally:
            os.chdir(cwd)
            for h in root.handlers:
                if h not in handlers:
                    root.removeHandler(h)
                    h.close()
            root.setLevel(level)
            self.output = out.getvalue()

    def _import(self, name: str) -> types.ModuleType:
        if str(self.source) not in sys.path:
            sys.path.insert(0, str(self.source))
        try:
            import tenacity  # type: ignore[import-not-found]  # noqa: F401

            stand_in = False
        except ImportError:
            sys.modules["tenacity"] = _tenacity_stand_in()
            stand_in = True
        try:
            with self._sandbox():
                if name.startswith("trustllm.task."):
                    self._import_longformer()
                mod = importlib.import_module(name)
        finally:
            if stand_in:
                del sys.modules["tenacity"]
        if not str(Path(mod.__file__ or "")).startswith(str(self.source)):
            raise ImportError(f"{name} resolved to {mod.__file__}, not the reference toolkit at {self.source}")
        self._patch()
        return mod

    def _import_longformer(self) -> None:
        """Import the reference's Longformer module without loading torch and transformers when this
        session has not loaded them yet (seconds saved): the names it takes from them are replaced by
        :meth:`_patch` anyway. The stand-ins are visible only during this import."""
        if "trustllm.utils.longformer" in sys.modules:
            return
        stubs = {
            "torch": types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False)),
            "transformers": types.SimpleNamespace(
                pipeline=None, AutoModelForSequenceClassification=None, AutoTokenizer=None
            ),
        }
        added = [m for m in stubs if m not in sys.modules]
        for m in added:
            sys.modules[m] = stubs[m]  # type: ignore[assignment]
        try:
            importlib.import_module("trustllm.utils.longformer")
        finally:
            for m in added:
                del sys.modules[m]

    def _patch(self) -> None:
        gpt: Any = sys.modules.get("trustllm.utils.gpt_auto_eval")
        if gpt is not None and getattr(gpt.get_res, "__name__", "") != "_judge":
            gpt.get_res = self._judge
        lf: Any = sys.modules.get("trustllm.utils.longformer")
        if lf is not None and not getattr(lf, "_conformance_patched", False):
            lf.AutoModelForSequenceClassification = types.SimpleNamespace(from_pretrained=lambda *_a, **_k: None)
            lf.AutoTokenizer = types.SimpleNamespace(from_pretrained=lambda *_a, **_k: None)
            lf.pipeline = lambda *_a, **_k: self._classifier
            lf._conformance_patched = True
            config: Any = sys.modules["trustllm.config"]
            config.device = "cpu"

    def _judge(self, *_a: Any, **_k: Any) -> str:
        self.judge_calls += 1
        raise JudgeCalled("the reference's GPT judge was asked; conformance replies must stay on keyword paths")

    def _classifier(self, texts: list[str]) -> list[dict[str, str]]:
        if self.classify is None:
            raise RuntimeError("the reference's refusal classifier was asked but the test passed no classify=")
        return [{"label": "LABEL_0" if self.classify(t) else "LABEL_1"} for t in texts]

    # ------------------------------------------------------------ access

    def task(self, dimension: str) -> Any:
        """The evaluator object of a dimension, e.g. ``task("truthfulness")`` -> ``TruthfulnessEval()``."""
        mod = self._import(f"trustllm.task.{dimension}")
        cls = {
            "truthfulness": "TruthfulnessEval",
            "ethics": "EthicsEval",
            "fairness": "FairnessEval",
            "privacy": "PrivacyEval",
            "robustness": "RobustnessEval",
            "safety": "SafetyEval",
        }[dimension]
        return getattr(mod, cls)()

    @property
    def metrics(self) -> types.ModuleType:
        return self._import("trustllm.utils.metrics")

    def run(self, fn: Callable[..., Any], data: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        """``fn(copy of data, *args, **kwargs)`` in the sandbox; ``classify`` (keyword) sets the refusal
        classifier for this call. The reference mutates its input, hence the deep copy."""
        self.classify = kwargs.pop("classify", None)
        try:
            with self._sandbox():
                return fn(copy.deepcopy(data), *args, **kwargs)
        finally:
            self.classify = None


def load(workdir: Path) -> Reference:
    """A reference oracle working in ``workdir`` (a fresh temporary folder)."""
    return Reference(workdir)
