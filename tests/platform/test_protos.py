"""Generated code is exactly what `make protos` produces from protos/ (never edited by hand)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos(tmp_path):
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos/trustwatch/v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iprotos",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
    )
    generated = sorted((tmp_path / "trustwatch/v1").iterdir())
    assert len(generated) == 2 * 3
    for f in generated:
        committed = ROOT / "services/trustwatch/v1" / f.name
        assert committed.read_bytes() == f.read_bytes(), f"{committed} is stale or edited: run `make protos`"
