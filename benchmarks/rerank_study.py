"""How much signal self-assessment carries, from an evaluation's per-question details.

Reads the ``*.details.jsonl`` that ``evaluate(..., keep_details=True)`` writes (``squad.py run``
keeps them) and reports, without the model:

- the ROC AUC of the self-assessment relevance for the relevant passage against the others, in
  BM25's top 20 and among Self-Retrieval's candidates (0.5 = no signal);
- Hits@1 of reciprocal-rank fusion of BM25's rank with the assessment rank, for several weights
  of the assessment (weight 0 is BM25 alone). These weights are read off the test questions, so
  they describe the signal; they are not a tuned setting;
- a tuned setting, honestly: two-fold cross-validation over seeded halves of the questions picks
  the weight with the best MRR@5 on one half and scores it on the other, so no question is scored
  with a weight chosen on it.

    python benchmarks/rerank_study.py benchmarks/results/squad-small.details.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


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


def _rrf_ranks(rows: list[dict], weight: float, depth: int, rrf_k: float = 60.0) -> list[int]:
    """Rank (1-based, 0 if absent) of the first relevant passage after RRF, per question."""
    ranks = []
    for row in rows:
        pool = row["bm25"][:depth]
        relevance = np.array([c["relevance"] for c in pool])
        assessment_rank = np.empty(len(pool))
        assessment_rank[np.argsort(-relevance, kind="stable")] = np.arange(1, len(pool) + 1)
        scores = 1 / (rrf_k + np.arange(1, len(pool) + 1)) + weight / (rrf_k + assessment_rank)
        order = [pool[int(i)]["id"] for i in np.argsort(-scores, kind="stable")]
        relevant = set(row["relevant"])
        ranks.append(next((r for r, pid in enumerate(order, 1) if pid in relevant), 0))
    return ranks


def _reciprocal_rank_at_5(rank: int) -> float:
    return 1 / rank if 0 < rank <= 5 else 0.0


def _metrics(ranks: list[int]) -> dict[str, float]:
    return {
        "hits@1": round(float(np.mean([r == 1 for r in ranks])), 4),
        "mrr@5": round(float(np.mean([_reciprocal_rank_at_5(r) for r in ranks])), 4),
    }


def _cross_validated(rows: list[dict], depth: int, seed: int = 0) -> dict:
    """Two folds: each half is scored with the weight that had the best MRR@5 on the other."""
    order = np.random.default_rng(seed).permutation(len(rows))
    halves = [order[: len(rows) // 2], order[len(rows) // 2 :]]
    chosen, ranks = [], [0] * len(rows)
    for tune, score in (halves, halves[::-1]):
        tune_rows = [rows[i] for i in tune]
        best = max(WEIGHTS, key=lambda w: (_metrics(_rrf_ranks(tune_rows, w, depth))["mrr@5"], -w))
        chosen.append(best)
        for i, rank in zip(score, _rrf_ranks([rows[i] for i in score], best, depth), strict=True):
            ranks[i] = rank
    bm25 = _rrf_ranks(rows, 0.0, depth)
    return {
        "weights_chosen": chosen,
        "reranked": _metrics(ranks),
        "bm25": _metrics(bm25),
        "wins_ties_losses_mrr@5": _wins_ties_losses(ranks, bm25),
    }


def _wins_ties_losses(ranks: list[int], baseline: list[int]) -> list[int]:
    pairs = [
        (_reciprocal_rank_at_5(a), _reciprocal_rank_at_5(b))
        for a, b in zip(ranks, baseline, strict=True)
    ]
    return [
        sum(a > b for a, b in pairs),
        sum(a == b for a, b in pairs),
        sum(a < b for a, b in pairs),
    ]


def _rrf_hits_at_1(rows: list[dict], weight: float, depth: int, rrf_k: float = 60.0) -> float:
    return _metrics(_rrf_ranks(rows, weight, depth, rrf_k))["hits@1"]


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
        "rrf_two_fold_cross_validated": _cross_validated(rows, args.depth),
    }
    print(json.dumps(report, indent=2))
    out = args.details.with_name(args.details.name.replace(".details.jsonl", ".rerank-study.json"))
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
