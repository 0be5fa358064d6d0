"""Query latency of Self-Retrieval and the SelfReranker on a CPU: today's path against the faster
settings, step by step, on the same questions, plus 16 concurrent async calls.

Paths (each a way of loading and configuring the same artifact):

- ``today``: what a user got before (the refusal assessment over the full passage, the
  ``logprob`` fusion in ``self`` mode, the reranker weights fitted with the refusal, float32
  weights); every path without ``ql`` judges that way;
- ``ql``: query likelihood, the default assessment since then, whose passage caches are kept
  between queries (``AssessmentConfig.cache_megabytes``); ``ql-cold`` keeps none, so every
  candidate is read again (the cost of a passage met for the first time); ``warm`` reads the
  whole corpus before the first query (``SelfRetrievalModel.warm_cache``);
- ``window-N``: the assessment reads the first N passage tokens
  (``AssessmentConfig.window_tokens``);
- ``int8``: dynamic int8 linear layers of the transformer body
  (``from_pretrained(quantize="int8")``);
- ``int8-all``, ``int8-channel``, ``int8-mlp``, ``int8-attention``: int8 variants measured
  against the library's (the output head too; per-channel weight scales; the MLP blocks only;
  the attention blocks only);
- ``exact-N``: only the candidates that can still reach the first N places are assessed
  (``AssessmentConfig.exact_ranks``; those places are exact);
- ``hybrid``: retrieval in ``hybrid`` mode instead of ``self``;
- ``probability``: the artifact of ``--probability-artifact``, whose fusion weights were fitted
  with relevance on the probability scale (``HybridConfig.relevance_scale``), so the hybrid and
  the SelfReranker can skip candidates too;
- ``fast``: ``int8`` and a window (``--window``);
- settings joined by ``+``, e.g. ``exact-1+window-128``.

Self-Retrieval runs in ``self`` mode with self-assessment (k=10) on the bundled corpus's held-out
questions: p50/p95 per stage (decode, assessment), forward passes per query and Hits@1. The
SelfReranker reorders BM25's top 20. Concurrency: 16 ``aretrieve`` calls at once against the same
16 ``retrieve`` calls one after another, with the results compared; all of them compute on the
library's compute thread (``SELFRETRIEVAL_COMPUTE_THREAD=0``: each on its calling thread, as
before it). Prints a table and writes ``benchmarks/results/latency.json``.

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
from selfretrieval_integrations.retrieval import Fusion, RetrievalMode, compute_thread, rerank

RESULTS = Path(__file__).parent / "results"


class StageClock:
    """Seconds spent in the decoder and the assessor of one model, per call of the benchmark."""

    def __init__(self, model: SelfRetrievalModel) -> None:
        self.model = model
        self.seconds = {"decode": 0.0, "assessment": 0.0, "generation": 0.0}
        self._wrap(model.decoder, "decode", "decode")
        self._wrap(model.assessor, "_refusal_loss", "assessment")
        self._wrap(model.assessor, "_query_likelihood", "assessment")
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


def load(
    artifact: Path,
    path: str,
    window: int,
    probability_artifact: Path | None,
    dtype: str | None = None,
) -> SelfRetrievalModel:
    """The artifact loaded and configured as ``path`` says: ``+``-joined settings, e.g.
    ``exact-1+window-128``."""
    settings = ["int8", f"window-{window}"] if path == "fast" else path.split("+")
    quantize = "int8" if "int8" in settings else None
    if "probability" in settings:
        if probability_artifact is None:
            raise SystemExit(f"path {path!r} needs --probability-artifact")
        artifact = probability_artifact
    model = SelfRetrievalModel.from_pretrained(artifact, quantize=quantize, dtype=dtype)
    if "probability" in settings and model.config.hybrid.relevance_scale != "probability":
        raise SystemExit(f"{artifact} was not fitted with --relevance-scale probability")
    variants = [s for s in settings if s.startswith("int8-")]
    if variants:  # int8 variants measured against the library's (not options of it)
        quantized = _quantize_variant(model.model, variants[0])
        model.model = model.decoder.model = model.assessor.model = quantized
        model.assessor.scorer.model = model.assessor.context_scorer.model = quantized
        model.assessor.context_scorer.cache.clear()
    # every path judges by the refusal, as before, unless it says ``ql``
    assessment = replace(model.config.assessment, method="refusal")
    for setting in settings:
        name, _, value = setting.partition("-")
        if name == "ql":
            cache = 0 if value == "cold" else max(assessment.cache_megabytes, 1024)
            assessment = replace(assessment, method="query_likelihood", cache_megabytes=cache)
        elif name == "window":
            assessment = replace(assessment, window_tokens=int(value))
        elif name == "exact":
            assessment = replace(assessment, exact_ranks=int(value))
        elif setting not in ("today", "int8", "hybrid", "probability", "warm", *INT8_VARIANTS):
            raise SystemExit(f"unknown setting {setting!r} in path {path!r}")
    mode = RetrievalMode.HYBRID if "hybrid" in settings else RetrievalMode.SELF
    config = replace(model.config, mode=mode, assessment=assessment)
    if assessment.method == "refusal":
        # Before query likelihood: the ``logprob`` fusion, and the reranker weights fitted with
        # the refusal's relevance on the SQuAD small slice (the defaults of that time).
        hybrid = replace(
            config.hybrid,
            generation_tokens=16,
            rerank_weights={"first_stage": 0.55, "generation": 0.25, "relevance": 0.2},
        )
        config = replace(config, fusion=Fusion.LOGPROB, hybrid=hybrid)
    model.config = config
    if "warm" in settings:
        started = time.perf_counter()
        model.warm_cache()
        print(f"{path}: read the corpus in {time.perf_counter() - started:.1f} s", flush=True)
    return model


#: int8 variants the benchmark compares with the library's (body per tensor, head in float).
INT8_VARIANTS = ("int8-all", "int8-channel", "int8-mlp", "int8-attention")


def _quantize_variant(model: Any, variant: str) -> Any:
    """``model`` with dynamic int8 on other layers or with other scales than ``quantize_int8``:
    ``all`` adds the output head, ``channel`` uses per-channel weight scales, ``mlp`` and
    ``attention`` quantize only those blocks."""
    import warnings

    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    if variant not in INT8_VARIANTS:
        raise SystemExit(f"unknown int8 variant {variant!r}; use one of {list(INT8_VARIANTS)}")
    part = variant.removeprefix("int8-")
    qconfig = per_channel_dynamic_qconfig if part == "channel" else default_dynamic_qconfig

    def chosen(name: str) -> bool:
        if name.endswith("lm_head"):
            return part == "all"
        return {"mlp": ".mlp." in name, "attention": ".self_attn." in name}.get(part, True)

    layers = {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and chosen(name)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, layers, dtype=torch.qint8).eval()


def self_retrieval(
    model: SelfRetrievalModel, questions: list[str], relevant: list[set[str]], k: int
) -> dict[str, Any]:
    clock = StageClock(model)
    model.retrieve(questions[0], k=k)  # warm-up: caches, first-call allocations
    clock.reset()
    stages: dict[str, list[float]] = {"total": [], "decode": [], "assessment": []}
    passes: list[int] = []
    assessed: list[int] = []
    firsts: list[str] = []
    for question in questions:
        before = _assessment_passes(model)
        assessed_before = model.assessor.passages_assessed
        started = time.perf_counter()
        results = model.retrieve(question, k=k)
        stages["total"].append(time.perf_counter() - started)
        taken = clock.reset()
        stages["decode"].append(taken["decode"])
        stages["assessment"].append(taken["assessment"])
        passes.append(model.last_stats.forward_passes + _assessment_passes(model) - before)
        assessed.append(model.assessor.passages_assessed - assessed_before)
        firsts.append(results[0].doc_id if results else "")
    hits = [f in rel for f, rel in zip(firsts, relevant, strict=True)]
    return {
        "hits@1": round(float(np.mean(hits)), 4),
        "latency": {stage: latency(values) for stage, values in stages.items()},
        "forward_passes_per_query": round(float(np.mean(passes)), 1),
        "passages_assessed_per_query": round(float(np.mean(assessed)), 1),
        "passage_cache": {
            "hits": model.assessor.context_scorer.cache.hits,
            "misses": model.assessor.context_scorer.cache.misses,
            "megabytes": round(model.assessor.context_scorer.cache.bytes / 2**20, 1),
        },
        "first": firsts,
    }


def _assessment_passes(model: SelfRetrievalModel) -> int:
    """Forward passes of both assessment scorers (the refusal's and query likelihood's)."""
    return model.assessor.scorer.forward_passes + model.assessor.context_scorer.forward_passes


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
    """The same calls one after another, then all at once through the model's batcher (merging
    up to 16, one call at a time with int8), through a batcher that merges up to 16, and on two
    threads."""
    from selfretrieval_integrations.retrieval.batching import RequestBatcher

    for q in questions:  # warm-up: every path below then meets the same (warm) caches
        model.retrieve(q, k=k)
    started = time.perf_counter()
    sequential = [model.retrieve(q, k=k) for q in questions]
    sequential_s = time.perf_counter() - started

    def together(batcher: RequestBatcher) -> dict[str, Any]:
        async def gather() -> list[Any]:
            return await asyncio.gather(*(batcher.retrieve(q, k) for q in questions))

        batches_before = batcher.batches
        started = time.perf_counter()
        concurrent = asyncio.run(gather())
        seconds = time.perf_counter() - started
        return {
            "seconds": round(seconds, 2),
            "throughput_ratio": round(sequential_s / seconds, 2),
            "batches": batcher.batches - batches_before,
            "results_equal": all(
                [r.passage_id for r in a] == [r.passage_id for r in b]
                for a, b in zip(sequential, concurrent, strict=True)
            ),
            # where they are not (bfloat16 on a GPU): how many top-k lists, and first places
            "rankings_differing": sum(
                [r.passage_id for r in a] != [r.passage_id for r in b]
                for a, b in zip(sequential, concurrent, strict=True)
            ),
            "first_places_differing": sum(
                a[0].passage_id != b[0].passage_id
                for a, b in zip(sequential, concurrent, strict=True)
                if a and b
            ),
            "max_score_difference": float(
                max(
                    (
                        abs(x.score - y.score)
                        for a, b in zip(sequential, concurrent, strict=True)
                        for x, y in zip(a, b, strict=True)
                    ),
                    default=0.0,
                )
            ),
        }

    merged = RequestBatcher(model, max_batch=16)
    try:
        batched = together(merged)
    finally:
        merged.close()
    return {
        "calls": len(questions),
        "compute_thread": compute_thread.enabled(),
        "sequential_s": round(sequential_s, 2),
        "model_batcher": together(model.batcher()),
        "batches_of_16": batched,
        "two_threads_one_core_each": _two_threads(model, questions, k, sequential, sequential_s),
    }


def _ratio(base: dict | None, row: dict, system: str, stage: str | None = None) -> float:
    """The baseline's p50 over this path's (NaN when the baseline did not run this system)."""
    if not base or system not in base:
        return float("nan")
    today, this = base[system]["latency"], row[system]["latency"]
    if stage is not None:
        today, this = today[stage], this[stage]
    return today["p50_ms"] / this["p50_ms"]


def _two_threads(
    model: SelfRetrievalModel, questions: list[str], k: int, sequential: list, sequential_s: float
) -> dict[str, Any]:
    """The other way to use two cores: two calls at once, one torch thread each, on two views of
    the same weights with their own locks (the tokenizer is shared: results are compared). Each
    computes on its own thread: the library's compute thread is switched off for it."""
    import copy
    import threading
    from concurrent.futures import ThreadPoolExecutor

    views = []
    for _ in range(2):
        view = copy.copy(model)
        view.lock = threading.RLock()
        views.append(view)
    before = torch.get_num_threads()
    switch = os.environ.get(compute_thread.ENV_SWITCH)
    os.environ[compute_thread.ENV_SWITCH] = "0"
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(views[i % 2].retrieve, q, k) for i, q in enumerate(questions)]
            results = [f.result() for f in futures]
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(before)
        if switch is None:
            del os.environ[compute_thread.ENV_SWITCH]
        else:
            os.environ[compute_thread.ENV_SWITCH] = switch
    return {
        "seconds": round(seconds, 2),
        "throughput_ratio": round(sequential_s / seconds, 2),
        "results_equal": all(
            [r.passage_id for r in a] == [r.passage_id for r in b]
            for a, b in zip(sequential, results, strict=True)
        ),
    }


