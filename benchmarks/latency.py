"""Query latency of Self-Retrieval and the SelfReranker on a CPU: today's path against the faster
settings, step by step, on the same questions, plus 16 concurrent async calls.

Paths (each a way of loading and configuring the same artifact):

- ``today``: what a user got before (full-passage assessment, float32 weights);
- ``window-N``: the assessment reads the first N passage tokens
  (``AssessmentConfig.window_tokens``);
- ``int8``: dynamic int8 linear layers of the transformer body
  (``from_pretrained(quantize="int8")``);
- ``int8-all``: the output head quantized too;
- ``fast``: ``int8`` and a window (``--window``).

Self-Retrieval runs in ``self`` mode with self-assessment (k=10) on the bundled corpus's held-out
questions: p50/p95 per stage (decode, assessment), forward passes per query and Hits@1. The
SelfReranker reorders BM25's top 20. Concurrency: 16 ``aretrieve`` calls at once against the same
16 ``retrieve`` calls one after another, with the results compared. Prints a table and writes
``benchmarks/results/latency.json``.

    python benchmarks/latency.py --artifact runs/quickstart
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.corpus import load_beir_qrels, load_beir_queries, quickstart_dir
from selfretrieval_integrations.evaluation.metrics import latency
from selfretrieval_integrations.retrieval import RetrievalMode, rerank

RESULTS = Path(__file__).parent / "results"


class StageClock:
    """Seconds spent in the decoder and the assessor of one model, per call of the benchmark."""

    def __init__(self, model: SelfRetrievalModel) -> None:
        self.model = model
        self.seconds = {"decode": 0.0, "assessment": 0.0, "generation": 0.0}
        self._wrap(model.decoder, "decode", "decode")
        self._wrap(model.assessor, "relevance", "assessment")
        self._wrap(model.assessor, "target_logprobs", "generation")

    def _wrap(self, owner: Any, method: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        setattr(owner, method, timed)

    def reset(self) -> dict[str, float]:
        taken = dict(self.seconds)
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        return taken


def load(artifact: Path, path: str, window: int) -> SelfRetrievalModel:
    quantize = "int8" if path in ("int8", "fast") else None
    model = SelfRetrievalModel.from_pretrained(artifact, quantize=quantize)
    if path == "int8-all":  # the output head quantized too (measured worse; not an option)
        from selfretrieval_integrations.base_models import quantize_int8

        model = SelfRetrievalModel.from_pretrained(artifact)
        quantized = quantize_int8(model.model, keep_float=())
        model.model = model.decoder.model = model.assessor.model = quantized
        model.assessor.scorer.model = quantized
    config = replace(model.config, mode=RetrievalMode.SELF)
    tokens = None
    if path == "fast":
        tokens = window
    elif path.startswith("window-"):
        tokens = int(path.split("-", 1)[1])
    model.config = replace(config, assessment=replace(config.assessment, window_tokens=tokens))
    return model


def self_retrieval(
    model: SelfRetrievalModel, questions: list[str], relevant: list[set[str]], k: int
) -> dict[str, Any]:
    clock = StageClock(model)
    model.retrieve(questions[0], k=k)  # warm-up: caches, first-call allocations
    clock.reset()
    stages: dict[str, list[float]] = {"total": [], "decode": [], "assessment": []}
    passes: list[int] = []
    firsts: list[str] = []
    for question in questions:
        before = model.assessor.scorer.forward_passes
        started = time.perf_counter()
        results = model.retrieve(question, k=k)
        stages["total"].append(time.perf_counter() - started)
        taken = clock.reset()
        stages["decode"].append(taken["decode"])
        stages["assessment"].append(taken["assessment"])
        passes.append(
            model.last_stats.forward_passes + model.assessor.scorer.forward_passes - before
        )
        firsts.append(results[0].doc_id if results else "")
    hits = [f in rel for f, rel in zip(firsts, relevant, strict=True)]
    return {
        "hits@1": round(float(np.mean(hits)), 4),
        "latency": {stage: latency(values) for stage, values in stages.items()},
        "forward_passes_per_query": round(float(np.mean(passes)), 1),
        "first": firsts,
    }


def reranker(
    model: SelfRetrievalModel, questions: list[str], relevant: list[set[str]], depth: int
) -> dict[str, Any]:
    bm25 = model.bm25_index()
    seconds, hits = [], []
    for question in questions:
        scores = bm25.scores(question)
        top = np.argsort(-scores, kind="stable")[:depth]
        passages = [model.store[int(i)] for i in top]
        started = time.perf_counter()
        order = rerank(model, question, passages, scores=[float(scores[i]) for i in top])
        seconds.append(time.perf_counter() - started)
        hits.append(passages[order[0].index].doc_id in relevant[len(hits)])
    return {"hits@1": round(float(np.mean(hits)), 4), "latency": latency(seconds)}


def concurrency(model: SelfRetrievalModel, questions: list[str], k: int) -> dict[str, Any]:
    model.retrieve(questions[0], k=k)
    started = time.perf_counter()
    sequential = [model.retrieve(q, k=k) for q in questions]
    sequential_s = time.perf_counter() - started

    async def together() -> list[Any]:
        return await asyncio.gather(*(model.aretrieve(q, k=k) for q in questions))

    batches_before = model.batcher().batches
    started = time.perf_counter()
    concurrent = asyncio.run(together())
    concurrent_s = time.perf_counter() - started
    same_ids = all(
        [r.passage_id for r in a] == [r.passage_id for r in b]
        for a, b in zip(sequential, concurrent, strict=True)
    )
    score_gap = max(
        (
            abs(x.score - y.score)
            for a, b in zip(sequential, concurrent, strict=True)
            for x, y in zip(a, b, strict=True)
        ),
        default=0.0,
    )
    return {
        "calls": len(questions),
        "sequential_s": round(sequential_s, 2),
        "concurrent_s": round(concurrent_s, 2),
        "throughput_ratio": round(sequential_s / concurrent_s, 2),
        "batches": model.batcher().batches - batches_before,
        "results_equal": same_ids,
        "max_score_difference": float(score_gap),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--paths", nargs="+", default=["today", "window-128", "int8", "fast"])
    parser.add_argument("--window", type=int, default=128, help="window_tokens of the fast path")
    parser.add_argument("--questions", type=int, default=None, help="first N held-out questions")
    parser.add_argument("--rerank-questions", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--concurrency-paths", nargs="+", default=["fast"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args()

    folder = quickstart_dir()
    queries = load_beir_queries(folder)
    qrels = load_beir_qrels(folder, "test")
    qids = sorted(qrels)[: args.questions]
    questions = [queries[q] for q in qids]
    relevant = [{d for d, v in qrels[q].items() if v > 0} for q in qids]

    paths: dict[str, Any] = {}
    for path in args.paths:
        model = load(args.artifact, path, args.window)
        paths[path] = {
            "self_retrieval": self_retrieval(model, questions, relevant, args.k),
            "reranker": reranker(
                model,
                questions[: args.rerank_questions],
                relevant[: args.rerank_questions],
                args.depth,
            ),
        }
        if path in args.concurrency_paths:
            paths[path]["concurrency"] = concurrency(model, questions[: args.concurrent], args.k)
        row = paths[path]
        print(
            f"{path}: SR p50 {row['self_retrieval']['latency']['total']['p50_ms']:.0f} ms "
            f"Hits@1 {row['self_retrieval']['hits@1']:.3f}; reranker p50 "
            f"{row['reranker']['latency']['p50_ms']:.0f} ms Hits@1 {row['reranker']['hits@1']:.3f}",
            flush=True,
        )

    base = paths.get("today")
    print(f"\n{len(questions)} held-out questions (reranker: first {args.rerank_questions})")
    header = (
        f"{'path':>10} | {'SR p50':>8} {'p95':>8} {'decode':>8} {'assess':>8} {'passes':>6} "
        f"{'Hits@1':>6} {'x':>5} | {'rerank p50':>10} {'Hits@1':>6} {'x':>5}"
    )
    print(header)
    for name, row in paths.items():
        sr, rr = row["self_retrieval"], row["reranker"]
        speed = (
            base["self_retrieval"]["latency"]["total"]["p50_ms"] / sr["latency"]["total"]["p50_ms"]
            if base
            else float("nan")
        )
        rspeed = (
            base["reranker"]["latency"]["p50_ms"] / rr["latency"]["p50_ms"]
            if base
            else float("nan")
        )
        row["speedup_vs_today"] = {
            "self_retrieval_p50": round(speed, 2),
            "reranker_p50": round(rspeed, 2),
        }
        print(
            f"{name:>10} | {sr['latency']['total']['p50_ms']:8.0f} "
            f"{sr['latency']['total']['p95_ms']:8.0f} {sr['latency']['decode']['p50_ms']:8.0f} "
            f"{sr['latency']['assessment']['p50_ms']:8.0f} {sr['forward_passes_per_query']:6.1f} "
            f"{sr['hits@1']:6.3f} {speed:5.2f} | {rr['latency']['p50_ms']:10.0f} "
            f"{rr['hits@1']:6.3f} {rspeed:5.2f}"
        )
    for name, row in paths.items():
        if "concurrency" in row:
            print(f"concurrency ({name}): {json.dumps(row['concurrency'])}")
        row["self_retrieval"].pop("first")
    report = {
        "artifact": str(args.artifact),
        "dataset": "bundled quickstart corpus (SQuAD v1.1 sample), held-out test questions",
        "questions": len(questions),
        "rerank_questions": min(args.rerank_questions, len(questions)),
        "k": args.k,
        "rerank_depth": args.depth,
        "window": args.window,
        "paths": paths,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": "cpu",
        },
        "command": "python benchmarks/latency.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if v is not None
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
