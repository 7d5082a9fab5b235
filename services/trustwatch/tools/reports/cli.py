"""The command line: ``python -m trustwatch.tools.reports REPORT.json [...] --md OUT.md --html OUT.html``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from trustwatch.tools.reports.html import to_html
from trustwatch.tools.reports.markdown import to_markdown
from trustwatch.tools.reports.model import ReportError, build_report, load_reports


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    print(f"wrote {p}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trustwatch.tools.reports REPORT.json [MORE.json ...] [--md OUT.md] [--html OUT.html]``.

    Without --md or --html the Markdown goes to stdout ("-" as a path also means stdout).
    Returns 0, or 2 (message on stderr) when a file is missing or not a report.
    """
    ap = argparse.ArgumentParser(
        prog="python -m trustwatch.tools.reports",
        description="Render trustwatch run report JSON as Markdown and/or one self-contained HTML page.",
    )
    ap.add_argument(
        "reports",
        nargs="+",
        metavar="REPORT.json",
        help="report JSON files (`trustwatch run --out`); each holds one report or a list of them",
    )
    ap.add_argument("--md", metavar="OUT.md", help="write Markdown here ('-': stdout)")
    ap.add_argument("--html", metavar="OUT.html", help="write the HTML page here ('-': stdout)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        reports = build_report(load_reports(args.reports))
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.md and not args.html:
        args.md = "-"
    if args.md:
        _write(args.md, to_markdown(reports))
    if args.html:
        _write(args.html, to_html(reports))
    return 0
