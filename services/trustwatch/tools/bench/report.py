"""The bench's figures with their targets: one table on stdout, JSON and a small plot under out/bench/."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Confidence of the intervals printed beside the ratio figures.
LEVEL = 0.95


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages now (absolute figures on a shared machine are noisy)."""
    return [round(x, 2) for x in os.getloadavg()]


def ratio_interval(base: dict[str, Any], row: dict[str, Any], level: float = LEVEL) -> tuple[float, float] | None:
    """Interval for the throughput of ``row`` over that of ``base`` (two rows of timed runs, each with
    its ``n`` prompts and ``walls``): Welch's t interval on the difference of the mean log wall
    times, mapped back to a ratio. What it bounds is the ratio of the geometric-mean throughputs,
    under the assumption that each side's log wall times are independent draws of a normal; it
    says how far the point figure (a ratio of medians) can move with the machine's noise. None with
    fewer than two runs a side or no spread at all (nothing to estimate the noise from)."""
    import numpy as np
    from scipy import stats

    b, r = np.log(np.asarray(base["walls"], float)), np.log(np.asarray(row["walls"], float))
    if len(b) < 2 or len(r) < 2 or (np.ptp(b) == 0 and np.ptp(r) == 0):
        return None
    # throughput ratio = (n_row / wall_row) / (n_base / wall_base): log = log(n_row/n_base) + (log wb - log wr)
    ci = stats.ttest_ind(b, r, equal_var=False).confidence_interval(level)
    shift = float(np.log(row["n"] / base["n"]))
    return float(np.exp(ci.low + shift)), float(np.exp(ci.high + shift))


@dataclass
class Figure:
    """One measured figure: ``value`` against ``target`` (at least; ``at_most`` for upper bounds)."""

    key: str  # P1, P2, P3, P4, scale
    label: str
    value: float
    target: float
    unit: str
    at_most: bool = False
    detail: str = ""
    load: list[float] = field(default_factory=load_average)
    #: A 95% interval for ``value`` where repeated runs give one (see :func:`ratio_interval`).
    interval: tuple[float, float] | None = None

    @property
    def passed(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    @property
    def settled(self) -> bool:
        """Whether the interval (if any) lies wholly on the verdict's side of the target: with an
        interval that holds the target, the runs cannot tell a pass from a fail."""
        if self.interval is None:
            return True
        lo, hi = self.interval
        return not (lo <= self.target <= hi)

    def line(self) -> str:
        op = "<=" if self.at_most else ">="
        mark = ("PASS" if self.passed else "FAIL") + ("" if self.settled else "?")
        load = "/".join(f"{x:.1f}" for x in self.load)
        ci = f"[{self.interval[0]:.3g}, {self.interval[1]:.3g}]" if self.interval else "-"
        return (
            f"  {self.key:<6} {self.label:<52} {self.value:>10.3f} {ci:<17} {self.unit:<12} "
            f"target {op} {self.target:<8g} {mark:<5} load {load}"
        )


def table(figures: list[Figure]) -> str:
    """The figures, one a line: value, its 95% interval where runs were repeated, target, verdict
    (``?`` when the interval holds the target) and the load average when it was measured."""
    return "\n".join(f.line() for f in figures)


def scale_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"  {'partitions':>10} {'replicas':>8} {'prompts':>8} {'wall s':>8} {'prompts/s':>10}  peak RSS MB"]
    for r in rows:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["peak_rss_mb"].items()))
        lines.append(
            f"  {r['partitions']:>10} {r['replicas']:>8} {r['prompts']:>8} {r['wall_s']:>8.1f} "
            f"{r['prompts_per_s']:>10.1f}  {rss}"
        )
    return "\n".join(lines)


def write(out_dir: Path, figures: list[Figure], results: dict[str, Any]) -> tuple[Path, Path | None]:
    """``bench.json`` (every figure and the raw measurements) and ``bench.png`` (each figure over its
    target; the plot is skipped when matplotlib is not installed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "figures": [asdict(f) | {"passed": f.passed, "settled": f.settled} for f in figures],
        "results": results,
        "cpus": os.cpu_count(),
    }
    path = out_dir / "bench.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path, plot(out_dir / "bench.png", figures, results.get("scale", {}).get("rows", []))


def plot(path: Path, figures: list[Figure], scale_rows: list[dict[str, Any]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not figures and not scale_rows:
        return None
    ncols = 2 if scale_rows else 1
    fig, axes = plt.subplots(1, ncols, figsize=(11 if scale_rows else 7, 0.45 * max(4, len(figures)) + 1.5))
    ax = axes[0] if scale_rows else axes
    # value / target for lower bounds, target / value for upper bounds: >= 1 passes either way
    scores = [(f.value / f.target if not f.at_most else f.target / f.value) if f.value else 0.0 for f in figures]
    labels = [f"{f.key} {f.label}" for f in figures]
    colors = ["tab:green" if f.passed else "tab:red" for f in figures]
    ax.barh(range(len(figures)), scores, color=colors)
    for i, (f, score) in enumerate(zip(figures, scores)):
        if f.interval and f.value:  # the 95% interval, on the same figure / target scale
            ends = sorted((x / f.target if not f.at_most else f.target / x) for x in f.interval if x)
            if len(ends) == 2:
                err = [[max(0.0, score - ends[0])], [max(0.0, ends[1] - score)]]
                ax.errorbar(score, i, xerr=err, color="black", capsize=3)
    ax.set_yticks(range(len(figures)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("figure / target (>= 1 passes)")
    ax.set_title("trustwatch bench", fontsize=9)
    if scale_rows:
        sx = axes[1]
        sx.plot([r["partitions"] for r in scale_rows], [r["prompts_per_s"] for r in scale_rows], marker="o")
        sx.set_xlabel("partitions = dispatcher and aggregator replicas")
        sx.set_ylabel("prompts/s (P3, echo)")
        sx.set_xticks([r["partitions"] for r in scale_rows])
        sx.set_title("scale", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
