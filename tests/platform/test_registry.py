"""The one registry behind tasks, evaluators and back-ends: modules found by name, loaded once under
concurrent first use, clear errors for unknown and duplicate names."""

import sys
import threading
from types import ModuleType

import pytest

from trustwatch.platform.registry import Registry


def _package(tmp_path, monkeypatch, name, modules):
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    for rel, text in modules.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield_names = [m for m in sys.modules if m == name or m.startswith(name + ".")]
    for m in yield_names:
        monkeypatch.delitem(sys.modules, m)


class Unknown(LookupError):
    pass


def _collect(module: ModuleType):
    return [module.ITEM] if hasattr(module, "ITEM") else []


def test_modules_are_found_recursively_skipping_private_and_base(tmp_path, monkeypatch):
    _package(
        tmp_path,
        monkeypatch,
        "regpkg_a",
        {
            "one.py": "ITEM = 'one'\n",
            "sub/two.py": "ITEM = 'two'\n",
            "_private.py": "raise RuntimeError('never imported')\n",
            "base.py": "ITEM = 'base'\n",
        },
    )
    reg = Registry("thing", "regpkg_a", str, collect=_collect, recursive=True, unknown=Unknown)
    assert list(reg.known()) == ["one", "two"]
    assert reg.get("two") == "two"
    with pytest.raises(Unknown, match="unknown thing 'three'; known things: one, two"):
        reg.get("three")


def test_class_decorators_register_on_import_and_duplicates_are_refused(tmp_path, monkeypatch):
    reg = Registry("widget", "regpkg_b", lambda cls: cls.name)
    monkeypatch.setitem(sys.modules, "regpkg_b_registry", ModuleType("regpkg_b_registry"))
    sys.modules["regpkg_b_registry"].REG = reg
    _package(
        tmp_path,
        monkeypatch,
        "regpkg_b",
        {
            "a.py": "from regpkg_b_registry import REG\n@REG.add\nclass A:\n    name = 'a'\n",
            "b.py": "from regpkg_b_registry import REG\n@REG.add\nclass B:\n    name = 'b'\n",
        },
    )
    assert list(reg.known()) == ["a", "b"]

    class Other:
        name = "a"

    with pytest.raises(ValueError, match="two widgets are named 'a'"):
        reg.add(Other)
    assert reg.add(reg.get("a")) is reg.get("a")  # the same thing again is fine


def test_first_use_from_many_threads_imports_each_module_once(tmp_path, monkeypatch):
    _package(
        tmp_path,
        monkeypatch,
        "regpkg_c",
        {f"m{i}.py": "import time\ntime.sleep(0.01)\nITEM = object()\n" for i in range(6)},
    )
    reg = Registry("obj", "regpkg_c", lambda o: str(id(o)), collect=_collect)
    errors, start = [], threading.Barrier(8)

    def run():
        start.wait()
        try:
            reg.known()
        except Exception as exc:  # noqa: BLE001 - every error of a thread is collected
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(reg.known()) == 6


def test_the_three_registries_use_it():
    from trustwatch.benchmark.evaluators.base import EVALUATORS
    from trustwatch.benchmark.tasks.base import TASKS
    from trustwatch.generator.backends.base import BACKENDS, Backend, UnknownBackend

    assert len(TASKS.known()) == 24 and "safety/misuse" in TASKS.known()
    assert "refusal" in EVALUATORS.known()
    assert set(BACKENDS.known()) == {"echo", "openai", "vllm"}
    for cls in BACKENDS.known().values():
        assert cls.from_target.__func__ is not Backend.from_target.__func__, cls
    with pytest.raises(
        UnknownBackend, match="unknown generation back-end 'tgi'; known generation back-ends: echo, openai, vllm"
    ):
        BACKENDS.get("tgi")
