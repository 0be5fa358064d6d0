"""Benchmark the constrained decoder against a straightforward baseline.

For each model (``tiny`` and ``smollm2-135m`` by default) and corpus, measures forward passes and
milliseconds per query at beam 10 (``DecodingConfig(title_beams=5, passage_beams=10)``, k=10,
generation-only scoring) for:

* ``optimized``: ``SelfRetrievalModel.retrieve`` (jump-forward, one decoding loop, KV reused from
  the titles into the passages), one query at a time;
* ``optimized-no-jf``: the same with ``jump_forward=False`` (forced tokens one per forward pass);
* ``naive``: ``benchmarks/naive_decoding.py`` (dict trie, per-step Python
  ``prefix_allowed_tokens_fn``, one token per forward pass, titles and passages as separate calls
  that re-encode prompt + title), one query at a time;
* ``optimized-batch8``: ``retrieve_batch(..., batch_size=8)``, for throughput only (its passes
  per query are shared by 8 queries, so it is not used for the targets);
* ``naive-lazy``: for information, the naive baseline that does not feed a forced run
  which ends its stage (a token-by-token loop feeds it; its logits are never used). Since stage 2
  re-encodes prompt + title in one pass, this gets jump-forward through the titles for free.

Forward passes are counted by a hook on the model (and checked against what each decoder
reports). Timing: after a warm-up, every query runs ``--repeats`` times round-robin over the
systems (so background load on a shared machine hits them alike) and the fastest run counts;
``--threads 1`` gives steadier numbers on a loaded 2-core machine than torch's default.

All systems must return the same ranked passage ids with the same scores (abs 1e-3) as the
naive baseline; agreement is the fraction of queries where they do. Prints a table and writes
``benchmarks/results/decoding.json``.

    python benchmarks/decoding_bench.py --repeats 3            # both models (minutes on CPU)
    python benchmarks/decoding_bench.py --model tiny           # quick
    python benchmarks/decoding_bench.py --device cuda          # on a GPU (float32 by default)

Corpora: the bundled quickstart corpus (32 SQuAD passages) for every model, and for ``tiny`` also
a synthetic corpus of ``--synthetic-passages`` passages (default 2,000) under shared titles, so
the trie is deeper. Queries: the first ``--queries`` questions of the quickstart set (default 20;
``--smollm2-queries`` for SmolLM2, default 10).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_decoding import NaiveDecoder  # noqa: E402

from selfretrieval_integrations import (  # noqa: E402
    DecodingConfig,
    Passage,
    RetrievalConfig,
    SelfRetrievalModel,
    load_base_model,
    load_corpus,
)
from selfretrieval_integrations.corpus import (  # noqa: E402
    Corpus,
    load_beir_queries,
    quickstart_dir,
)
from selfretrieval_integrations.retrieval import Fusion  # noqa: E402

MODELS = ("tiny", "smollm2-135m")
SYSTEMS = ("naive", "naive-lazy", "optimized-no-jf", "optimized", "optimized-batch8")
TARGET_SYSTEM = "optimized"
BASELINE = "naive"
TARGETS = {"forward_pass_ratio_min": 3.0, "latency_ratio_min": 3.0}
SCORE_TOLERANCE = 1e-3
WARMUP_QUERIES = 2

# ---------------------------------------------------------------------------- corpora


def synthetic_corpus(n: int, seed: int = 0) -> Corpus:
    """``n`` passages under about ``n / 10`` titles that share words, from the quickstart words.

    Titles are 1-3 words, many starting alike ("History of ...", "List of ..."); a title holds
    1-30 passages (Zipf-like); passages are 12-30 words, a third of them opening with one of 40
    shared phrases, so the trie branches at several depths below titles too.
    """
    rng = np.random.default_rng(seed)
    words: list[str] = []
    for p in load_corpus(quickstart_dir()):
        words.extend(w.strip(".,;:()\"'") for w in p.text.split())
    vocab = sorted({w for w in words if w.isalpha()})
    heads = ["History of", "List of", "Geography of", "The", "University of", ""]
    n_titles = max(1, n // 10)
    titles: list[str] = []
    seen: set[str] = set()
    while len(titles) < n_titles:
        head = heads[int(rng.integers(len(heads)))]
        body = " ".join(rng.choice(vocab, int(rng.integers(1, 3)))).title()
        title = f"{head} {body}".strip()
        if title not in seen:
            seen.add(title)
            titles.append(title)
    openings = [
        " ".join(rng.choice(vocab, int(rng.integers(2, 6)))).capitalize() for _ in range(40)
    ]
    weights = 1.0 / np.arange(1, n_titles + 1)
    owner = np.concatenate(
        [np.arange(n_titles), rng.choice(n_titles, n - n_titles, p=weights / weights.sum())]
    )
    passages = []
    for i, t in enumerate(np.sort(owner)):
        body = " ".join(rng.choice(vocab, int(rng.integers(12, 31))))
        if rng.random() < 0.35:
            body = f"{openings[int(rng.integers(len(openings)))]} {body}"
        passages.append(
            Passage(
                id=f"s{i}", doc_id=f"t{int(t)}", title=titles[int(t)], text=body.capitalize() + "."
            )
        )
    return Corpus.from_passages(passages)


# ---------------------------------------------------------------------------- measuring


class PassCounter:
    """Counts calls of the model's top-level ``forward`` (independent of the decoders' stats)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