def cpu_machine() -> dict[str, Any]:
    """What a timing depends on, for the report (``worker_thread.py`` uses it too): the CPU, and
    the GPU where the model went to one (``from_pretrained`` picks CUDA when there is one)."""
    gpu = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if gpu else "cpu",
        **({"gpu": torch.cuda.get_device_name(0)} if gpu else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--paths", nargs="+", default=["today", "window-128", "int8", "fast"])
    parser.add_argument("--window", type=int, default=128, help="window_tokens of the fast path")
    parser.add_argument(
        "--probability-artifact",
        type=Path,
        default=None,
        help="the artifact re-fitted with `selfretrieval fit-fusion --relevance-scale "
        "probability`, for paths with `probability`",
    )
    parser.add_argument("--questions", type=int, default=None, help="first N held-out questions")
    parser.add_argument("--baseline", default="today", help="the path speed-ups compare with")
    parser.add_argument("--rerank-questions", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--concurrency-paths", nargs="*", default=["fast"])
    parser.add_argument(
        "--concurrency-repeats",
        type=int,
        default=1,
        help="measure concurrency this many times (a list in the report when more than one)",
    )
    parser.add_argument(
        "--rerank-paths", nargs="*", default=None, help="paths that run the reranker (all)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        help="the model's dtype (default: the library's, float32 on a CPU, bfloat16 on a GPU)",
    )
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
        model = load(args.artifact, path, args.window, args.probability_artifact, args.dtype)
        paths[path] = {"self_retrieval": self_retrieval(model, questions, relevant, args.k)}
        if args.rerank_paths is None or path in args.rerank_paths:
            paths[path]["reranker"] = reranker(
                model,
                questions[: args.rerank_questions],
                relevant[: args.rerank_questions],
                args.depth,
            )
        if path in args.concurrency_paths:
            runs = [
                concurrency(model, questions[: args.concurrent], args.k)
                for _ in range(args.concurrency_repeats)
            ]
            paths[path]["concurrency"] = runs[0] if len(runs) == 1 else runs
        sr = paths[path]["self_retrieval"]
        print(
            f"{path}: SR p50 {sr['latency']['total']['p50_ms']:.0f} ms Hits@1 {sr['hits@1']:.3f}",
            flush=True,
        )

    base = paths.get(args.baseline)
    print(f"\n{len(questions)} held-out questions (reranker: first {args.rerank_questions})")
    header = (
        f"{'path':>22} | {'SR p50':>8} {'p95':>8} {'decode':>8} {'assess':>8} {'passes':>6} "
        f"{'scored':>6} {'Hits@1':>6} {'x':>5} | {'rerank p50':>10} {'Hits@1':>6} {'x':>5}"
    )
    print(header)
    for name, row in paths.items():
        sr = row["self_retrieval"]
        speed = _ratio(base, row, "self_retrieval", "total")
        row["speedup_vs_baseline"] = {"self_retrieval_p50": round(speed, 2)}
        cells = f"{'-':>10} {'-':>6} {'-':>5}"
        if "reranker" in row:
            rspeed = _ratio(base, row, "reranker")
            row["speedup_vs_baseline"]["reranker_p50"] = round(rspeed, 2)
            rr = row["reranker"]
            cells = f"{rr['latency']['p50_ms']:10.0f} {rr['hits@1']:6.3f} {rspeed:5.2f}"
        print(
            f"{name:>22} | {sr['latency']['total']['p50_ms']:8.0f} "
            f"{sr['latency']['total']['p95_ms']:8.0f} {sr['latency']['decode']['p50_ms']:8.0f} "
            f"{sr['latency']['assessment']['p50_ms']:8.0f} {sr['forward_passes_per_query']:6.1f} "
            f"{sr['passages_assessed_per_query']:6.1f} {sr['hits@1']:6.3f} {speed:5.2f} | {cells}"
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
        "baseline": args.baseline,
        "paths": paths,
        "machine": cpu_machine(),
        "dtype": str(next(model.model.parameters()).dtype),
        "command": (
            f"{compute_thread.ENV_SWITCH}={os.environ[compute_thread.ENV_SWITCH]} "
            if compute_thread.ENV_SWITCH in os.environ
            else ""
        )
        + "python benchmarks/latency.py "
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
