"""One way to make things available by name: tasks, evaluators and generation back-ends.

A registry belongs to one package. On first use it imports every module of that package once
(thread-safe; names starting with ``_`` and the ``base`` module are skipped), and each module adds
what it defines: with :meth:`Registry.add` as a class decorator, or through ``collect`` (e.g. a
module-level ``TASK``). Adding one more is one module in that package; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Generic, TypeVar

T = TypeVar("T")
Item = TypeVar("Item")


class Registry(Generic[T]):
    def __init__(
        self,
        kind: str,
        package: str,
        name_of: Callable[[T], str],
        *,
        collect: Callable[[ModuleType], Iterable[T]] | None = None,
        recursive: bool = False,
        unknown: Callable[[str], Exception] = LookupError,
    ) -> None:
        self.kind = kind
        self.package = package
        self._name_of = name_of
        self._collect = collect
        self._recursive = recursive
        self._unknown = unknown
        self._items: dict[str, T] = {}
        self._loaded = False
        # Re-entrant: modules imported while loading add themselves.
        self._lock = threading.RLock()

    def add(self, item: Item) -> Item:
        """Make ``item`` available under its name; usable as a class decorator."""
        value: T = item  # type: ignore[assignment]  # Item is T at every call site; kept generic for decorators
        name = self._name_of(value)
        with self._lock:
            old = self._items.get(name)
            if old is not None and old is not value:
                raise ValueError(f"two {self.kind}s are named {name!r}: {_origin(old)} and {_origin(value)}")
            self._items[name] = value
        return item

    def known(self) -> dict[str, T]:
        self._load()
        return dict(sorted(self._items.items()))

    def get(self, name: str) -> T:
        items = self.known()
        if name not in items:
            raise self._unknown(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(items)}")
        return items[name]

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            pkg = importlib.import_module(self.package)
            walk = pkgutil.walk_packages if self._recursive else pkgutil.iter_modules
            for mod in walk(pkg.__path__, prefix=f"{self.package}."):
                leaf = mod.name.rsplit(".", 1)[-1]
                if leaf.startswith("_") or leaf == "base" or (self._recursive and mod.ispkg):
                    continue
                module = importlib.import_module(mod.name)
                if self._collect is not None:
                    for item in self._collect(module):
                        self.add(item)
            self._loaded = True


def _origin(item: object) -> str:
    return getattr(item, "__module__", None) or type(item).__module__
