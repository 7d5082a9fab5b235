"""Two days of monitoring, end to end: `trustwatch run` twice against our fake OpenAI-compatible
endpoint whose behaviour changes overnight, the offline judges, one SQLite database.

Day 1 the endpoint refuses half of the prompts; day 2 a tenth, except the privacy prompts (those
starting "System:"), refused at 0.3 on both days. Refusal is decided per prompt text, so the privacy
task gets the very same replies-judged-as-refusals on both days. Misuse RtA (higher is better) falls:
regressed; exaggerated-safety RtA (lower is better) falls: improved; privacy-awareness RtA: unchanged.

Checked: the second run is a new run that measured afresh (the endpoint got every prompt again);
`trustwatch compare --target` calls misuse regressed and privacy unchanged and exits 1; the embedded
run's aggregator stored the comparisons (against the previous run and the pinned baseline); an
aggregator started over the database exports the verdicts on /metrics without recomputing them;
`promtool test rules` fires TrustwatchRegressionVsPrevious / -VsBaseline on series built from the
exported values (and only for the regressed metric); a restarted aggregator exports the same series.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.ops import tools
from trustwatch.aggregator import service
from trustwatch.aggregator.service import Aggregator, serve_http
from trustwatch.cli import main
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry import names
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.tools.fake_endpoint import EndpointConfig, FakeEndpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MISUSE, XS, PRIVACY = "safety/misuse", "safety/exaggerated_safety", "privacy/privacy_awareness_query"
N_PROMPTS = 200 + 200 + 200
TARGET = "two-days"
KEY_ENV = "TW_TWO_DAYS_API_KEY"
SUITE = f"""
name: two-days
seed: 0
samples: 1
max_tokens: 32
tasks:
  - task: {MISUSE}
    limit: 200
  - task: {XS}
  - task: {PRIVACY}
    limit: 200
"""
COMPARISON_GAUGES = (
    names.COMPARISON_VERDICT,
    names.COMPARISON_DIFFERENCE,
    names.COMPARISON_DIFFERENCE_CI,
    names.COMPARISON_P_ADJUSTED,
    names.COMPARISON_INFO,
)


def scrape(agg: Aggregator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The comparison series of an aggregator, read over HTTP from /metrics as Prometheus would."""
    server = serve_http(agg, agg.metrics.registry, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in COMPARISON_GAUGES
    }


def restored(db: str) -> tuple[Aggregator, Store]:
    store = Store(db)
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    agg.start()
    return agg, store


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    config = EndpointConfig(
        seed=7, reply_median_tokens=12, refusal_share=0.5, refusal_match="^System:", refusal_match_share=0.3
    )
    with FakeEndpoint(config) as ep:
        yield ep


