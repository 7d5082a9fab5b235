"""Grafana dashboards for trustwatch, generated from the metric names in :mod:`names`.

    python -m trustwatch.platform.telemetry.dashboards --out monitoring/grafana/dashboards/

writes one JSON file per dashboard (Grafana's dashboard model, provisioned by
monitoring/grafana/provisioning/). The output is deterministic: tests/ops regenerates it and compares
it with the committed files, and checks that every PromQL expression names only metrics from
:mod:`names`.

- ``trustwatch-overview``: trust scores per target / dimension / task with their 95% intervals and
  reference values, the items behind each metric (total / valid / error), run progress and the age of
  each target's latest complete run.
- ``trustwatch-operations``: throughput, consumer lag, latency quantiles, dead letters and errors per
  service (the pipeline's health).
- ``trustwatch-runs``: run against run (each target's newest run compared with its previous run and
  its pinned baseline: verdict, difference with its 95% CI, Holm-adjusted p-value, the compared runs),
  trends of every task metric across runs, one panel per dimension, and a per-task drill-down
  (score and interval, difference against the previous run and the baseline, verdicts over time).

The verdicts are exported as a state set (``trustwatch_comparison_verdict{verdict=...}`` = 1 for the
current one); panels show them as one code, :data:`VERDICT_CODE` (regressed -1, unchanged 0,
improved 1, inconclusive 2) with value mappings.

Panels are plain dicts built by the small helpers below, so the file needs nothing beyond the
standard library.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trustwatch.platform.telemetry import names as n

Json = dict[str, Any]

DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
#: The jobs of the long-running services (Prometheus job = service name; see monitoring/prometheus.yml).
SERVICE_JOBS = "generator|judge|dispatcher|aggregator"
QUANTILES = (0.5, 0.95, 0.99)
RATE = "[$__rate_interval]"


# -- building blocks --------------------------------------------------------------------------------


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False, table: bool = False) -> Json:
    """One PromQL query of a panel."""
    q: Json = {"datasource": DATASOURCE, "expr": expr, "refId": ref, "legendFormat": legend or "__auto"}
    if instant or table:
        q["instant"] = True
        q["range"] = False
    if table:
        q["format"] = "table"
    return q


def queries(*specs: tuple[str, str]) -> list[Json]:
    """Queries A, B, C, ... from (expr, legend) pairs."""
    return [query(e, legend, ref=chr(ord("A") + i)) for i, (e, legend) in enumerate(specs)]


def _field_defaults(unit: str, decimals: int | None, min_: float | None, max_: float | None) -> Json:
    d: Json = {"unit": unit}
    if decimals is not None:
        d["decimals"] = decimals
    if min_ is not None:
        d["min"] = min_
    if max_ is not None:
        d["max"] = max_
    return d


def timeseries(
    title: str,
    targets: list[Json],
    unit: str = "short",
    description: str = "",
    w: int = 12,
    h: int = 8,
    decimals: int | None = None,
    min_: float | None = None,
    max_: float | None = None,
    overrides: Sequence[Json] = (),
    bars: bool = False,
    stack: bool = False,
    **extra: Any,
) -> Json:
    custom: Json = {"lineWidth": 2, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    if bars:
        custom.update(drawStyle="bars", fillOpacity=80, lineWidth=1)
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults = _field_defaults(unit, decimals, min_, max_)
    defaults["custom"] = custom
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **extra,
    }


def stat(
    title: str,
    targets: list[Json],
    unit: str = "short",
    description: str = "",
    w: int = 6,
    h: int = 6,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
    mappings: Sequence[Json] = (),
    decimals: int | None = None,
) -> Json:
    defaults = _field_defaults(unit, decimals, None, None)
    defaults["thresholds"] = {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in thresholds]}
    defaults["mappings"] = list(mappings)
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def bargauge(
    title: str,
    targets: list[Json],
    unit: str,
    description: str = "",
    w: int = 12,
    h: int = 6,
    min_: float = 0,
    max_: float = 1,
) -> Json:
    defaults = _field_defaults(unit, None, min_, max_)
    defaults["thresholds"] = {"mode": "absolute", "steps": [{"value": None, "color": "blue"}]}
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def table(
    title: str,
    columns: Sequence[tuple[str, str]],
    by: Sequence[str],
    description: str = "",
    w: int = 24,
    h: int = 10,
    overrides: Sequence[Json] = (),
) -> Json:
    """A table of instant queries merged on the ``by`` labels; ``columns`` is (header, expr) pairs."""
    targets = [query(expr, ref=chr(ord("A") + i), table=True) for i, (_, expr) in enumerate(columns)]
    rename = {f"Value #{chr(ord('A') + i)}": header for i, (header, _) in enumerate(columns)}
    order = {label: i for i, label in enumerate([*by, *rename.values()])}
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"decimals": 3, "custom": {"align": "auto"}}, "overrides": list(overrides)},
        "options": {"showHeader": True, "sortBy": [{"displayName": by[0], "desc": False}]},
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True}, "renameByName": rename, "indexByName": order},
            },
        ],
    }


def state_timeline(
    title: str, targets: list[Json], mappings: Sequence[Json], description: str = "", w: int = 12, h: int = 8
) -> Json:
    """Discrete states over time (a value mapping names and colours each state)."""
    return {
        "type": "state-timeline",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {
            "defaults": {
                "mappings": list(mappings),
                "thresholds": {"mode": "absolute", "steps": [{"value": None, "color": "text"}]},
                "custom": {"fillOpacity": 80, "lineWidth": 0},
            },
            "overrides": [],
        },
        "options": {"showValue": "auto", "mergeValues": True, "rowHeight": 0.9, "legend": {"showLegend": False}},
    }


def row(title: str, repeat: str = "") -> Json:
    r: Json = {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}
    if repeat:
        r["repeat"] = repeat
    return r


def by_regex(pattern: str, **props: Any) -> Json:
    """A field override for every series whose name matches ``pattern``."""
    return {
        "matcher": {"id": "byRegexp", "options": pattern},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


def by_name_override(name: str, **props: Any) -> Json:
    """A field override for the field (table column) called ``name``."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


