"""`trustwatch evaluate`: re-scoring results in the reference toolkit's layout."""

import json

import pytest

from trustwatch.benchmark import datasets
from trustwatch.cli import main
from trustwatch.tools.rescore import evaluate_results

REPLIES = [
    "Answer: Supports.",
    "I'm sorry, but I can't help with that.",
    "A",
    "Yes",
    "No, it is not.",
    "It is wrong.",
    "good",
    "",
    "Sure! Here is how: first...",
    "positive 2",
]


def _results(tmp_path, data_dir, files, limit=None, res=None):
    for rel in files:
        records = json.loads((data_dir / rel).read_text(), strict=False)[:limit]
        for i, r in enumerate(records):
            r["res"] = res(i) if res else REPLIES[i % len(REPLIES)]
        out = tmp_path / "results" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records))
    return tmp_path / "results"


def test_every_file_offline_accounts_for_every_record(tmp_path, data_dir):
    results = _results(tmp_path, data_dir, list(datasets.FILES))
    out = evaluate_results(results, offline=True, data_dir=data_dir)
    assert set(out) == {rel.removesuffix(".json") for rel in datasets.FILES}
    expected_keys = {
        "truthfulness/external": {"scifact", "covid", "healthver", "climate", "avg"},
        "truthfulness/internal": {"codah", "squad", "adv", "hotpot", "avg"},
        "robustness/AdvGLUE": {"RS", "avg_acc", "avg_adv_acc", "avg_asr"},
        "privacy/privacy_leakage": {"RtA", "TD", "CD"},
        "safety/jailbreak": {"RtA", "fixed sentence", "leetspeak"},
    }
    for key, keys in expected_keys.items():
        assert keys <= set(out[key]["metrics"]), key
    # files whose every item needs an external judge are skipped, with the reason
    assert "not run with --offline" in out["truthfulness/golden_advfactuality"]["skipped"]
    # a mixed file is scored: codah by its rule, the GPT-judged sources counted as not judged
    internal = out["truthfulness/internal"]
    assert internal["metrics"]["codah"]["n_valid"] > 0 and internal["metrics"]["squad"]["n_error"] == 100
    assert any("not judged" in w for w in internal["warnings"])
    for key, r in out.items():
        assert "error" not in r, (key, r.get("error"))
        if not r.get("skipped"):
            n = len(json.loads((data_dir / f"{key}.json").read_text(), strict=False))
            assert r["n_items"] == n
            for m in r["metrics"].values():
                assert set(m) >= {"value", "reference_value", "n_total", "n_valid", "n_error", "ci_low", "ci_high"}
                assert m["n_valid"] + m["n_error"] <= m["n_total"]
    misuse = out["safety/misuse"]["metrics"]["RtA"]
    # replies cycle through 10 strings; index 1 is a refusal, index 7 is empty (judged a refusal)
    assert misuse["n_total"] == 1174 and misuse["value"] == pytest.approx(
        sum(1 for i in range(1174) if i % 10 in (1, 7)) / 1174
    )


def test_bad_results_are_reported_and_the_rest_completes(tmp_path, data_dir):
    results = _results(tmp_path, data_dir, ["truthfulness/external.json", "safety/misuse.json"], limit=20)
    recs = json.loads((results / "safety/misuse.json").read_text())
    del recs[0]["res"]
    recs[1]["res"] = 42
    recs[2]["res"] = None
    (results / "safety/misuse.json").write_text(json.dumps(recs))
    (results / "safety/unknown_file.json").write_text("[]")
    (results / "fairness").mkdir()
    (results / "fairness/preference.json").write_text('{"not": "a list"}')
    (results / "ethics").mkdir()
    (results / "ethics/awareness.json").write_text("[{")
    out = evaluate_results(results, offline=True, data_dir=data_dir)
    rta = out["safety/misuse"]["metrics"]["RtA"]
    assert rta["n_total"] == 20 and rta["n_error"] == 3
    assert any("3 record(s) without a usable 'res'" in w for w in out["safety/misuse"]["warnings"])
    assert any("missing records" in w for w in out["safety/misuse"]["warnings"])
    assert "not a TrustLLM file" in out["safety/unknown_file"]["error"]
    assert "must hold a JSON array" in out["fairness/preference"]["error"]
    assert "not readable JSON" in out["ethics/awareness"]["error"]
    assert out["truthfulness/external"]["metrics"]["avg"]["n_total"] == 20


def test_judge_endpoint_down_counts_errors_per_item(tmp_path, data_dir, monkeypatch):
    results = _results(tmp_path, data_dir, ["truthfulness/golden_advfactuality.json", "safety/misuse.json"], limit=6)
    monkeypatch.setenv("TRUSTWATCH_JUDGE_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("TRUSTWATCH_REMOTE_MAX_RETRIES", "0")
    monkeypatch.setenv("TRUSTWATCH_JUDGE_TIMEOUT_S", "2")
    out_file = tmp_path / "out.json"
    assert main(["evaluate", "--trustllm-results", str(results), "--out", str(out_file)]) == 0
    out = json.loads(out_file.read_text())
    (m,) = out["truthfulness/golden_advfactuality"]["metrics"].values()
    assert m["n_total"] == 6 and m["n_error"] == 6 and m["n_valid"] == 0
    assert out["safety/misuse"]["metrics"]["RtA"]["n_valid"] == 6


def test_cli_errors(tmp_path, capsys):
    assert main(["evaluate", "--trustllm-results", str(tmp_path / "nope"), "--out", str(tmp_path / "o.json")]) == 2
    assert "is not a folder" in capsys.readouterr().err
