"""The retrieval-quality targets, checked against the SQuAD reports that ``squad.py`` writes.

Each target compares systems of one report (the same 200 test questions, weights fitted on
training questions only), so nothing here is measured again: it reads what the runs measured
and says, target by target, whether it holds and by how much.

Usage::

    python benchmarks/quality_targets.py \\
        --question-split benchmarks/results/squad-small-q-gen16.json \\
        --paragraph-split benchmarks/results/squad-small-para-s1-bm25.json \\
        --output benchmarks/results/quality-targets.json

A training log gives the run's ``trained in N s`` line (data, loading, training, saving and the
fusion fit); without one, the report's ``train_seconds`` when that run trained the artifact
itself (``squad.py run`` without ``--skip-train``), or else the time target is not measured.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TWO_HOURS = 7200.0
WHOLE_TRAINING = "this run"
"""How ``squad.py`` reports begin ``train_seconds_from`` when they trained in the same run."""
TRAINED_IN = re.compile(r"trained in (\d+(?:\.\d+)?) s")


def trained_seconds(report: dict[str, Any], log: Path | None) -> tuple[float | None, str]:
    """The training side of a whole run, and where the number came from."""
    if log is not None:
        found = TRAINED_IN.findall(log.read_text(errors="replace"))
        if not found:
            raise SystemExit(f"{log} has no 'trained in N s' line: did the training finish?")
        return float(found[-1]), f"{log} ('trained in')"
    config = report["config"]
    source = config.get("train_seconds_from") or "not recorded"
    if source.startswith(WHOLE_TRAINING):
        return config.get("train_seconds"), f"report train_seconds ({source})"
    # The trainer's own time leaves out loading, saving and the fit: not the whole run.
    return None, f"no training log, and the report's train_seconds is not the whole ({source})"


def _metric(report: dict[str, Any], system: str, metric: str) -> float | None:
    row = report["systems"].get(system)
    return None if row is None else float(row[metric])


def _p_value(report: dict[str, Any], a: str, b: str, metric: str) -> float | None:
    tests = report["significance"]
    pair = tests.get(f"{a} vs {b}") or tests.get(f"{b} vs {a}")
    return None if pair is None else float(pair[metric]["p_value"])


def _above(value: float, bound: float) -> bool:
    return value > bound


def _at_least(value: float, bound: float) -> bool:
    return value >= bound - 1e-9  # bounds like BM25 + 0.05 are sums of floats


def _below(value: float, bound: float) -> bool:
    return value < bound


def _target(
    name: str, value: float | None, bound: float | None, holds: Callable[[float, float], bool]
) -> dict[str, Any]:
    if value is None or bound is None:
        return {"target": name, "value": value, "bound": bound, "met": None}
    return {
        "target": name,
        "value": float(f"{value:.4g}"),  # significant digits: p-values can be 1e-05
        "bound": float(f"{bound:.4g}"),
        "margin": float(f"{value - bound:.4g}"),
        "met": bool(holds(value, bound)),
    }


def question_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets on the question split (test questions ask about trained passages)."""

    def m(system: str, metric: str = "hits@1") -> float | None:
        return _metric(report, system, metric)

    bm25, dense = m("bm25"), m("dense")
    rows = [
        _target("Self-Retrieval Hits@1 above dense", m("self-retrieval"), dense, _above),
        _target(
            "hybrid Hits@1 at least BM25 + 0.05",
            m("hybrid"),
            None if bm25 is None else bm25 + 0.05,
            _at_least,
        ),
        _target("hybrid Hits@1 above dense", m("hybrid"), dense, _above),
        _target("BM25 + SelfReranker Hits@1 above BM25", m("bm25+self-reranker"), bm25, _above),
        _target(
            "BM25 + SelfReranker MRR@5 above BM25",
            m("bm25+self-reranker", "mrr@5"),
            m("bm25", "mrr@5"),
            _above,
        ),
    ]
    for metric in ("hits@1", "mrr@5"):
        p = _p_value(report, "bm25", "bm25+self-reranker", metric)
        rows.append(_target(f"BM25 + SelfReranker {metric} p < 0.05", p, 0.05, _below))
    rows += [
        _target("dense + SelfReranker Hits@1 above dense", m("dense+self-reranker"), dense, _above),
        _target(
            "dense + SelfReranker MRR@5 above dense",
            m("dense+self-reranker", "mrr@5"),
            m("dense", "mrr@5"),
            _above,
        ),
    ]
    return rows


def paragraph_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets on the paragraph split (test passages never had a training question)."""

    def m(system: str, metric: str = "hits@1") -> float | None:
        return _metric(report, system, metric)

    bm25 = m("bm25")
    return [
        _target(
            "self-assessment raises Self-Retrieval over generation alone",
            m("self-retrieval"),
            m("self-retrieval/generation"),
            _above,
        ),
        _target(
            "BM25 + SelfReranker Hits@1 at least BM25 - 0.01",
            m("bm25+self-reranker"),
            None if bm25 is None else bm25 - 0.01,
            _at_least,
        ),
    ]


def time_target(report: dict[str, Any], log: Path | None) -> dict[str, Any]:
    trained, source = trained_seconds(report, log)
    evaluated = report["config"].get("evaluate_seconds")
    total = None if trained is None or evaluated is None else trained + evaluated
    row = _target("whole run (training + evaluation) within 2 hours", total, TWO_HOURS, _at_most)
    return row | {"trained_seconds": trained, "trained_from": source, "evaluate_seconds": evaluated}


def _at_most(value: float, bound: float) -> bool:
    return value <= bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question-split", type=Path, required=True)
    parser.add_argument("--question-training-log", type=Path)
    parser.add_argument("--paragraph-split", type=Path, required=True)
    parser.add_argument("--paragraph-training-log", type=Path)
    parser.add_argument(
        "--question-time-report",
        type=Path,
        help="the question split's run to time, if not --question-split's (e.g. one evaluated "
        "with fewer baselines)",
    )
    parser.add_argument("--paragraph-time-report", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    question = json.loads(args.question_split.read_text())
    paragraph = json.loads(args.paragraph_split.read_text())
    question_timed = args.question_time_report or args.question_split
    paragraph_timed = args.paragraph_time_report or args.paragraph_split
    splits = {
        "question": {
            "report": str(args.question_split),
            "targets": [
                *question_targets(question),
                time_target(json.loads(question_timed.read_text()), args.question_training_log)
                | {"report": str(question_timed)},
            ],
        },
        "paragraph": {
            "report": str(args.paragraph_split),
            "targets": [
                *paragraph_targets(paragraph),
                time_target(json.loads(paragraph_timed.read_text()), args.paragraph_training_log)
                | {"report": str(paragraph_timed)},
            ],
        },
    }
    for split, result in splits.items():
        print(f"\n{split} split ({result['report']})")
        print(f"{'target':<62} {'value':>9} {'bound':>9}  met")
        for row in result["targets"]:
            value = "-" if row["value"] is None else f"{row['value']:.4g}"
            bound = "-" if row["bound"] is None else f"{row['bound']:.4g}"
            met = {True: "yes", False: "NO", None: "not measured"}[row["met"]]
            print(f"{row['target']:<62} {value:>9} {bound:>9}  {met}")
    every = [row["met"] for result in splits.values() for row in result["targets"]]
    verdict = "all met" if all(every) else "not all met"
    print(f"\n{verdict}")
    if args.output is not None:
        args.output.write_text(json.dumps({"splits": splits, "all_met": all(every)}, indent=2))
    return 0 if all(every) else 1


if __name__ == "__main__":
    sys.exit(main())