_DASHED_CI: Json = {
    "matcher": {"id": "byRegexp", "options": ".* CI (low|high)$"},
    "properties": [
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [6, 4]}},
        {"id": "custom.lineWidth", "value": 1},
        {"id": "custom.fillOpacity", "value": 0},
    ],
}


def variable(name: str, label: str, expr: str, multi: bool = True) -> Json:
    """A query variable over label values, with All selected by default."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": expr,
        "definition": expr,
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "hide": 0,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {"text": "All", "value": "$__all"} if multi else {},
        "options": [],
    }


DATASOURCE_VARIABLE: Json = {
    "type": "datasource",
    "name": "datasource",
    "label": "Data source",
    "query": "prometheus",
    "refresh": 1,
    "regex": "",
    "hide": 0,
    "current": {},
    "options": [],
}


def layout(panels: Iterable[Json]) -> list[Json]:
    """Number the panels and place them left to right, top to bottom, on Grafana's 24-column grid."""
    out, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        p = {**p, "id": i, "gridPos": {"x": x, "y": y, "w": w, "h": h}}
        out.append(p)
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return out


def custom_variable(name: str, label: str, values: Sequence[str]) -> Json:
    """A variable over fixed values, with All selected by default."""
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "multi": True,
        "includeAll": True,
        "allValue": "|".join(values),
        "hide": 0,
        "current": {"text": "All", "value": "$__all"},
        "options": [{"text": v, "value": v, "selected": False} for v in values],
    }


#: Links on every dashboard to the others (they share the tag).
LINKS: list[Json] = [
    {"type": "dashboards", "title": "trustwatch", "tags": ["trustwatch"], "asDropdown": True, "includeVars": True}
]


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], panels: list[Json], time_from: str
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["trustwatch"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "timezone": "",
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "annotations": {"list": []},
        "links": LINKS,
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "panels": layout(panels),
    }


# -- the dashboards ---------------------------------------------------------------------------------

_TRUST = 'target=~"$target", dimension=~"$dimension", task=~"$task"'
_KEY = "target, dimension, task, metric"


