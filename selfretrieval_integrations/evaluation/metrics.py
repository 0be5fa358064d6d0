"""Retrieval quality from ranx, paired significance tests between systems, latency summaries.

Metrics come from ranx (a maintained IR evaluation library) and significance from its paired
tests, so numbers are comparable with other IR work.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from selfretrieval_integrations.extras import require

#: Report names of the metrics, and the ranx metric behind each (one relevant passage per
#: question makes ranx's binary ``hit_rate`` the usual Hits@k).
METRICS = {
    "hits@1": "hit_rate@1",
    "hits@5": "hit_rate@5",
    "hits@10": "hit_rate@10",
    "mrr@5": "mrr@5",
    "mrr@10": "mrr@10",
    "ndcg@10": "ndcg@10",
}


def _p_value(value: Any) -> float:
    """A p-value for the report: NaN (no difference on any question) becomes 1."""
    value = float(value)
    return 1.0 if math.isnan(value) else round(value, 5)


def metrics_and_tests(
    qrels: Mapping[str, Mapping[str, int]],
    ranked: Mapping[str, Mapping[str, Sequence[str]]],
    stat_test: str,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """ranx metrics per system, and the paired test of every system against every other.

    ``ranked`` maps each system to its ids per question, best first.
    """
    ranx = require("ranx", "eval", "evaluation")
    ranx_qrels = ranx.Qrels({q: {d: int(v) for d, v in rel.items()} for q, rel in qrels.items()})
    ranx_runs = []
    for name, run in ranked.items():
        # Scores 1/rank keep our order exactly (ranx re-sorts by score).
        scored = {
            q: ({d: 1.0 / r for r, d in enumerate(ids, start=1)} or {"<none>": 0.0})
            for q, ids in run.items()
        }
        ranx_runs.append(ranx.Run(scored, name=name))
    names = list(ranked)
    if len(ranx_runs) > 1:
        with warnings.catch_warnings():
            # Identical per-question scores (common for Hits@1 between close systems) make
            # scipy warn about precision; the p-value is then taken as 1 below.
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            report = ranx.compare(
                ranx_qrels, ranx_runs, list(METRICS.values()), stat_test=stat_test, max_p=0.05
            ).to_dict()
        scores = {n: report[n]["scores"] for n in names}
        tests: dict[str, dict[str, Any]] = {}
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                tests[f"{first} vs {second}"] = {
                    label: {
                        "p_value": _p_value(report[first]["comparisons"][second][metric]),
                        "wins_ties_losses": [
                            report[first]["win_tie_loss"][second][metric][key]
                            for key in ("W", "T", "L")
                        ],
                    }
                    for label, metric in METRICS.items()
                }
    else:
        scores = {names[0]: ranx.evaluate(ranx_qrels, ranx_runs[0], list(METRICS.values()))}
        tests = {}
    metrics = {
        n: {label: round(float(scores[n][metric]), 4) for label, metric in METRICS.items()}
        for n in names
    }
    return metrics, tests


def latency(seconds: Sequence[float]) -> dict[str, float]:
    """Median and 95th percentile latency per question (ms), and questions per second."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "queries_per_s": round(float(1000.0 / ms.mean()), 3) if ms.mean() > 0 else float("inf"),
    }
