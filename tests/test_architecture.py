"""What may import what: the layers declared under [tool.importlinter] in pyproject.toml hold, they
name every top-level part of the package, and a forbidden import is caught."""

import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "services" / "trustwatch"
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(source_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        env={"PYTHONPATH": str(source_root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _layers() -> list[str]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in conf["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def test_the_import_layers_hold():
    result = _lint(ROOT / "services")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_top_level_part_of_the_package_is_in_a_layer():
    named = {m.strip() for layer in _layers() for m in layer.split("|")}
    parts = {
        f"trustwatch.{p.stem if p.is_file() else p.name}"
        for p in PACKAGE.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")
    }
    assert parts - named == set(), "add new top-level modules to the layers in pyproject.toml"
    assert named - parts == set()


def test_a_service_importing_another_service_breaks_the_contract(tmp_path):
    copy = tmp_path / "trustwatch"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    main = copy / "generator" / "main.py"
    main.write_text(main.read_text() + "\nfrom trustwatch.aggregator.store_helpers import x  # noqa\n")
    (copy / "aggregator" / "store_helpers.py").write_text("x = 1\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "trustwatch.generator.main -> trustwatch.aggregator.store_helpers" in result.stdout