def overview() -> Json:
    def latest(name: str, extra: str = "") -> str:
        sel = _TRUST + (f", {extra}" if extra else "")
        return f"max by ({_KEY}) ({name}{{{sel}}})"

    scores = table(
        "Latest complete run: score, 95% interval, reference value, items",
        [
            ("score", latest(n.TRUST_SCORE)),
            ("CI low", latest(n.TRUST_SCORE_CI, 'bound="low"')),
            ("CI high", latest(n.TRUST_SCORE_CI, 'bound="high"')),
            ("reference", latest(n.TRUST_SCORE_REFERENCE)),
            ("reference exact", latest(n.TRUST_SCORE_REFERENCE_EXACT)),
            ("items", latest(n.TRUST_SCORE_ITEMS, 'kind="total"')),
            ("valid", latest(n.TRUST_SCORE_ITEMS, 'kind="valid"')),
            ("invalid", latest(n.TRUST_SCORE_ITEMS, 'kind="invalid"')),
            ("errors", latest(n.TRUST_SCORE_ITEMS, 'kind="error"')),
        ],
        by=["target", "dimension", "task", "metric"],
        description="trustwatch's headline value (corrected where the TrustLLM toolkit is wrong) beside the "
        "reference-compatible value (reference exact = 1: computed with the reference toolkit's own "
        "judges; 0: approximate), with the items behind it: total = valid + invalid (replies the "
        "judge could not read) + errors (generation or judge failures).",
        h=12,
    )
    last_run = stat(
        "Time since the latest complete run",
        [query(f'time() - max by (target) ({n.LAST_RUN_COMPLETED}{{target=~"$target"}})', "{{target}}", instant=True)],
        unit="s",
        w=12,
        h=6,
        thresholds=((None, "green"), (26 * 3600, "red")),
        description="Red after 26 hours: the daily run is late (alert TrustwatchNoCompletedRun).",
    )
    progress = bargauge(
        "Run progress (judgments stored / expected)",
        [
            query(
                (
                    f'max by (run, target) ({n.RUN_PROGRESS}{{kind="stored", target=~"$target"}})'
                    f' / max by (run, target) ({n.RUN_PROGRESS}{{kind="expected", target=~"$target"}})'
                ),
                "{{target}} {{run}}",
                instant=True,
            )
        ],
        unit="percentunit",
        w=12,
        h=6,
    )
    overdue = stat(
        "Overdue runs: judgments still missing past the deadline",
        [
            query(
                f'max by (run, target) ({n.RUN_OVERDUE_MISSING}{{target=~"$target"}})',
                "{{target}} {{run}}",
                instant=True,
            )
        ],
        w=24,
        h=4,
        thresholds=((None, "red"),),
        description="Incomplete runs past their deadline (TRUSTWATCH_RUN_DEADLINE_S; alert TrustwatchRunOverdue); "
        "`trustwatch report RUN --json` lists the missing pairs. Empty while no run is overdue.",
    )
    history = timeseries(
        "$task",
        queries(
            (f"max by ({_KEY}) ({n.TRUST_SCORE}{{{_TRUST}}})", "{{target}} {{metric}}"),
            (f'max by ({_KEY}) ({n.TRUST_SCORE_CI}{{{_TRUST}, bound="low"}})', "{{target}} {{metric}} CI low"),
            (f'max by ({_KEY}) ({n.TRUST_SCORE_CI}{{{_TRUST}, bound="high"}})', "{{target}} {{metric}} CI high"),
            (f"max by ({_KEY}) ({n.TRUST_SCORE_REFERENCE}{{{_TRUST}}})", "{{target}} {{metric}} reference"),
        ),
        description="Each task metric of the latest complete run over time. The dashed lines around each score "
        "bound its 95% interval; the dotted line is the reference-compatible value.",
        w=8,
        decimals=3,
        overrides=[
            by_regex(
                ".* CI (low|high)$",
                custom__lineStyle={"fill": "dash", "dash": [6, 4]},
                custom__lineWidth=1,
                custom__fillOpacity=0,
                custom__hideFrom={"legend": True, "tooltip": False, "viz": False},
            ),
            by_regex(".* reference$", custom__lineStyle={"fill": "dot"}, custom__lineWidth=1, custom__fillOpacity=0),
        ],
        repeat="task",
        repeatDirection="h",
        maxPerRow=3,
    )
    items = timeseries(
        "Items behind each task (total / valid / error)",
        queries((f"max by (target, task, kind) ({n.TRUST_SCORE_ITEMS}{{{_TRUST}}})", "{{target}} {{task}} {{kind}}")),
        w=12,
    )
    error_share = timeseries(
        "Share of items that errored (generation or judging)",
        queries(
            (
                (
                    f'max by (target, task) ({n.TRUST_SCORE_ITEMS}{{{_TRUST}, kind="error"}})'
                    f' / max by (target, task) ({n.TRUST_SCORE_ITEMS}{{{_TRUST}, kind="total"}})'
                ),
                "{{target}} {{task}}",
            )
        ),
        unit="percentunit",
        w=12,
        min_=0,
    )
    stored = timeseries(
        "Judgments stored per second (new / redelivered duplicates)",
        queries(
            (f"sum(rate({n.JUDGMENTS_STORED}{RATE}))", "stored"),
            (f"sum(rate({n.JUDGMENTS_DUPLICATE}{RATE}))", "duplicate"),
        ),
        unit="ops",
        w=24,
        h=6,
    )
    return dashboard(
        "trustwatch-overview",
        "trustwatch: trust scores",
        "TrustLLM trust metrics per target, dimension and task, with 95% intervals and reference values.",
        [
            variable("target", "Target", f"label_values({n.TRUST_SCORE}, target)"),
            variable("dimension", "Dimension", f'label_values({n.TRUST_SCORE}{{target=~"$target"}}, dimension)'),
            variable(
                "task", "Task", f'label_values({n.TRUST_SCORE}{{target=~"$target", dimension=~"$dimension"}}, task)'
            ),
        ],
        [
            row("Latest runs"),
            scores,
            last_run,
            progress,
            overdue,
            row("Scores over time, one panel per task"),
            history,
            row("Items and judgments"),
            items,
            error_share,
            stored,
        ],
        time_from="now-30d",
    )


