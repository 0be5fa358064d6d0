"""The generation score's cost: every candidate's trie key fed in full after the query, against
the title segment that the passages of one article share fed once (``shared_head_logprobs``).

For each test question of a SQuAD BEIR folder (``squad.py data`` or a run's ``<workdir>/data``),
BM25's top ``--depth`` passages are scored both ways at each ``--tokens`` length, alternately, on
the same model; the table gives p50 milliseconds per question, the token positions fed and the
largest log-probability difference between the two (float noise only: the same tokens are
predicted from the same context). Prints a table and writes a JSON report.

    python benchmarks/generation_score.py --artifact runs/squad-small-q-gen16/model \\
        --data runs/squad-small-q-gen16/data --questions 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.corpus import load_beir_qrels, load_beir_queries
from selfretrieval_integrations.evaluation.metrics import latency

RESULTS = Path(__file__).parent / "results"


def score_both(
    model: SelfRetrievalModel, query: str, pairs: list[tuple[str, str]], tokens: int
) -> dict[str, Any]:
    """One question's candidates scored in full and with shared titles: seconds, positions fed
    and the log-probabilities of each."""
    renderer = model.assessor.renderer
    scorer = model.assessor.scorer
    prompt = renderer.encode_prompt(query)
    targets = renderer.encode_targets(pairs)
    cut = [list(t.ids[:tokens]) for t in targets]
    heads = [min(t.title_length, tokens) for t in targets]
    out: dict[str, Any] = {}
    for name, run in (
        ("full", lambda: scorer.token_logprobs(prompt, [([], t) for t in cut])),
        ("shared", lambda: scorer.shared_head_logprobs(prompt, cut, heads)),
    ):
        fed = scorer.tokens_fed
        started = time.perf_counter()
        logprobs = run()
        out[name] = {
            "seconds": time.perf_counter() - started,
            "fed": scorer.tokens_fed - fed,
            "logprobs": logprobs,
        }
    out["titles"] = len({t.ids[: t.title_length] for t in targets})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder with test qrels")
    parser.add_argument("--split", default="test")
    parser.add_argument("--questions", type=int, default=50, help="the first N test questions")
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates per question")
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--output", type=Path, default=RESULTS / "generation-score.json")
    args = parser.parse_args(argv)

    model = SelfRetrievalModel.from_pretrained(args.artifact)
    queries = load_beir_queries(args.data)
    qids = [q for q in sorted(load_beir_qrels(args.data, args.split)) if q in queries]
    qids = qids[: args.questions]
    if not qids:
        raise SystemExit(f"{args.data} has no {args.split} questions")
    bm25 = model.bm25_index()
    # one warm-up question, so that neither way pays for the first call's allocations
    warm = [(p.title, p.text) for p in list(model.store)[: args.depth]]
    score_both(model, queries[qids[0]], warm, max(args.tokens))
    rows: dict[int, dict[str, Any]] = {}
    for tokens in args.tokens:
        seconds: dict[str, list[float]] = {"full": [], "shared": []}
        fed = {"full": 0, "shared": 0}
        titles: list[int] = []
        largest = 0.0
        for qid in qids:
            top = np.argsort(-bm25.scores(queries[qid]), kind="stable")[: args.depth]
            pairs = [(model.store[int(i)].title, model.store[int(i)].text) for i in top]
            with model.lock:
                got = score_both(model, queries[qid], pairs, tokens)
            for name in seconds:
                seconds[name].append(got[name]["seconds"])
                fed[name] += got[name]["fed"]
            titles.append(got["titles"])
            for a, b in zip(got["full"]["logprobs"], got["shared"]["logprobs"], strict=True):
                largest = max(largest, float(np.max(np.abs(a - b))))
        full, shared = latency(seconds["full"]), latency(seconds["shared"])
        rows[tokens] = {
            "full": full,
            "shared": shared,
            "speedup_p50": round(full["p50_ms"] / shared["p50_ms"], 2),
            "positions_fed": fed,
            "titles_per_question_mean": round(float(np.mean(titles)), 2),
            "largest_logprob_difference": largest,
        }
    print(f"{len(qids)} questions, BM25's top {args.depth} each, {torch.get_num_threads()} threads")
    print("| tokens | full p50 ms | shared p50 ms | speed-up | positions fed (full / shared) |")
    print("|---|---|---|---|---|")
    for tokens, row in rows.items():
        fed = row["positions_fed"]
        print(
            f"| {tokens} | {row['full']['p50_ms']:.0f} | {row['shared']['p50_ms']:.0f} | "
            f"{row['speedup_p50']:.2f}x | {fed['full']:,} / {fed['shared']:,} |"
        )
    print(
        "largest log-probability difference:",
        max(r["largest_logprob_difference"] for r in rows.values()),
    )
    report = {
        "artifact": str(args.artifact),
        "data": str(args.data),
        "questions": len(qids),
        "depth": args.depth,
        "tokens": {str(t): r for t, r in rows.items()},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