@dataclass
class SystemRun:
    name: str
    ms: list[float] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)
    reported_passes: list[int] = field(default_factory=list)
    tokens_fed: list[int] = field(default_factory=list)
    results: list[list[tuple[str, float]]] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Ranked = list[tuple[str, float]]


def _make_systems(
    model_pair: tuple[Any, Any], corpus: Corpus, decoding: DecodingConfig, k: int
) -> tuple[dict[str, Callable[[list[str]], tuple[list[Ranked], int, int]]], dict[str, Any]]:
    """Callables ``queries -> (ranked results, reported passes, tokens fed)`` per system."""
    config = RetrievalConfig(decoding=decoding, fusion=Fusion.GENERATION)
    no_jf = RetrievalConfig(
        decoding=DecodingConfig(
            title_beams=decoding.title_beams,
            passage_beams=decoding.passage_beams,
            jump_forward=False,
        ),
        fusion=Fusion.GENERATION,
    )
    start = time.perf_counter()
    optimized = SelfRetrievalModel.from_base(model_pair, corpus, config=config)
    build_s = time.perf_counter() - start
    plain = SelfRetrievalModel(
        optimized.model, optimized.tokenizer, optimized.trie, optimized.store, config=no_jf
    )
    start = time.perf_counter()
    baseline = NaiveDecoder.for_model(optimized, decoding)  # tokenizes + builds the dict trie
    naive_build_s = time.perf_counter() - start
    targets = [
        optimized.renderer.encode_target(optimized.store[i].title, optimized.store[i].text)
        for i in range(len(optimized.store))
    ]
    lazy = NaiveDecoder.for_model(optimized, decoding, feed_ending_runs=False)
    ids = [optimized.store[i].id for i in range(len(optimized.store))]

    def run_model(m: SelfRetrievalModel, batch_size: int):
        def run(queries: list[str]) -> tuple[list[Ranked], int, int]:
            out = m.retrieve_batch(queries, k=k, batch_size=batch_size)
            ranked = [[(r.passage_id, float(r.score)) for r in res] for res in out]
            return ranked, m.last_stats.forward_passes, m.last_stats.tokens_fed

        return run

    def run_naive(decoder: NaiveDecoder):
        def run(queries: list[str]) -> tuple[list[Ranked], int, int]:
            ranked = []
            before = (decoder.stats.forward_passes, decoder.stats.tokens_fed)
            for query in queries:
                prompt = optimized.renderer.encode_prompt(query)
                ranked.append([(ids[p], s) for p, s, _ in decoder.retrieve(prompt, k)])
            return (
                ranked,
                decoder.stats.forward_passes - before[0],
                decoder.stats.tokens_fed - before[1],
            )

        return run

    key_len = np.array([len(t.ids) for t in targets])
    title_len = np.array([t.title_length for t in targets])
    trie = optimized.trie
    leaf_depths = np.asarray(trie.leaf_depths())
    info = {
        "passages": len(corpus),
        "titles": len({p.title for p in corpus}),
        "mean_key_tokens": float(key_len.mean()),
        "mean_title_segment_tokens": float(title_len.mean()),
        "trie_nodes": int(trie.n_nodes),
        "mean_cut_depth": float(leaf_depths.mean()),
        "max_cut_depth": int(leaf_depths.max()),
        "trie_build_s": build_s,
        "dict_trie_build_s": naive_build_s,
    }
    systems = {
        "naive": run_naive(baseline),
        "naive-lazy": run_naive(lazy),
        "optimized-no-jf": run_model(plain, 1),
        "optimized": run_model(optimized, 1),
        "optimized-batch8": run_model(optimized, 8),
    }
    return systems, info


