"""The bench's figures with their targets: one table on stdout, JSON and a small plot under out/bench/."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages now (absolute figures on a shared machine are noisy)."""
    return [round(x, 2) for x in os.getloadavg()]


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

    @property
    def passed(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    def line(self) -> str:
        op = "<=" if self.at_most else ">="
        mark = "PASS" if self.passed else "FAIL"
        load = "/".join(f"{x:.1f}" for x in self.load)
        return (
            f"  {self.key:<6} {self.label:<52} {self.value:>10.3f} {self.unit:<12} "
            f"target {op} {self.target:<8g} {mark}  load {load}"
        )


def table(figures: list[Figure]) -> str:
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
        "figures": [asdict(f) | {"passed": f.passed} for f in figures],
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
