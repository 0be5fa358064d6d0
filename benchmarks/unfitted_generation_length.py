"""Hits@1 and time of an *unfitted* hybrid (an artifact trained on the corpus alone, as a user
with no questions trains it) on the bundled corpus's 102 held-out questions, for each length of
the generation score.

Such an artifact keeps ``HybridConfig()``'s weights and generation length, since there is
nothing to fit them on; this measures whether that length is the right default.

    python benchmarks/unfitted_generation_length.py --artifact runs/quickstart-corpus-only
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.index import BM25Index
from selfretrieval_integrations.retrieval import RetrievalMode

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True, help="trained here if missing")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 16, 8])
    parser.add_argument("--output", type=Path, default=RESULTS / "unfitted-generation-length.json")
    args = parser.parse_args()
    console = Console()
    folder = quickstart_dir()
    corpus = load_corpus(folder)
    queries = load_beir_queries(folder)
    test = load_beir_qrels(folder, "test")
    train_seconds = None
    if not args.artifact.exists():
        from selfretrieval_trainer.config import TrainingConfig
        from selfretrieval_trainer.train import train

        started = time.perf_counter()
        train(args.base_model, corpus, args.artifact, config=TrainingConfig(epochs=args.epochs))
        train_seconds = round(time.perf_counter() - started, 1)
    if SelfRetrievalModel.from_pretrained(args.artifact).config.hybrid.fitted:
        parser.error(f"{args.artifact} has fitted fusion weights; this measures an unfitted one")
    qids = sorted(test)
    texts = [queries[q] for q in qids]
    passages = list(corpus)
    by_bm25 = BM25Index(passages).search(texts, 1)[0][:, 0]
    rows = {"BM25": {"hits@1": _share(qids, [passages[int(i)].doc_id for i in by_bm25], test)}}
    for tokens in args.tokens:
        model = SelfRetrievalModel.from_pretrained(args.artifact)  # an empty passage cache
        hybrid = replace(model.config.hybrid, generation_tokens=tokens)
        model.config = replace(model.config, mode=RetrievalMode.HYBRID, hybrid=hybrid)
        started = time.perf_counter()
        top = [r[0].doc_id if r else None for r in model.retrieve_batch(texts, k=1)]
        seconds = time.perf_counter() - started
        rows[f"hybrid, {tokens} generation tokens"] = {
            "hits@1": _share(qids, top, test),
            "seconds_per_question": round(seconds / len(qids), 2),
        }
    table = Table(title=f"unfitted hybrid, {len(qids)} held-out questions, {args.artifact}")
    for column in ("system", "Hits@1", "s/question"):
        table.add_column(column)
    for name, row in rows.items():
        per = row.get("seconds_per_question")
        table.add_row(name, f"{row['hits@1']:.3f}", "" if per is None else f"{per:.2f}")
    console.print(table)
    report = {
        "artifact": str(args.artifact),
        "questions": len(qids),
        "train_seconds": train_seconds,
        "weights": dict(model.config.hybrid.weights),
        "results": rows,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python benchmarks/unfitted_generation_length.py --artifact "
        f"{args.artifact} --tokens {' '.join(map(str, args.tokens))}",
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    console.print(f"wrote {args.output}")


def _share(qids: list[str], top: list[str | None], qrels: dict) -> float:
    return sum(d in qrels[q] for q, d in zip(qids, top, strict=True)) / len(qids)


if __name__ == "__main__":
    main()