def test_two_days(tmp_path: Path, data_dir: Path, endpoint: FakeEndpoint, monkeypatch, capsys) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-two-days-not-a-secret")
    monkeypatch.setenv("TRUSTWATCH_DATA_DIR", str(data_dir))
    (tmp_path / "suite.yaml").write_text(SUITE)
    db = f"sqlite:///{tmp_path}/results.db"
    target = f"openai:fake@{endpoint.base_url}?name={TARGET}&key_env={KEY_ENV}"
    run = ["run", "--suite", str(tmp_path / "suite.yaml"), "--target", target, "--offline", "--db", db]

    # -- day 1, pinned as the baseline ---------------------------------------------------------------
    assert main([*run, "--out", str(tmp_path / "day1.json")]) == 0
    day1 = json.loads((tmp_path / "day1.json").read_text())
    assert len(endpoint.log) == N_PROMPTS
    assert main(["baseline", "pin", day1["run_id"], "--db", db]) == 0

    # -- day 2: the endpoint refuses less ------------------------------------------------------------
    endpoint.clear_log()
    endpoint.configure(refusal_share=0.1)
    assert main([*run, "--out", str(tmp_path / "day2.json")]) == 0
    day2 = json.loads((tmp_path / "day2.json").read_text())
    assert day2["run_id"] != day1["run_id"] and day2["complete"]
    assert len(endpoint.log) == N_PROMPTS  # measured afresh: every prompt sent again
    capsys.readouterr()

    # -- trustwatch compare: the release gate ---------------------------------------------------------
    assert main(["compare", "--target", TARGET, "--db", db, "--json", str(tmp_path / "cmp.json")]) == 1
    assert f"compare {day1['run_id']} (base) -> {day2['run_id']} (new)" in capsys.readouterr().out
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    verdicts = {(m["task"], m["metric"]): m["verdict"] for m in cmp["metrics"] if m["p_adjusted"] is not None}
    by_task = {task: {v for (t, _), v in verdicts.items() if t == task} for task in (MISUSE, XS, PRIVACY)}
    assert by_task[MISUSE] == {"regressed"}, verdicts
    assert by_task[XS] == {"improved"}, verdicts  # refusing fewer harmless prompts: lower is better
    assert by_task[PRIVACY] == {"unchanged"}, verdicts
    regressed = {k for k, v in verdicts.items() if v == "regressed"}
    assert cmp["regressed"] == len(regressed) >= 1
    assert main(["compare", "--baseline", "--target", TARGET, "--db", db]) == 1  # the baseline is day 1

    # -- the embedded run's aggregator compared and stored; a fresh one exports without recomputing ----
    store = Store(db)
    try:
        stored = store.comparison(day1["run_id"], day2["run_id"])
        assert stored is not None and stored.regressed == len(regressed)
    finally:
        store.close()

    def no_compare(*_a: object, **_k: object) -> None:
        raise AssertionError("the stored comparison is exported as it is")

    monkeypatch.setattr(service, "compare", no_compare)
    agg, store = restored(db)
    try:
        exported = scrape(agg)
    finally:
        store.close()
    state = {
        (dict(k)["against"], dict(k)["task"], dict(k)["metric"]): dict(k)["verdict"]
        for (name, k), v in exported.items()
        if name == names.COMPARISON_VERDICT and v == 1.0
    }
    for against in ("previous", "baseline"):
        assert {(t, m) for (a, t, m), v in state.items() if a == against and v == "regressed"} == regressed
        assert {state[(against, t, m)] for (t, m) in verdicts if t == PRIVACY} == {"unchanged"}
    infos = {dict(k)["against"]: dict(k) for (name, k) in exported if name == names.COMPARISON_INFO}
    assert {a: (i["base_run"], i["new_run"], i["comparable"]) for a, i in infos.items()} == {
        "previous": (day1["run_id"], day2["run_id"], "true"),
        "baseline": (day1["run_id"], day2["run_id"], "true"),
    }

    # -- promtool: the alerts fire on series of exactly this shape -----------------------------------
    promtool_check(tmp_path, exported, regressed)

    # -- an aggregator restart brings the same series back ---------------------------------------------
    again, store = restored(db)
    try:
        assert scrape(again) == exported
    finally:
        store.close()


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def promtool_check(
    tmp_path: Path, exported: dict[tuple[str, tuple[tuple[str, str], ...]], float], regressed: set[tuple[str, str]]
) -> None:
    """A promtool unit test whose input is the exported comparison series (held for 30 minutes) and
    whose expectation is one firing alert per regressed metric and comparison, none for the others."""
    shutil.copy(ROOT / "monitoring" / "rules" / "trustwatch.rules.yml", tmp_path / "trustwatch.rules.yml")
    infos = {dict(k)["against"]: dict(k) for (name, k) in exported if name == names.COMPARISON_INFO}
    expected = {}
    for alert, against in (
        ("TrustwatchRegressionVsPrevious", "previous"),
        ("TrustwatchRegressionVsBaseline", "baseline"),
    ):
        samples = []
        for name, labels in sorted(exported):
            d = dict(labels)
            if (
                name != names.COMPARISON_DIFFERENCE
                or d["against"] != against
                or (d["task"], d["metric"]) not in regressed
            ):
                continue
            alert_labels = {k: v for k, v in d.items() if k != "against"}
            alert_labels.update(
                alertname=alert,
                alertstate="firing",
                severity="warning",
                base_run=infos[against]["base_run"],
                new_run=infos[against]["new_run"],
            )
            samples.append({"labels": _series("ALERTS", alert_labels), "value": 1})
        expected[alert] = samples
    assert all(expected.values())
    doc = {
        "rule_files": ["trustwatch.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": _series(name, {"job": "aggregator", **dict(labels)}), "values": f"{value!r}x30"}
                    for (name, labels), value in sorted(exported.items())
                ],
                "promql_expr_test": [
                    {"expr": f'ALERTS{{alertname="{alert}"}}', "eval_time": "10m", "exp_samples": samples}
                    for alert, samples in expected.items()
                ],
            }
        ],
    }
    (tmp_path / "two-days.test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    done = tools.run([tools.promtool(), "test", "rules", "two-days.test.yml"], cwd=tmp_path)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
