"""Just enough PromQL reading for the ops tests: which metric names an expression selects, and the
expression with Grafana's template variables filled in so that Prometheus can parse it."""

from __future__ import annotations

import re

from trustwatch.platform.telemetry import names

#: Suffixes Prometheus client libraries add to a declared histogram / counter name.
SERIES_SUFFIXES = ("_bucket", "_sum", "_count", "_created")
#: Series Prometheus itself writes for every scrape target.
SYNTHETIC = {"up"}
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression (or a Grafana ``label_values(...)`` query) selects."""
    s = re.sub(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", r"\1", expr, flags=re.S)
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', s)  # string literals
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\boffset\s+-?\w+", "", s)
    found = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue  # a function call or an operator keyword
        found.add(m.group(0))
    return found


def declared(name: str) -> bool:
    if name in names.ALL or name in SYNTHETIC:
        return True
    return any(name.endswith(suf) and name[: -len(suf)] in names.ALL for suf in SERIES_SUFFIXES)


def base_name(name: str) -> str:
    for suf in SERIES_SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in names.ALL:
            return name[: -len(suf)]
    return name


def grafana_to_promql(expr: str, rate_interval: str = "5m") -> str:
    """Substitute Grafana's variables: ``$__rate_interval`` and every ``$var`` in a regex matcher."""
    expr = re.sub(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", r"\1", expr, flags=re.S)
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)
