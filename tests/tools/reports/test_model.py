"""The typed report the renderers take: built once from report JSON (or Report objects)."""

from __future__ import annotations

import copy

import pytest

from tests.tools.test_reports import fixtures, metric, report, task
from trustwatch.benchmark.scoring import Report as RunResult
from trustwatch.benchmark.scoring import TaskReport
from trustwatch.benchmark.tasks.base import Metric
from trustwatch.tools.reports import (
    MetricEntry,
    Report,
    ReportError,
    RunReport,
    TaskSection,
    build_report,
    to_html,
    to_markdown,
)


def test_build_report_types_every_run_task_and_metric():
    built = build_report(fixtures())
    assert isinstance(built, Report) and built.multi
    assert [r.label for r in built.runs] == ["alpha-7b", "beta-chat", "gamma-base"]
    alpha, beta, gamma = built.runs
    assert isinstance(alpha, RunReport) and alpha.complete and not beta.complete
    misuse = alpha.tasks["safety/misuse"]
    assert isinstance(misuse, TaskSection) and misuse.n_items == 100 and misuse.error == ""
    rta = misuse.metrics["RtA"]
    assert isinstance(rta, MetricEntry)
    assert (rta.value, rta.n_total, rta.n_invalid, rta.higher_is_better) == (0.90, 100, 7, True)
    assert alpha.tasks["safety/exaggerated_safety"].metrics["RtA"].higher_is_better is False
    assert gamma.tasks["privacy/privacy_leakage"].error == "ValueError: no judgments"
    assert gamma.tasks["privacy/privacy_leakage"].metrics == {}
    # dimensions in TrustLLM order, each with the tasks any run has
    assert list(built.dims) == ["truthfulness", "safety", "privacy", "ethics"]
    assert built.dims["privacy"] == ["privacy/privacy_leakage"]


def test_renderers_take_the_typed_report_and_a_built_report_passes_through():
    reports = fixtures()
    built = build_report(reports)
    assert build_report(built) is built
    assert to_markdown(built) == to_markdown(reports)
    assert to_html(built) == to_html(reports)


def test_report_objects_are_built_through_their_json():
    m = Metric(value=0.25, reference_value=0.5, n_total=4, n_valid=4, n_error=0, reference="approximate")
    run = RunResult("r1", "m", {"safety/misuse": TaskReport("safety/misuse", {"RtA": m}, 4)})
    (built,) = build_report([run]).runs
    entry = built.tasks["safety/misuse"].metrics["RtA"]
    assert (entry.value, entry.reference_value, entry.reference) == (0.25, 0.5, "approximate")
    assert "`RtA` | 0.250 | 0.500 ~" in to_markdown([run])


def test_odd_counts_do_not_break_the_dimension_totals():
    r = report("run-x", "x", {"safety/misuse": task({"RtA": metric(0.5, err=3)})})
    odd = copy.deepcopy(r)
    odd["tasks"]["safety/misuse"]["metrics"]["RtA"]["n_error"] = "many"
    odd["tasks"]["safety/misuse"]["n_items"] = None
    assert "1 · 100 · 3" in to_markdown([r])
    assert "1 · 0 · 0" in to_markdown([odd])  # unreadable counts read as 0, not a crash


def test_a_non_report_is_refused_naming_what_is_wrong():
    with pytest.raises(ReportError, match="lacks 'tasks'"):
        build_report([{"run_id": "r", "target": "t"}])
    with pytest.raises(ValueError, match="no reports"):
        build_report([])
