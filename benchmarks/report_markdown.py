"""Markdown tables from the benchmark JSON reports, for ``benchmarks/RESULTS.md``.

Copying numbers by hand invites mistakes; this prints the tables straight from the reports::

    python benchmarks/report_markdown.py benchmarks/results/squad-small.json
    python benchmarks/report_markdown.py benchmarks/results/ablation-training.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLUMNS = ("hits@1", "hits@5", "hits@10", "mrr@5", "mrr@10", "ndcg@10")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def systems_table(systems: dict[str, dict[str, Any]], prefix: list[str] | None = None) -> str:
    header = ["system", *COLUMNS, "p50 ms", "p95 ms", "q/s"]
    rows = [
        [
            name,
            *(f"{row[c]:.3f}" for c in COLUMNS),
            f"{row['p50_ms']:.0f}",
            f"{row['p95_ms']:.0f}",
            f"{row['queries_per_s']:.2f}",
        ]
        for name, row in systems.items()
    ]
    return _table(header, rows)


def significance_table(tests: dict[str, dict[str, Any]], pairs: list[str] | None = None) -> str:
    header = ["pair", "metric", "p-value", "wins / ties / losses"]
    rows = []
    for pair, metrics in tests.items():
        if pairs and pair not in pairs:
            continue
        for metric in ("hits@1", "mrr@5", "ndcg@10"):
            result = metrics[metric]
            rows.append(
                [
                    pair,
                    metric,
                    f"{result['p_value']:.4f}",
                    " / ".join(str(v) for v in result["wins_ties_losses"]),
                ]
            )
    return _table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    if "variants" in report:
        for name, variant in report["variants"].items():
            training = variant.get("training") or {}
            print(
                f"\n**{name}**: trained {variant['train_seconds']:.0f} s, "
                f"{training.get('examples')} examples, {training.get('tokens_trained')} tokens "
                f"({training.get('tokens_per_second')} tokens/s), final loss "
                f"{training.get('final_loss', float('nan')):.3f}\n"
            )
            print(systems_table(variant["systems"]))
        return
    print(systems_table(report["systems"]))
    if report.get("significance"):
        print()
        wanted = [p for p in report["significance"] if "bm25" in p and p.count("/") == 0]
        print(significance_table(report["significance"], wanted))


if __name__ == "__main__":
    main()
