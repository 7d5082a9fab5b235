"""Optional dependencies: importing one that is missing says what to install.

Heavy back-ends (transformers and torch, sentence-transformers, vLLM) are optional extras of the
``trustwatch`` package (``[project.optional-dependencies]`` in pyproject.toml) and are imported on first
use. :func:`require` imports such a module and, when its package is not installed, raises
:class:`MissingDependency` naming the back-end that needs it and the command that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: How to install a package every trustwatch install has (requirements/base.txt; e.g. openai, httpx).
BASE_INSTALL = "pip install -r requirements/base.txt (it is a base dependency of trustwatch)"


class MissingDependency(ImportError):
    """An optional package a back-end needs is not installed; the message says how to install it."""


def install_hint(extra: str) -> str:
    """The command that installs the extra ``extra`` of trustwatch."""
    return f"pip install 'trustwatch[{extra}]'"


def require(module: str, needed_by: str, install: str) -> ModuleType:
    """Import ``module`` (e.g. ``"transformers"``) for ``needed_by`` (e.g. ``"the hf refusal back-end"``).

    ``install`` is the command that brings it (:func:`install_hint` for an extra). Only a missing
    package is translated: an installed package that fails to import raises its own error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".", 1)[0]
        if exc.name is None or exc.name.split(".", 1)[0] != top:
            raise
        raise MissingDependency(
            f"{needed_by} needs the Python package {top!r}, which is not installed; install it with: {install}"
        ) from exc
