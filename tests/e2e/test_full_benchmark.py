"""The whole benchmark embedded: all 24 files through the real vLLM engine (tiny random model, CPU)
and the offline judges; every one of the 16,441 prompts must be accounted for in the report."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from trustwatch.benchmark import datasets

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_all_24_files_every_prompt_accounted_for(tmp_path, tiny_model, data_dir):
    # The shipped suite with short replies (a random model's replies are noise; length only costs time).
    suite = (ROOT / "suites" / "trustllm-full.yaml").read_text().replace("max_tokens: 512", "max_tokens: 16")
    (tmp_path / "full.yaml").write_text(suite)
    out, db = tmp_path / "report.json", tmp_path / "full.db"
    env = {**os.environ, "TRUSTWATCH_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trustwatch.cli",
            "run",
            "--suite",
            str(tmp_path / "full.yaml"),
            "--target",
            f"vllm:{tiny_model}",
            "--offline",
            "--db",
            f"sqlite:///{db}",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    expected = {
        rel.removesuffix(".json"): len(json.loads((data_dir / rel).read_text(), strict=False)) for rel in datasets.FILES
    }
    assert sum(expected.values()) == 16441
    assert {k: t["n_items"] for k, t in report["tasks"].items()} == expected
    assert all(not t["error"] for t in report["tasks"].values())
    for task, t in report["tasks"].items():
        for key, m in t["metrics"].items():
            assert m["n_valid"] + m["n_error"] <= m["n_total"], (task, key)
    with sqlite3.connect(db) as conn:
        jobs, judgments = conn.execute("select count(distinct job_id), count(*) from judgments").fetchone()
    assert jobs == 16441 and judgments == report["manifest"]["expected_judgments"]
    assert report["complete"] is True
