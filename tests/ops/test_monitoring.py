"""monitoring/: Prometheus configs and alert rules pass promtool (checks and unit tests); the Grafana
dashboards are generated deterministically from names.py; every PromQL expression names only
declared metrics."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops import tools
from tests.ops.promql import base_name, declared, grafana_to_promql, metric_names
from trustwatch.platform.telemetry import dashboards, names

MON = tools.ROOT / "monitoring"
RULES = MON / "rules" / "trustwatch.rules.yml"
RULE_TESTS = MON / "rules" / "trustwatch.rules.test.yml"
DASHBOARD_DIR = MON / "grafana" / "dashboards"


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {r.get("alert") or r["record"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard_exprs() -> dict[str, list[str]]:
    return {name: dashboards.expressions(build()) for name, build in dashboards.DASHBOARDS.items()}


# -- promtool ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_check_config(promtool_bin: str, config: str) -> None:
    done = tools.run([promtool_bin, "check", "config", str(MON / config)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules(promtool_bin: str) -> None:
    done = tools.run([promtool_bin, "check", "rules", str(RULES)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules(promtool_bin: str) -> None:
    done = tools.run([promtool_bin, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for t in case.get("alert_rule_test", []):
            (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
    alerts = set(rule_exprs())
    assert alerts == fired, f"alerts never shown firing: {alerts - fired}"
    assert alerts == quiet, f"alerts never shown staying quiet: {alerts - quiet}"
    assert len(alerts) >= 6


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_section() -> None:
    runbooks = tools.ROOT / "docs" / "runbooks.md"
    sections = {
        _slug(line.lstrip("#")) for line in runbooks.read_text(encoding="utf-8").splitlines() if line.startswith("## ")
    }
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    for r in alerts:
        url = r["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == "docs/runbooks.md" and anchor == r["alert"].lower(), (r["alert"], url)
        assert anchor in sections, f"{r['alert']}: no section '## {r['alert']}' in docs/runbooks.md"
    assert sections == {r["alert"].lower() for r in alerts}, "a runbook section without its alert"


def test_the_regression_alert_reads_the_direction_label() -> None:
    expr = rule_exprs()["TrustScoreRegression"]
    assert 'direction="higher_is_better"' in expr and 'direction="lower_is_better"' in expr


def test_dashboard_queries_parse(promtool_bin: str, tmp_path: Path) -> None:
    """promtool parses every dashboard expression (as a recording rule, with variables filled in)."""
    rules = [
        {"record": f"trustwatch:dashboard_check_{i}", "expr": grafana_to_promql(e)}
        for i, e in enumerate(e for exprs in dashboard_exprs().values() for e in exprs)
    ]
    f = tmp_path / "dashboard-queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    done = tools.run([promtool_bin, "check", "rules", str(f)])
    assert done.returncode == 0, done.stdout + done.stderr


# -- metric names -----------------------------------------------------------------------------------


def test_the_name_extractor_reads_promql() -> None:
    assert metric_names('sum by (le, x) (rate(foo_bucket{a="b", c=~"$d"}[$__rate_interval]))') == {"foo_bucket"}
    assert metric_names('max by (t) (a offset 1d) - on (t) b > 0.05 and c{x="y"} < bool 26 * 3600') == {"a", "b", "c"}
    assert metric_names('label_values(bar{target=~"$target"}, dimension)') == {"bar"}
    assert metric_names("time() - max(up) > 1e3") == {"up"}
    assert declared("trustwatch_batch_seconds_bucket") and declared("up")
    assert not declared("trustwatch_batch_seconds_total") and not declared("trustwatch_nope")


def test_alert_rules_name_only_declared_metrics() -> None:
    bad = {alert: sorted(n for n in metric_names(e) if not declared(n)) for alert, e in rule_exprs().items()}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"metrics not in trustwatch.platform.telemetry.names: {bad}"
    assert all(metric_names(e) for e in rule_exprs().values())


def test_dashboards_name_only_declared_metrics() -> None:
    for dash, exprs in dashboard_exprs().items():
        for e in exprs:
            found = metric_names(e)
            assert found, f"{dash}: no metric in {e!r}"
            bad = sorted(n for n in found if not declared(n))
            assert not bad, f"{dash}: {bad} are not in trustwatch.platform.telemetry.names ({e})"


def test_committed_dashboards_name_only_declared_metrics() -> None:
    """The same check on the JSON files as committed (what Grafana actually loads)."""
    for f in sorted(DASHBOARD_DIR.glob("*.json")):
        for e in dashboards.expressions(json.loads(f.read_text(encoding="utf-8"))):
            assert all(declared(n) for n in metric_names(e)), f"{f.name}: {e}"


def test_dashboards_show_every_declared_metric() -> None:
    shown = {base_name(n) for exprs in dashboard_exprs().values() for e in exprs for n in metric_names(e)}
    assert set(names.ALL) <= shown, f"declared but on no dashboard: {set(names.ALL) - shown}"


# -- dashboards -------------------------------------------------------------------------------------


def test_dashboards_are_deterministic_and_match_the_committed_files() -> None:
    first, second = dashboards.render(), dashboards.render()
    assert first == second
    committed = {f.name: f.read_text(encoding="utf-8") for f in DASHBOARD_DIR.glob("*.json")}
    regenerate = "regenerate: python -m trustwatch.platform.telemetry.dashboards --out monitoring/grafana/dashboards/"
    assert set(committed) == set(first), regenerate
    for name, text in first.items():
        assert committed[name] == text, f"{name} is stale; {regenerate}"


def test_the_generator_command_writes_the_same_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trustwatch.platform.telemetry.dashboards", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for f in DASHBOARD_DIR.glob("*.json"):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes()


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    dash: dict[str, Any] = dashboards.DASHBOARDS[name]()
    panels = dash["panels"]
    assert dash["uid"] and len(dash["uid"]) <= 40
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert "datasource" in variables
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, p["title"]
        assert p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        texts = [t["expr"] for t in p["targets"]] + [p["title"], p.get("repeat", "")]
        used = set(re.findall(r"\$(\w+)", json.dumps(texts)))
        used.discard("__rate_interval")
        assert used <= variables, f"{p['title']}: undefined variables {used - variables}"
    # Panels do not overlap.
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_grafana_provisioning_loads_the_dashboards() -> None:
    provider = yaml.safe_load((MON / "grafana/provisioning/dashboards/trustwatch.yml").read_text(encoding="utf-8"))
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((tools.ROOT / "docker/compose.yaml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../monitoring/grafana/dashboards:{path}:ro" in mounts
    assert "../monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    ds = yaml.safe_load((MON / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    assert ds["datasources"][0]["type"] == "prometheus"


def test_prometheusrule_copy_is_current() -> None:
    spec = importlib.util.spec_from_file_location("prometheusrule", MON / "prometheusrule.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.OUT.read_text(encoding="utf-8") == mod.render(), "run: python monitoring/prometheusrule.py"


# -- alert rules on the series the services really export -------------------------------------------


def _aggregator_comparison_series(*days: tuple[str, int, float, float, int]) -> list[dict[str, str]]:
    """promtool input series: the trustwatch_comparison_* samples an Aggregator exports after recording
    these runs of target "m" (run, created, misuse refusal share, exaggerated-safety refusal share,
    seed), each held for an hour, labelled as Prometheus scrapes them (job)."""
    from prometheus_client import CollectorRegistry

    from tests.aggregator.test_comparisons import day, record
    from trustwatch.aggregator.service import Aggregator
    from trustwatch.platform.store import Store
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    with tempfile.TemporaryDirectory() as d:
        store = Store(f"sqlite:///{d}/results.db")
        try:
            agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
            for run, created, misuse, xs, seed in days:
                record(agg, day(run, created, misuse, xs, seed=seed))
            samples = [
                s
                for m in agg.metrics.registry.collect()
                for s in m.samples
                if s.name.startswith("trustwatch_comparison_")
            ]
        finally:
            store.close()
    return [
        {
            "series": s.name
            + "{"
            + ", ".join(f'{k}="{v}"' for k, v in {"job": "aggregator", **s.labels}.items())
            + "}",
            "values": f"{s.value!r}x60",
        }
        for s in samples
    ]


def _current_verdicts(series: list[dict[str, str]]) -> dict[str, str]:
    """task -> the verdict whose state-set series is 1, of the input series above."""
    return {
        re.search(r'task="([^"]+)"', s["series"])[1]: re.search(r'verdict="([^"]+)"', s["series"])[1]  # type: ignore[index]  # the series always has both labels
        for s in series
        if s["series"].startswith("trustwatch_comparison_verdict{") and s["values"].startswith("1.0x")
    }


def _promtool_alert_test(
    promtool_bin: str, tmp_path: Path, alert: str, series: list[dict[str, str]], exp: list[dict[str, str]]
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of one alert (annotations dropped: only the expression is under test)
    over these input series, expecting these label sets firing 10 minutes in."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    (rule,) = [
        {k: v for k, v in r.items() if k != "annotations"}
        for g in groups
        for r in g["rules"]
        if r.get("alert") == alert
    ]
    (tmp_path / "rule.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "under-test", "rules": [rule]}]}), encoding="utf-8"
    )
    case = {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": "10m", "alertname": alert, "exp_alerts": [{"exp_labels": e} for e in exp]}],
    }
    test = {"rule_files": ["rule.yml"], "evaluation_interval": "1m", "tests": [case]}
    (tmp_path / "rule.test.yml").write_text(yaml.safe_dump(test), encoding="utf-8")
    return tools.run([promtool_bin, "test", "rules", "rule.test.yml"], cwd=tmp_path)


def test_the_over_refusal_alert_reads_what_the_aggregator_exports(promtool_bin: str, tmp_path: Path) -> None:
    """TrustwatchOverRefusalRising on the comparison series a real Aggregator exports (names and labels
    as the aggregator sets them, not as the rules' unit tests write them): day 2 refuses more harmless
    prompts (exaggerated-safety RtA regressed) and more misuse prompts (misuse RtA improved), so the
    alert fires against the previous run; day 3 then refuses fewer misuse prompts (misuse regressed
    too): quiet."""
    from trustwatch.benchmark.compare import IMPROVED, REGRESSED

    d1, d2 = ("d1", 1_000, 0.6, 0.1, 1), ("d2", 2_000, 0.9, 0.4, 2)
    series = _aggregator_comparison_series(d1, d2)
    assert _current_verdicts(series) == {"safety/exaggerated_safety": REGRESSED, "safety/misuse": IMPROVED}
    fired = {"severity": "info", "target": "m", "against": "previous", "base_run": "d1", "new_run": "d2"}
    done = _promtool_alert_test(promtool_bin, tmp_path, "TrustwatchOverRefusalRising", series, [fired])
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr

    d3 = ("d3", 3_000, 0.5, 0.7, 3)
    series = _aggregator_comparison_series(d1, d2, d3)
    assert _current_verdicts(series) == {"safety/exaggerated_safety": REGRESSED, "safety/misuse": REGRESSED}
    done = _promtool_alert_test(promtool_bin, tmp_path, "TrustwatchOverRefusalRising", series, [])
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


# -- label matchers ---------------------------------------------------------------------------------

#: Labels Prometheus adds to every scraped series, and a histogram bucket's bound.
SCRAPE_LABELS = {"job", "instance"}


def exported_labels() -> dict[str, set[str]]:
    """Series name -> the label names the services' metric objects give it (ServiceMetrics), plus
    the scrape's; histograms' _bucket/_sum/_count series under their own names (`le` on buckets)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    out: dict[str, set[str]] = {"up": set(SCRAPE_LABELS)}
    for obj in vars(ServiceMetrics(CollectorRegistry())).values():
        if not isinstance(getattr(obj, "_labelnames", None), tuple):
            continue
        name, labels = obj._name, set(obj._labelnames) | SCRAPE_LABELS
        if isinstance(obj, Counter):
            out[f"{name}_total"] = labels
        elif isinstance(obj, Histogram):
            out.update({f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels})
        else:
            out[name] = labels
    return out


def matcher_problems(expr: str, labels: dict[str, set[str]]) -> list[str]:
    """Label matchers `name{label...}` of an expression naming a label its series never carries (a
    selector that matches nothing, so a panel stays empty or an alert never fires)."""
    problems = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", grafana_to_promql(expr)):
        name, body = m.group(1), re.sub(r'"(?:[^"\\]|\\.)*"', '""', m.group(2))
        used = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body))
        if name in labels and used - labels[name]:
            problems.append(f"{name}: no label {sorted(used - labels[name])} in {expr!r}")
    return problems


def test_every_declared_series_has_its_labels_known() -> None:
    exported = {base_name(n) for n in exported_labels()}
    assert set(names.ALL) | {"up"} == exported, "ServiceMetrics and names.py disagree"


def test_queries_match_only_labels_the_series_carry() -> None:
    """Every label a dashboard panel (the runs dashboard's verdict tables included) or an alert rule
    matches on is one the services export on that series."""
    labels = exported_labels()
    exprs = [e for exprs in dashboard_exprs().values() for e in exprs] + list(rule_exprs().values())
    problems = [p for e in exprs for p in matcher_problems(e, labels)]
    assert not problems, "\n".join(problems)
    runs = dashboard_exprs()["trustwatch-runs.json"]
    assert any("against" in e for e in runs), "the runs dashboard reads the comparison by `against`"


def test_the_matcher_check_catches_a_missing_label() -> None:
    """Guards the test above."""
    labels = exported_labels()
    assert matcher_problems('trustwatch_comparison_verdict{against="previous", verdict="regressed"}', labels) == []
    assert matcher_problems('trustwatch_comparison_info{task="safety/misuse"}', labels)
    assert matcher_problems('sum(rate(trustwatch_batch_seconds_bucket{service=~"$service", le="1"}[5m]))', labels) == []