def _same(a: Ranked, b: Ranked) -> bool:
    return len(a) == len(b) and all(
        pa == pb and abs(sa - sb) <= SCORE_TOLERANCE
        for (pa, sa), (pb, sb) in zip(a, b, strict=True)
    )


def bench_corpus(
    model_pair: tuple[Any, Any],
    corpus: Corpus,
    queries: list[str],
    decoding: DecodingConfig,
    k: int,
    device: torch.device,
    systems_wanted: tuple[str, ...],
    repeats: int = 1,
) -> dict[str, Any]:
    systems, info = _make_systems(model_pair, corpus, decoding, k)
    systems = {name: fn for name, fn in systems.items() if name in systems_wanted}
    counter = PassCounter(model_pair[0])
    runs = {name: SystemRun(name) for name in systems}
    try:
        for fn in systems.values():  # warm-up
            fn(queries[:WARMUP_QUERIES])
        singles = [name for name in systems if name != "optimized-batch8"]
        for i, query in enumerate(queries):
            times: dict[str, list[float]] = {name: [] for name in singles}
            last: dict[str, tuple[list[Ranked], int, int, int]] = {}
            for _ in range(repeats):  # round-robin: background load hits every system alike
                for name in singles:
                    counter.count = 0
                    _sync(device)
                    start = time.perf_counter()
                    ranked, reported, fed = systems[name]([query])
                    _sync(device)
                    times[name].append((time.perf_counter() - start) * 1000)
                    last[name] = (ranked, reported, fed, counter.count)
            for name in singles:
                ranked, reported, fed, passes = last[name]
                run = runs[name]
                run.ms.append(min(times[name]))  # the least disturbed of the repeats
                run.passes.append(passes)
                run.reported_passes.append(reported)
                run.tokens_fed.append(fed)
                run.results.append(ranked[0])
            print(f"  query {i + 1}/{len(queries)} done", end="\r", file=sys.stderr, flush=True)
        if "optimized-batch8" in systems:
            run = runs["optimized-batch8"]
            totals = []
            for _ in range(repeats):
                counter.count = 0
                _sync(device)
                start = time.perf_counter()
                ranked, reported, fed = systems["optimized-batch8"](queries)
                _sync(device)
                totals.append((time.perf_counter() - start) * 1000)
            run.ms = [min(totals) / len(queries)] * len(queries)
            run.passes = [counter.count]
            run.reported_passes = [reported]
            run.tokens_fed = [fed]
            run.results = ranked
    finally:
        counter.close()
    print(file=sys.stderr)
    reference = runs[BASELINE].results if BASELINE in runs else None
    out: dict[str, Any] = {"corpus": info, "queries": len(queries), "systems": {}}
    for name, run in runs.items():
        n = len(queries)
        summary: dict[str, Any] = {
            "forward_passes_per_query": sum(run.passes) / n,
            "reported_forward_passes_per_query": sum(run.reported_passes) / n,
            "tokens_fed_per_query": sum(run.tokens_fed) / n,
            "ms_per_query_median": statistics.median(run.ms),
            "ms_per_query_mean": statistics.fmean(run.ms),
        }
        if name != "optimized-batch8":
            summary["ms_per_query_p90"] = float(np.percentile(run.ms, 90))
            summary["forward_passes_min_max"] = [min(run.passes), max(run.passes)]
        if reference is not None:
            agree = [_same(a, b) for a, b in zip(run.results, reference, strict=True)]
            summary["agreement_with_naive"] = sum(agree) / n
            summary["disagreeing_queries"] = [queries[i] for i, ok in enumerate(agree) if not ok]
        out["systems"][name] = summary
    if BASELINE in runs:
        base = out["systems"][BASELINE]
        for summary in out["systems"].values():
            summary["vs_naive"] = {
                "forward_pass_ratio": base["forward_passes_per_query"]
                / summary["forward_passes_per_query"],
                "latency_ratio_median": base["ms_per_query_median"]
                / summary["ms_per_query_median"],
                "latency_ratio_mean": base["ms_per_query_mean"] / summary["ms_per_query_mean"],
            }
        if TARGET_SYSTEM in out["systems"]:
            ratios = out["systems"][TARGET_SYSTEM]["vs_naive"]
            out["targets_met"] = {
                "forward_passes": ratios["forward_pass_ratio"] >= TARGETS["forward_pass_ratio_min"],
                "latency": ratios["latency_ratio_median"] >= TARGETS["latency_ratio_min"],
                "same_results": out["systems"][TARGET_SYSTEM]["agreement_with_naive"] == 1.0,
            }
    return out


