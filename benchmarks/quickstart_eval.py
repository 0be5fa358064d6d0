"""Retrieval quality on the bundled quickstart corpus: before and after training, against BM25.

Evaluates the held-out (test) questions of the bundled corpus. A passage counts as relevant when
it belongs to the question's SQuAD paragraph. Prints a table and writes
``benchmarks/results/quickstart.json``.

    python benchmarks/quickstart_eval.py --artifact selfretrieval-quickstart --zero-shot
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from selfretrieval_integrations import RetrievalConfig, SelfRetrievalModel
from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.index import BM25Index
from selfretrieval_integrations.retrieval import Fusion, fuse_scores

RESULTS = Path(__file__).parent / "results"


def metrics(ranked: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    """Hits@1/5/10 and MRR@5/10 over document ids (one relevant paragraph per question)."""
    first = []
    for docs, rel in zip(ranked, relevant, strict=True):
        hit = next((i + 1 for i, d in enumerate(docs) if d in rel), None)
        first.append(hit)

    def hits(n: int) -> float:
        return float(np.mean([h is not None and h <= n for h in first]))

    def mrr(n: int) -> float:
        return float(np.mean([1.0 / h if h is not None and h <= n else 0.0 for h in first]))

    return {
        "hits@1": hits(1),
        "hits@5": hits(5),
        "hits@10": hits(10),
        "mrr@5": mrr(5),
        "mrr@10": mrr(10),
    }


def evaluate_model(
    model: SelfRetrievalModel, questions: list[str], k: int, fusions: list[str]
) -> tuple[dict[str, list[list[str]]], float]:
    """Rankings under each fusion, from one retrieval per question.

    Candidates are decoded and self-assessed once (``paper`` fusion keeps every candidate when
    ``k`` equals the passage beam width); each fusion then re-scores the same candidates.
    """
    needs_assessment = any(f != "generation" for f in fusions)
    model.config = RetrievalConfig(
        decoding=model.config.decoding,
        assessment=model.config.assessment,
        fusion=Fusion.PAPER if needs_assessment else Fusion.GENERATION,
        temperature=model.config.temperature,
    )
    ranked: dict[str, list[list[str]]] = {f: [] for f in fusions}
    started = time.perf_counter()
    for question in questions:
        results = model.retrieve(question, k=k)
        for fusion in fusions:
            scores = fuse_scores(
                fusion,
                title_keys=[r.title for r in results],
                title_logprobs=np.array([r.title_logprob for r in results]),
                logprobs=np.array([r.generation_logprob for r in results]),
                relevance=None
                if fusion == "generation"
                else np.array([r.relevance for r in results]),
                temperature=model.config.temperature,
            )
            order = sorted(range(len(results)), key=lambda i: -scores[i])
            ranked[fusion].append([results[i].doc_id for i in order])
    return ranked, (time.perf_counter() - started) / len(questions) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="trained artifact to evaluate")
    parser.add_argument("--zero-shot", action="store_true", help="also the untrained base model")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument(
        "--fusion", nargs="+", default=["generation", "paper"], choices=[f.value for f in Fusion]
    )
    parser.add_argument("--limit", type=int, default=None, help="first N test questions only")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS / "quickstart.json")
    args = parser.parse_args()

    folder = quickstart_dir()
    corpus = load_corpus(folder)
    queries = load_beir_queries(folder)
    qrels = load_beir_qrels(folder, "test")
    qids = sorted(qrels)[: args.limit]
    questions = [queries[q] for q in qids]
    relevant = [set(qrels[q]) for q in qids]
    systems: dict[str, dict] = {}

    bm25 = BM25Index(list(corpus))
    started = time.perf_counter()
    indices, _ = bm25.search(questions, args.k)
    bm25_ms = (time.perf_counter() - started) / len(questions) * 1000
    ranked = [[corpus[int(i)].doc_id for i in row] for row in indices]
    systems["bm25"] = {**metrics(ranked, relevant), "ms_per_query": bm25_ms}

    models = []
    if args.zero_shot:
        models.append(("zero-shot", SelfRetrievalModel.from_base(args.base_model, corpus)))
    if args.artifact:
        models.append(("trained", SelfRetrievalModel.from_pretrained(args.artifact)))
    for label, model in models:
        ranked_by, ms = evaluate_model(model, questions, args.k, args.fusion)
        for fusion, ranked in ranked_by.items():
            systems[f"{label}/{fusion}"] = {**metrics(ranked, relevant), "ms_per_query": ms}
            print(label, fusion, systems[f"{label}/{fusion}"], flush=True)

    print(f"\n{len(questions)} test questions, {len(corpus)} passages")
    header = ["system", "hits@1", "hits@5", "hits@10", "mrr@5", "ms/query"]
    print(" | ".join(f"{h:>22}" if i == 0 else f"{h:>8}" for i, h in enumerate(header)))
    for name, row in systems.items():
        print(
            f"{name:>22} | "
            + " | ".join(f"{row[m]:8.3f}" for m in ("hits@1", "hits@5", "hits@10", "mrr@5"))
            + f" | {row['ms_per_query']:8.1f}"
        )
    report = {
        "dataset": "bundled quickstart corpus (SQuAD v1.1 sample), test split",
        "questions": len(questions),
        "passages": len(corpus),
        "artifact": str(args.artifact) if args.artifact else None,
        "training": (models[-1][1].manifest.get("training") if args.artifact else None),
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "systems": systems,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