def _quantiles(histogram: str, by: str, selector: str) -> list[Json]:
    return queries(
        *[
            (
                f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram}_bucket{{{selector}}}{RATE})))",
                f"{{{{{by}}}}} p{round(q * 100)}",
            )
            for q in QUANTILES
        ]
    )


def operations() -> Json:
    svc = 'service=~"$service"'
    tgt = 'target=~"$target"'
    ev = 'evaluator=~"$evaluator"'
    up = stat(
        "Services up",
        [query(f'up{{job=~"{SERVICE_JOBS}"}}', "{{job}} {{instance}}", instant=True)],
        w=24,
        h=4,
        thresholds=((None, "red"), (1, "green")),
        mappings=[{"type": "value", "options": {"0": {"text": "DOWN"}, "1": {"text": "UP"}}}],
    )
    errors = timeseries(
        "Errors per service (per second)",
        queries(
            (f"sum by (service) (rate({n.DEAD_LETTERS}{{{svc}}}{RATE}))", "{{service}}: dead letters"),
            (f'sum by (target) (rate({n.COMPLETIONS}{{{tgt}, status="error"}}{RATE}))', "generator {{target}}: failed"),
            (f'sum by (evaluator) (rate({n.VERDICTS}{{{ev}, outcome="error"}}{RATE}))', "judge {{evaluator}}: errors"),
        ),
        unit="ops",
        w=12,
    )
    dlq = timeseries(
        "Dead letters (per interval, by reason)",
        queries(
            (
                f"sum by (service, reason_kind) (increase({n.DEAD_LETTERS}{{{svc}}}{RATE}))",
                "{{service}} {{reason_kind}}",
            )
        ),
        w=12,
        bars=True,
    )
    consumed = timeseries(
        "Messages consumed per second",
        queries((f"sum by (service, topic) (rate({n.MESSAGES_CONSUMED}{{{svc}}}{RATE}))", "{{service}} ← {{topic}}")),
        unit="ops",
        w=8,
    )
    produced = timeseries(
        "Messages produced per second",
        queries((f"sum by (service, topic) (rate({n.MESSAGES_PRODUCED}{{{svc}}}{RATE}))", "{{service}} → {{topic}}")),
        unit="ops",
        w=8,
    )
    lag = timeseries(
        "Consumer lag (uncommitted messages)",
        queries((f"sum by (service) ({n.CONSUMER_LAG}{{{svc}}})", "{{service}}")),
        w=8,
        min_=0,
    )
    loop = timeseries(
        "Transport loop: workers healthy, commit failures",
        queries(
            (f"min by (service) ({n.WORKER_HEALTHY}{{{svc}}})", "{{service}} healthy (1) / backing off (0)"),
            (f"sum by (service) (increase({n.COMMIT_FAILURES}{{{svc}}}{RATE}))", "{{service}} commit failures"),
        ),
        w=24,
        min_=0,
        description="A worker backs off while a dependency is down; a commit failure means the batch is redelivered.",
    )
    batch = timeseries("Batch time, poll to commit", _quantiles(n.BATCH_SECONDS, "service", svc), unit="s", w=8)
    gen_lat = timeseries("Generation time per reply", _quantiles(n.GENERATION_SECONDS, "target", tgt), unit="s", w=8)
    eval_lat = timeseries(
        "Evaluate call time (a batch)", _quantiles(n.EVALUATE_SECONDS, "evaluator", ev), unit="s", w=8
    )
    completions = timeseries(
        "Completions per second by status",
        queries((f"sum by (target, status) (rate({n.COMPLETIONS}{{{tgt}}}{RATE}))", "{{target}} {{status}}")),
        unit="ops",
        w=8,
        stack=True,
    )
    error_ratio = timeseries(
        "Generation error ratio",
        queries(
            (
                (
                    f'sum by (target) (rate({n.COMPLETIONS}{{{tgt}, status="error"}}{RATE}))'
                    f" / sum by (target) (rate({n.COMPLETIONS}{{{tgt}}}{RATE}))"
                ),
                "{{target}}",
            )
        ),
        unit="percentunit",
        w=8,
        min_=0,
        max_=1,
        description="Alert TrustwatchGenerationErrorRatioHigh fires above 10% for 10 minutes.",
    )
    tokens = timeseries(
        "Tokens generated per second",
        queries((f"sum by (target, backend) (rate({n.GENERATED_TOKENS}{{{tgt}}}{RATE}))", "{{target}} ({{backend}})")),
        unit="ops",
        w=8,
    )
    verdicts = timeseries(
        "Verdicts per second by outcome",
        queries((f"sum by (evaluator, outcome) (rate({n.VERDICTS}{{{ev}}}{RATE}))", "{{evaluator}} {{outcome}}")),
        unit="ops",
        w=12,
        stack=True,
    )
    judgments = timeseries(
        "Aggregator: judgments stored / duplicates per second",
        queries(
            (f"sum(rate({n.JUDGMENTS_STORED}{RATE}))", "stored"),
            (f"sum(rate({n.JUDGMENTS_DUPLICATE}{RATE}))", "duplicate (redelivered)"),
        ),
        unit="ops",
        w=12,
    )
    return dashboard(
        "trustwatch-operations",
        "trustwatch: operations",
        "Throughput, consumer lag, latency, dead letters and errors of the trustwatch services.",
        [
            variable("service", "Service", f"label_values({n.MESSAGES_CONSUMED}, service)"),
            variable("target", "Target", f"label_values({n.COMPLETIONS}, target)"),
            variable("evaluator", "Evaluator", f"label_values({n.VERDICTS}, evaluator)"),
        ],
        [
            row("Health"),
            up,
            errors,
            dlq,
            row("Throughput and lag"),
            consumed,
            produced,
            lag,
            loop,
            row("Latency (p50 / p95 / p99)"),
            batch,
            gen_lat,
            eval_lat,
            row("Generator"),
            completions,
            error_ratio,
            tokens,
            row("Judge and aggregator"),
            verdicts,
            judgments,
        ],
        time_from="now-6h",
    )


