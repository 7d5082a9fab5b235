"""Fixtures of the ops tests: the tools (tests/ops/tools.py) and the rendered kustomizations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops import tools

K8S = tools.ROOT / "k8s"


def kustomizations() -> list[Path]:
    """Every renderable kustomization under k8s/ (components are rendered through the overlays)."""
    out = []
    for f in sorted(K8S.rglob("kustomization.yaml")):
        if yaml.safe_load(f.read_text(encoding="utf-8")).get("kind", "Kustomization") == "Kustomization":
            out.append(f.parent)
    return out


def components() -> list[Path]:
    return sorted(
        f.parent
        for f in K8S.rglob("kustomization.yaml")
        if yaml.safe_load(f.read_text(encoding="utf-8")).get("kind") == "Component"
    )


@pytest.fixture(scope="session")
def kustomize_bin() -> str:
    return tools.kustomize()


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return tools.promtool()


@pytest.fixture(scope="session")
def rendered(kustomize_bin: str) -> dict[str, list[dict[str, Any]]]:
    """`kustomize build` of every kustomization, keyed by its path under k8s/ (e.g. "overlays/dev")."""
    out: dict[str, list[dict[str, Any]]] = {}
    for d in kustomizations():
        done = tools.run([kustomize_bin, "build", str(d)])
        assert done.returncode == 0, f"kustomize build {d} failed:\n{done.stderr}"
        out[str(d.relative_to(K8S))] = [o for o in yaml.safe_load_all(done.stdout) if o]
    return out
