"""Readable reports from run report JSON: Markdown and one self-contained HTML page.

Input: what ``Report.to_json()`` returns (``trustwatch run --out`` writes one report, or a list of
them for several targets), turned once by :func:`build_report` into a typed :class:`Report` (runs,
each with its :class:`TaskSection` per task and :class:`MetricEntry` per metric) that both renderers
take. Pure logic, standard library only: the charts are inline SVG drawn here,
the page has inline CSS, no JavaScript and no external resource, and every string taken from a
report is escaped.

    python -m trustwatch.tools.reports REPORT.json [MORE.json ...] --md OUT.md --html OUT.html

Layout choices:

- Tables: one table per task, one row per metric; with several targets each metric gets one row
  per target (a ``target`` column). Notes are listed once per task under its table (numbered),
  since every metric of a task usually shares the same long note.
- Headline metric of a task (summary table, per-dimension bar charts): ``avg``, else ``overall``,
  else the task's first metric key, as in :func:`trustwatch.benchmark.scoring.summary`. No aggregate score per
  dimension is computed: the headlines mix directions (some are lower-is-better).
- Safety trade-off (the paper's over-refusal vs safety point): one point per target at
  x = ``safety/exaggerated_safety`` RtA (refusals of safe prompts, lower is better) and
  y = the mean of ``safety/misuse`` RtA and ``safety/jailbreak`` RtA (whichever of the two exist);
  a vertical segment through the point spans the misuse and jailbreak values, a horizontal whisker
  the exaggerated-safety 95% CI. A target without exaggerated safety, or without both misuse and
  jailbreak, has no point (the caption says which).
"""

from trustwatch.tools.reports.cli import main
from trustwatch.tools.reports.html import to_html
from trustwatch.tools.reports.markdown import to_markdown
from trustwatch.tools.reports.model import (
    MetricEntry,
    Report,
    ReportError,
    RunReport,
    TaskSection,
    build_report,
    load_reports,
)

__all__ = [
    "MetricEntry",
    "Report",
    "ReportError",
    "RunReport",
    "TaskSection",
    "build_report",
    "load_reports",
    "main",
    "to_html",
    "to_markdown",
]