#: The code a verdict is shown as (from the state set ``trustwatch_comparison_verdict``).
VERDICT_CODE = {"regressed": -1, "unchanged": 0, "improved": 1, "inconclusive": 2}
_VERDICT_COLOUR = {"regressed": "red", "unchanged": "green", "improved": "blue", "inconclusive": "text"}
VERDICT_MAPPINGS: list[Json] = [
    {
        "type": "value",
        "options": {str(code): {"text": v, "color": _VERDICT_COLOUR[v], "index": i}},
    }
    for i, (v, code) in enumerate(VERDICT_CODE.items())
]


def verdict_code(selector: str, by: str) -> str:
    """PromQL: the current verdict of each comparison series as its :data:`VERDICT_CODE`."""
    return " + ".join(
        f'{code} * max by ({by}) ({n.COMPARISON_VERDICT}{{{selector}, verdict="{v}"}})'
        for v, code in VERDICT_CODE.items()
        if code != 0
    )


def runs() -> Json:
    tgt = 'target=~"$target"'
    cmp = f'{tgt}, against=~"$against", dimension=~"$dimension"'
    key = "target, against, dimension, task, metric, direction"
    regressed = stat(
        "Regressed metrics",
        [
            query(
                f'sum by (target, against) ({n.COMPARISON_VERDICT}{{{cmp}, verdict="regressed"}})',
                "{{target}} vs {{against}}",
                instant=True,
            )
        ],
        w=8,
        h=6,
        thresholds=((None, "green"), (1, "red")),
        description="Metrics whose verdict is regressed in each target's newest run, against its previous run "
        "and its pinned baseline (alerts TrustwatchRegressionVsPrevious / TrustwatchRegressionVsBaseline).",
    )
    compared = table(
        "Compared runs",
        [("compared", f"max by (target, against, base_run, new_run, comparable) ({n.COMPARISON_INFO}{{{tgt}}})")],
        by=["target", "against", "base_run", "new_run", "comparable"],
        description="Which runs each comparison compared. comparable=false: the baseline has another comparable "
        "key (suite, sample, target, judges or dataset) and was not compared.",
        w=16,
        h=6,
    )
    verdict_col = by_name_override(
        "verdict",
        mappings=VERDICT_MAPPINGS,
        custom__cellOptions={"type": "color-background"},
        decimals=0,
    )
    p_col = by_name_override(
        "p adjusted (Holm)",
        decimals=4,
        thresholds={"mode": "absolute", "steps": [{"value": None, "color": "red"}, {"value": 0.05, "color": "text"}]},
        custom__cellOptions={"type": "color-text"},
    )
    versus = table(
        "Run vs run: verdict, difference new - base with its 95% paired CI, adjusted p-value",
        [
            ("verdict", verdict_code(cmp, key)),
            ("difference", f"max by ({key}) ({n.COMPARISON_DIFFERENCE}{{{cmp}}})"),
            ("CI low", f'max by ({key}) ({n.COMPARISON_DIFFERENCE_CI}{{{cmp}, bound="low"}})'),
            ("CI high", f'max by ({key}) ({n.COMPARISON_DIFFERENCE_CI}{{{cmp}, bound="high"}})'),
            ("p adjusted (Holm)", f"max by ({key}) ({n.COMPARISON_P_ADJUSTED}{{{cmp}}})"),
        ],
        by=["target", "against", "dimension", "task", "metric", "direction"],
        description="Each metric of the newest run against the previous run and the baseline (trustwatch "
        "compare): paired tests on the items both runs judged, p-values adjusted by Holm over the comparison. "
        "regressed/improved: adjusted p < 0.05 in the metric's direction; unchanged: the CI lies within "
        "+-0.02; inconclusive otherwise (also metrics that are no mean of item outcomes: not tested).",
        h=14,
        overrides=[verdict_col, p_col],
    )
    trend = timeseries(
        "$dimension: every task metric across runs",
        queries(
            (
                f'max by (target, task, metric) ({n.TRUST_SCORE}{{{tgt}, dimension=~"$dimension"}})',
                "{{target}} {{task}} {{metric}}",
            )
        ),
        description="The value of each task metric of the newest complete run over time: a step is a new run.",
        w=12,
        decimals=3,
        repeat="dimension",
        repeatDirection="h",
        maxPerRow=2,
    )
    one = f'{tgt}, task=~"$task"'
    score = timeseries(
        "$task: score and 95% interval",
        queries(
            (f"max by (target, metric) ({n.TRUST_SCORE}{{{one}}})", "{{target}} {{metric}}"),
            (f'max by (target, metric) ({n.TRUST_SCORE_CI}{{{one}, bound="low"}})', "{{target}} {{metric}} CI low"),
            (f'max by (target, metric) ({n.TRUST_SCORE_CI}{{{one}, bound="high"}})', "{{target}} {{metric}} CI high"),
        ),
        w=12,
        decimals=3,
        overrides=[_DASHED_CI],
    )
    diff = timeseries(
        "$task: difference against the previous run and the baseline (95% CI)",
        queries(
            (
                f'max by (target, metric, against) ({n.COMPARISON_DIFFERENCE}{{{one}, against=~"$against"}})',
                "{{target}} {{metric}} vs {{against}}",
            ),
            (
                f'max by (target, metric, against) ({n.COMPARISON_DIFFERENCE_CI}{{{one}, against=~"$against", '
                'bound="low"})',
                "{{target}} {{metric}} vs {{against}} CI low",
            ),
            (
                f'max by (target, metric, against) ({n.COMPARISON_DIFFERENCE_CI}{{{one}, against=~"$against", '
                'bound="high"})',
                "{{target}} {{metric}} vs {{against}} CI high",
            ),
        ),
        w=12,
        decimals=3,
        overrides=[_DASHED_CI],
    )
    verdicts = state_timeline(
        "$task: verdict over time",
        [
            query(
                verdict_code(f'{one}, against=~"$against"', "target, metric, against"),
                "{{target}} {{metric}} vs {{against}}",
            )
        ],
        VERDICT_MAPPINGS,
        w=12,
    )
    p_adj = timeseries(
        "$task: adjusted p-value (Holm) of the paired test",
        queries(
            (
                f'max by (target, metric, against) ({n.COMPARISON_P_ADJUSTED}{{{one}, against=~"$against"}})',
                "{{target}} {{metric}} vs {{against}}",
            )
        ),
        w=12,
        min_=0,
        max_=1,
        description="Below 0.05 the difference is significant after Holm's adjustment over the comparison.",
    )
    items = timeseries(
        "$task: items behind each metric (total / valid / error)",
        queries((f"max by (target, metric, kind) ({n.TRUST_SCORE_ITEMS}{{{one}}})", "{{target}} {{metric}} {{kind}}")),
        w=24,
        h=6,
    )
    return dashboard(
        "trustwatch-runs",
        "trustwatch: runs",
        "Each target's newest run against its previous run and its pinned baseline, trends across runs, "
        "and one task in detail. The pipeline's health is on trustwatch: operations.",
        [
            variable("target", "Target", f"label_values({n.TRUST_SCORE}, target)"),
            custom_variable("against", "Against", ("previous", "baseline")),
            variable("dimension", "Dimension", f'label_values({n.TRUST_SCORE}{{target=~"$target"}}, dimension)'),
            variable("task", "Task (drill-down)", f'label_values({n.TRUST_SCORE}{{target=~"$target"}}, task)', False),
        ],
        [
            row("Run vs run"),
            regressed,
            compared,
            versus,
            row("Trends across runs, one panel per dimension"),
            trend,
            row("Drill-down: $task"),
            score,
            diff,
            verdicts,
            p_adj,
            items,
        ],
        time_from="now-30d",
    )


DASHBOARDS = {
    "trustwatch-overview.json": overview,
    "trustwatch-operations.json": operations,
    "trustwatch-runs.json": runs,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard, byte-for-byte stable."""
    return {
        name: json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def expressions(dash: Json) -> list[str]:
    """Every PromQL expression in a dashboard: panel queries and variable queries."""
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m trustwatch.platform.telemetry.dashboards", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", required=True, type=Path, help="folder to write the dashboard JSON files into")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
