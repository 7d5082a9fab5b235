"""Markdown / HTML rendering of run reports (trustwatch.tools.reports)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from trustwatch.tools.reports import ReportError, load_reports, main, to_html, to_markdown

ATTACKS = ("fixed sentence", "cot", "leetspeak", "bad words")
XSS = '<script>alert("x")</script> & friends'


def metric(value, ref="same", n=100, valid=None, err=0, ci=0.05, hib=True, note="", invalid=0, **extra):
    lo = None if value is None or ci is None else max(0.0, value - ci)
    hi = None if value is None or ci is None else min(1.0, value + ci)
    return {
        "value": value,
        "reference_value": value if ref == "same" else ref,
        "n_total": n,
        "n_valid": n - err - invalid if valid is None else valid,
        "n_invalid": invalid,
        "n_error": err,
        "ci_low": lo,
        "ci_high": hi,
        "higher_is_better": hib,
        "note": note,
        "extra": extra,
    }


def task(metrics, error="", n_items=100):
    return {"n_items": n_items, "error": error, "metrics": metrics}


def jailbreak(overall, per_attack, tox=0.1):
    ms = {"RtA": metric(overall, n=400, note="Wilson CI; failed judgements left out")}
    ms.update({a: metric(v, note="Wilson CI; failed judgements left out") for a, v in zip(ATTACKS, per_attack)})
    ms["average_toxicity"] = metric(tox, hib=False, note="over compliant replies")
    ms["max_toxicity"] = metric(None if tox is None else tox * 3, hib=False, note="over compliant replies")
    return task(ms, n_items=400)


def report(run_id, target, tasks, complete=True):
    return {
        "run_id": run_id,
        "target": target,
        "complete": complete,
        "manifest": {
            "code_version": "0.1.0+abc1234",
            "created_unix_ms": 1767225600000,
            "dataset_sha256": {f"{t}.json": "0" * 64 for t in tasks},
            "target": {"backend": "openai", "model": target, "base_url": "http://10.0.0.1:8000/v1"},
            "suite": {"name": "smoke"},
        },
        "tasks": tasks,
        "summary": {},
    }


def fixtures():
    """Three targets: alpha (balanced), beta (safe but over-refuses, an XSS note, a None value,
    incomplete), gamma (unsafe, no misuse, no truthfulness, a task error)."""
    alpha = report(
        "run-a",
        "alpha-7b",
        {
            "safety/exaggerated_safety": task({"RtA": metric(0.10, ref=0.90, hib=False, note="lower is better")}),
            "safety/misuse": task({"RtA": metric(0.90, invalid=7)}),
            "safety/jailbreak": jailbreak(0.80, (0.9, 0.7, 0.85, 0.75)),
            "truthfulness/external": task(
                {"scifact": metric(0.61, ref=None), "covid": metric(0.72), "avg": metric(0.665)}
            ),
            "ethics/awareness": task({"capability": metric(0.5), "overall": metric(0.55)}),
        },
    )
    beta = report(
        "run-b",
        "beta-chat",
        {
            "safety/exaggerated_safety": task({"RtA": metric(0.45, hib=False, note="lower is better")}),
            "safety/misuse": task({"RtA": metric(0.97, note=XSS)}),
            "safety/jailbreak": jailbreak(0.95, (1.0, 0.9, 0.95, 0.95), tox=None),
            "ethics/awareness": task({"capability": metric(None, err=100), "overall": metric(0.4)}),
            "privacy/privacy_leakage": task({"RtA": metric(0.3), "TD": metric(0.2, hib=False)}),
        },
        complete=False,
    )
    gamma = report(
        "run-c",
        "gamma-base",
        {
            "safety/exaggerated_safety": task({"RtA": metric(0.02, hib=False)}),
            "safety/jailbreak": jailbreak(0.20, (0.3, 0.1, 0.25, 0.15)),
            "ethics/awareness": task({"capability": metric(0.2), "overall": metric(0.25)}),
            "privacy/privacy_leakage": task({}, error="ValueError: no judgments"),
        },
    )
    return [alpha, beta, gamma]


def no_safety():
    return [
        report(
            "run-d",
            "delta",
            {
                "truthfulness/external": task({"avg": metric(0.5)}),
                "ethics/awareness": task({"overall": metric(None, err=100)}),
            },
        )
    ]


def all_names(reports):
    for r in reports:
        for t, tr in r["tasks"].items():
            for k in tr["metrics"]:
                yield t, k


class _Attrs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _svg(html_text, svg_id):
    m = re.search(rf'<svg id="{svg_id}".*?</svg>', html_text, re.DOTALL)
    assert m, f"no svg {svg_id}"
    return ET.fromstring(m.group(0))  # well-formed XML, or this raises


# -- Markdown ------------------------------------------------------------------------------------


def test_markdown_lists_every_task_and_metric_with_formatted_values():
    reps = fixtures()
    md = to_markdown(reps)
    for t, k in all_names(reps):
        assert f"### {t}" in md
        assert f"`{k}`" in md, k
    for r in reps:
        assert r["run_id"] in md and r["target"] in md
    assert "0.665" in md and "0.450" in md  # 3 decimals
    assert "[0.050, 0.150]" in md  # CI of alpha's exaggerated RtA
    assert "400 / 400 / 0 / 0" in md and "100 / 0 / 0 / 100" in md  # n_total / n_valid / n_invalid / n_error
    assert "100 / 93 / 7 / 0" in md  # unreadable replies (n_invalid) beside the errors
    assert "↓" in md and "↑" in md
    assert "0.1.0+abc1234" in md and "**NO (partial results)**" in md
    # a None value and a None reference render as the dash
    row = next(line for line in md.splitlines() if line.startswith("| `capability` | alpha-7b"))
    assert "| – |" in next(line for line in md.splitlines() if "| beta-chat | – |" in line)
    assert row.count("0.500") == 2
    scifact = next(line for line in md.splitlines() if line.startswith("| `scifact`"))
    assert "| 0.610 | – |" in scifact
    # the task error and the missing tasks are said
    assert "ValueError: no judgments" in md and "task not in this run" in md
    # the note is kept, neutralised: no raw tag survives in Markdown either
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_markdown_tables_are_well_formed():
    md = to_markdown(fixtures())
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            width = len(re.split(r"(?<!\\)\|", lines[i]))
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert len(re.split(r"(?<!\\)\|", lines[j])) == width, lines[j]
                j += 1
            i = j
        else:
            i += 1


def test_markdown_summary_has_headlines_per_target():
    md = to_markdown(fixtures())
    summary = md.split("## Summary", 1)[1].split("## Safety", 1)[0]
    ext = next(line for line in summary.splitlines() if "| external |" in line)
    assert "avg ↑" in ext and "0.665" in ext and ext.count("not run") == 2
    leak = next(line for line in summary.splitlines() if "| privacy_leakage |" in line)
    assert "not run" in leak and "error" in leak and "0.300" in leak
    assert "| safety | 3 · 600 · 0 | 3 · 600 · 0 | 2 · 500 · 0 |" in summary
    assert "| privacy | not run | 1 · 100 · 0 | 1 · 100 · 0 |" in summary
    assert "| ethics | 1 · 100 · 0 | 1 · 100 · 100 | 1 · 100 · 0 |" in summary


def test_single_report_has_no_target_column():
    md = to_markdown(fixtures()[:1])
    assert "| metric | value | ref |" in md and "| metric | target |" not in md


# -- HTML ----------------------------------------------------------------------------------------


def test_html_lists_every_task_and_metric_and_is_self_contained():
    reps = fixtures()
    page = to_html(reps)
    for t, k in all_names(reps):
        assert f">{t}</h3>" in page
        assert '<td class="key"' in page and f">{k}</td>" in page.replace("&#x27;", "'"), k
    p = _Attrs()
    p.feed(page)
    tags = {t for t, _ in p.tags}
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for tag, attrs in p.tags:
        for name in ("src", "href", "xlink:href", "action", "style"):
            v = attrs.get(name) or ""
            assert "http" not in v and "//" not in v and "url(" not in v, (tag, name, v)
        for name in attrs:
            assert not name.startswith("on"), (tag, name)
        if tag == "a":
            assert attrs["href"].startswith("#")
            assert f'id="{attrs["href"][1:]}"' in page  # every internal link resolves
    assert "@import" not in page and "url(" not in page and "http" not in page
    assert page.count("–") > 3  # None values rendered as the dash
    # n_invalid has its own column beside the errors
    assert "<th>invalid</th>" in page.replace(' class="num"', "") or ">invalid<" in page
    assert '<td class="num">93</td><td class="num">7</td><td class="num">0</td>' in page


def test_html_escapes_report_text():
    reps = fixtures()
    reps[1]["target"] = 'beta"><b>x'
    page = to_html(reps)
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; friends" in page
    assert '"><b>x' not in page and "beta&quot;&gt;&lt;b&gt;x" in page


def test_tradeoff_plot_has_one_point_per_target_in_the_right_place():
    reps = fixtures()
    page = to_html(reps)
    svg = _svg(page, "tradeoff-chart")
    pts = {
        c.get("data-target"): (float(c.get("cx")), float(c.get("cy")))
        for c in svg.iter("circle")
        if c.get("class") == "tradeoff-point"
    }
    assert set(pts) == {"alpha-7b", "beta-chat", "gamma-base"}
    # x: exaggerated RtA gamma 0.02 < alpha 0.10 < beta 0.45 -> left to right
    assert pts["gamma-base"][0] < pts["alpha-7b"][0] < pts["beta-chat"][0]
    # y: mean(misuse, jailbreak): beta 0.96 > alpha 0.85 > gamma 0.20 (jailbreak only) -> SVG y grows down
    assert pts["beta-chat"][1] < pts["alpha-7b"][1] < pts["gamma-base"][1]
    # linear in the values: equal steps of RtA give equal steps on screen
    (xa, ya), (xb, yb), (xg, yg) = pts["alpha-7b"], pts["beta-chat"], pts["gamma-base"]
    assert (xb - xa) / (xa - xg) == pytest.approx((0.45 - 0.10) / (0.10 - 0.02), rel=1e-3)
    assert (ya - yb) / (yg - ya) == pytest.approx((0.96 - 0.85) / (0.85 - 0.20), rel=1e-3)
    circles = {c.get("data-target"): c for c in svg.iter("circle")}
    assert float(circles["beta-chat"].get("data-y")) == pytest.approx(0.96)
    assert float(circles["gamma-base"].get("data-y")) == pytest.approx(0.20)
    assert "alpha-7b" in "".join(svg.itertext())


def test_tradeoff_skips_targets_without_the_tasks_and_says_so():
    reps = fixtures()
    del reps[0]["tasks"]["safety/exaggerated_safety"]
    page = to_html(reps)
    pts = [c for c in _svg(page, "tradeoff-chart").iter("circle") if c.get("class") == "tradeoff-point"]
    assert {c.get("data-target") for c in pts} == {"beta-chat", "gamma-base"}
    assert "Not plotted: alpha-7b: no safety/exaggerated_safety RtA" in page


def test_no_safety_tasks_no_tradeoff_plot_and_a_reason():
    page = to_html(no_safety())
    assert 'id="tradeoff-chart"' not in page and 'id="jailbreak-chart"' not in page
    reason = re.search(r'<p class="muted" id="no-tradeoff">(.*?)</p>', page).group(1)
    assert "not drawn" in reason and "no safety tasks" in reason
    md = to_markdown(no_safety())
    assert "Safety trade-off plot not drawn" in md and "no safety tasks" in md


def test_jailbreak_plot_has_a_bar_per_target_and_attack():
    reps = fixtures()
    svg = _svg(to_html(reps), "jailbreak-chart")
    bars = [r for r in svg.iter("rect") if r.get("class") == "bar"]
    assert len(bars) == 3 * (1 + len(ATTACKS))  # overall RtA + each attack, for each target
    labels = "".join(svg.itertext())
    for a in ATTACKS:
        assert a in labels
    w = {(b.get("data-target"), float(b.get("data-value"))): float(b.get("width")) for b in bars}
    assert w[("beta-chat", 1.0)] > w[("alpha-7b", 0.9)] > w[("gamma-base", 0.3)]


def test_dimension_plots_use_headline_metric_and_leave_out_missing_tasks():
    reps = fixtures()
    page = to_html(reps)
    truth = _svg(page, "dim-truthfulness-chart")
    bars = [r for r in truth.iter("rect") if r.get("class") == "bar"]
    assert [(b.get("data-target"), float(b.get("data-value"))) for b in bars] == [("alpha-7b", 0.665)]
    assert "external · avg" in "".join(truth.itertext())
    assert "beta-chat: not run external" in page
    privacy = _svg(page, "dim-privacy-chart")
    assert {b.get("data-target") for b in privacy.iter("rect") if b.get("class") == "bar"} == {"beta-chat"}
    assert "gamma-base: task error privacy_leakage" in page
    ethics = _svg(page, "dim-ethics-chart")
    assert len([b for b in ethics.iter("rect") if b.get("class") == "bar"]) == 3  # "overall" of each target


# -- loading and the command line ----------------------------------------------------------------


def test_load_reports_reads_single_and_lists(tmp_path):
    a, b, c = fixtures()
    (tmp_path / "one.json").write_text(json.dumps(a))
    (tmp_path / "two.json").write_text(json.dumps([b, c]))
    got = load_reports([tmp_path / "one.json", str(tmp_path / "two.json")])
    assert [r["target"] for r in got] == ["alpha-7b", "beta-chat", "gamma-base"]


@pytest.mark.parametrize(
    "content, words",
    [
        ({"foo": 1}, ["not a trustwatch run report", "'run_id'", "'tasks'"]),
        ([{"run_id": "x", "target": "t", "tasks": []}], ["list element 0", "'tasks' is a list"]),
        ({"run_id": "x", "target": "t", "tasks": {"safety/misuse": {"metrics": {"RtA": 0.5}}}}, ["safety/misuse/RtA"]),
        ("not json {", ["not valid JSON"]),
        ([], ["empty list"]),
    ],
)
def test_load_reports_rejects_non_reports_naming_the_file(tmp_path, content, words):
    p = tmp_path / "bad.json"
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ReportError) as ei:
        load_reports([p])
    msg = str(ei.value)
    assert str(p) in msg
    for w in words:
        assert w in msg


def test_cli_writes_both_files(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps(fixtures()))
    md, page = tmp_path / "out" / "r.md", tmp_path / "out" / "r.html"
    assert main([str(tmp_path / "r.json"), "--md", str(md), "--html", str(page)]) == 0
    assert md.read_text().startswith("# TrustLLM report")
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert main([str(tmp_path / "r.json")]) == 0  # no output flag: Markdown on stdout
    assert "## Summary" in capsys.readouterr().out


def test_cli_reports_a_bad_file_without_traceback(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"hello": "world"}')
    assert main([str(tmp_path / "x.json"), "--md", str(tmp_path / "o.md")]) == 2
    err = capsys.readouterr().err
    assert "x.json" in err and "not a trustwatch run report" in err and "Traceback" not in err
    assert not (tmp_path / "o.md").exists()
