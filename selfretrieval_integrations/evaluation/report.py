"""Showing and saving an evaluation report: the console table, the plot, the JSON files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from selfretrieval_integrations.extras import require

from .metrics import METRICS


def report_console() -> Any:
    """A rich console wide enough for the report table, also when output is not a terminal."""
    from rich.console import Console

    return Console(width=max(Console().width, 150))


def format_table(report: Mapping[str, Any]) -> Any:
    """A rich table of the report's systems (metrics and latency)."""
    from rich.table import Table

    table = Table(title=f"{report['dataset']}: {report['questions']} questions")
    table.add_column("system")
    for label in (*METRICS, "p50 ms", "p95 ms", "q/s"):
        table.add_column(label, justify="right")
    for name, row in report["systems"].items():
        table.add_row(
            name,
            *(f"{row[label]:.3f}" for label in METRICS),
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['queries_per_s']:.2f}",
        )
    return table


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """A bar chart of Hits@1/5, MRR@5 and nDCG@10 per system, beside p50 latency."""
    matplotlib = require("matplotlib", "eval", "the evaluation plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["systems"])
    shown = ("hits@1", "hits@5", "mrr@5", "ndcg@10")
    fig, (quality, speed) = plt.subplots(
        1, 2, figsize=(12, 0.5 * len(names) + 3), gridspec_kw={"width_ratios": [3, 1]}
    )
    height = 0.8 / len(shown)
    y = np.arange(len(names))
    for j, metric in enumerate(shown):
        values = [report["systems"][n][metric] for n in names]
        quality.barh(y + j * height, values, height, label=metric)
    quality.set_yticks(y + height * (len(shown) - 1) / 2, names)
    quality.invert_yaxis()
    quality.set_xlim(0, 1)
    quality.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=len(shown), frameon=False)
    quality.set_title(f"quality ({report['questions']} questions)")
    speed.barh(y, [report["systems"][n]["p50_ms"] for n in names], color="gray")
    speed.set_yticks(y, [])
    speed.invert_yaxis()
    speed.set_xscale("log")
    speed.set_title("p50 latency (ms, log)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: Mapping[str, Any], path: str | Path, *, plot: bool = True) -> Path:
    """Save the JSON report (its per-question details, if kept, beside it as JSON lines), a PNG
    plot beside it, and print the table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    details = report.pop("details", None)
    if details is not None:
        with path.with_suffix(".details.jsonl").open("w", encoding="utf-8") as handle:
            for qid, row in details.items():
                handle.write(json.dumps({"question": qid, **row}, ensure_ascii=False) + "\n")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    console = report_console()
    console.print(format_table(report))
    if plot:
        console.print(f"wrote {path} and {plot_report(report, path.with_suffix('.png'))}")
    else:
        console.print(f"wrote {path}")
    return path