# ---------------------------------------------------------------------------- reporting


def machine_info(device: torch.device) -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "numpy": np.__version__,
        "selfretrieval-integrations": version("selfretrieval-integrations"),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(report: dict[str, Any]) -> None:
    header = (
        f"{'model':<13} {'corpus':<15} {'system':<17} {'passes/q':>9} {'ms/q med':>9} "
        f"{'ms/q mean':>9} {'passes x':>9} {'latency x':>9} {'agree':>6}"
    )
    print(header)
    print("-" * len(header))
    for model_name, corpora in report["results"].items():
        for corpus_name, result in corpora.items():
            for name, s in result["systems"].items():
                ratios = s.get("vs_naive", {})
                print(
                    f"{model_name:<13} {corpus_name:<15} {name:<17} "
                    f"{s['forward_passes_per_query']:>9.1f} {s['ms_per_query_median']:>9.1f} "
                    f"{s['ms_per_query_mean']:>9.1f} "
                    f"{ratios.get('forward_pass_ratio', float('nan')):>9.2f} "
                    f"{ratios.get('latency_ratio_median', float('nan')):>9.2f} "
                    f"{s.get('agreement_with_naive', float('nan')):>6.2f}"
                )
    print("passes x / latency x: naive divided by the system (higher is better); latency uses")
    print(f"medians. Targets for '{TARGET_SYSTEM}': >= 3x fewer passes and >= 3x lower latency.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS, action="append", help="default: all")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, ...")
    parser.add_argument("--queries", type=int, default=20, help="queries per corpus (tiny)")
    parser.add_argument("--smollm2-queries", type=int, default=10, help="queries for SmolLM2")
    parser.add_argument("--synthetic-passages", type=int, default=2000)
    parser.add_argument(
        "--synthetic-for-all", action="store_true", help="also run SmolLM2 on the synthetic corpus"
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--title-beams", type=int, default=5)
    parser.add_argument("--passage-beams", type=int, default=10)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per query and system; the fastest counts"
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "decoding.json"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.model or list(MODELS)
    device = torch.device(args.device)
    decoding = DecodingConfig(title_beams=args.title_beams, passage_beams=args.passage_beams)
    all_queries = list(load_beir_queries(quickstart_dir()).values())
    report: dict[str, Any] = {
        "machine": machine_info(device),
        "load_average_at_start": list(os.getloadavg()),
        "config": {
            "decoding": asdict(decoding),
            "k": args.k,
            "fusion": Fusion.GENERATION.value,
            "dtype": args.dtype,
            "warmup_queries": WARMUP_QUERIES,
            "repeats": args.repeats,
            "timing": "per query and system the fastest of `repeats` runs; systems round-robin",
            "score_tolerance": SCORE_TOLERANCE,
            "targets": TARGETS,
            "target_system": TARGET_SYSTEM,
        },
        "results": {},
    }
    for model_name in models:
        start = time.perf_counter()
        model_pair = load_base_model(model_name, device=device, dtype=args.dtype)
        load_s = time.perf_counter() - start
        n_queries = args.smollm2_queries if model_name == "smollm2-135m" else args.queries
        queries = all_queries[:n_queries]
        corpora = {"quickstart-32": load_corpus(quickstart_dir())}
        if model_name == "tiny" or args.synthetic_for_all:
            corpora[f"synthetic-{args.synthetic_passages}"] = synthetic_corpus(
                args.synthetic_passages
            )
        report["results"][model_name] = {}
        for corpus_name, corpus in corpora.items():
            print(f"{model_name} / {corpus_name}: {len(queries)} queries", file=sys.stderr)
            result = bench_corpus(
                model_pair,
                corpus,
                queries,
                decoding,
                args.k,
                device,
                tuple(args.systems),
                args.repeats,
            )
            result["model_load_s"] = load_s
            report["results"][model_name][corpus_name] = result
        del model_pair
    report["load_average_at_end"] = list(os.getloadavg())
    print_table(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
