"""How much signal self-assessment carries, from an evaluation's per-question details.

Reads the ``*.details.jsonl`` that ``evaluate(..., keep_details=True)`` writes (``squad.py run``
keeps them) and reports, without the model:

- the ROC AUC of the self-assessment relevance for the relevant passage against the others, in
  BM25's top 20 and among Self-Retrieval's candidates (0.5 = no signal);
- Hits@1 of reciprocal-rank fusion of BM25's rank with the assessment rank, for several weights
  of the assessment (weight 0 is BM25 alone). These weights are read off the test questions, so
  they describe the signal; they are not a tuned setting.

    python benchmarks/rerank_study.py benchmarks/results/squad-small.details.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def _auc(rows: list[dict], key: str, depth: int) -> float:
    labels, scores = [], []
    for row in rows:
        relevant = set(row["relevant"])
        for candidate in row[key][:depth]:
            if candidate["relevance"] is not None:
                labels.append(candidate["id"] in relevant)
                scores.append(candidate["relevance"])
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    # ROC AUC is the Mann-Whitney U statistic normalised by the number of pairs.
    u = mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(u / (len(positives) * len(negatives)))


def _rrf_hits_at_1(rows: list[dict], weight: float, depth: int, rrf_k: float = 60.0) -> float:
    hits = 0
    for row in rows:
        pool = row["bm25"][:depth]
        relevance = np.array([c["relevance"] for c in pool])
        assessment_rank = np.empty(len(pool))
        assessment_rank[np.argsort(-relevance, kind="stable")] = np.arange(1, len(pool) + 1)
        scores = 1 / (rrf_k + np.arange(1, len(pool) + 1)) + weight / (rrf_k + assessment_rank)
        hits += pool[int(np.argsort(-scores, kind="stable")[0])]["id"] in set(row["relevant"])
    return hits / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("details", type=Path)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.details.open(encoding="utf-8")]
    report = {
        "details": str(args.details),
        "questions": len(rows),
        "auc_bm25_pool": round(_auc(rows, "bm25", args.depth), 4),
        "auc_self_retrieval_candidates": round(_auc(rows, "self-retrieval", 100), 4),
        "rrf_hits@1_by_assessment_weight": {
            str(w): _rrf_hits_at_1(rows, w, args.depth) for w in WEIGHTS
        },
    }
    print(json.dumps(report, indent=2))
    out = args.details.with_name(args.details.name.replace(".details.jsonl", ".rerank-study.json"))
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
