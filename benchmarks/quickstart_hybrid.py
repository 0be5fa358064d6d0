"""Hits@1 of a quickstart artifact against BM25 on the bundled corpus's 102 held-out questions,
optionally after fitting its fusion weights again (``--refit``) on the fold of training
questions that ``train`` held out (the same seeded split), as the library now fits them.

    python benchmarks/quickstart_hybrid.py --artifact runs/quickstart --refit
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from selfretrieval_integrations import SelfRetrievalModel
from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.evaluation.quickstart import _hits_at_1
from selfretrieval_integrations.index import BM25Index
from selfretrieval_integrations.retrieval import RetrievalMode

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--refit", action="store_true", help="fit the fusion weights again")
    parser.add_argument("--modes", nargs="+", default=["hybrid"], choices=["hybrid", "self"])
    parser.add_argument("--output", type=Path, default=RESULTS / "quickstart-hybrid.json")
    args = parser.parse_args()
    from selfretrieval_trainer.config import TrainingConfig
    from selfretrieval_trainer.data import split_validation
    from selfretrieval_trainer.train import fit_fusion_weights

    folder = quickstart_dir()
    corpus = load_corpus(folder)
    queries = load_beir_queries(folder)
    model = SelfRetrievalModel.from_pretrained(args.artifact)
    before = model.config.hybrid
    if args.refit:
        config = TrainingConfig()
        _, held_out = split_validation(
            load_beir_qrels(folder, "train"), config.validation_fraction, config.seed
        )
        fit_fusion_weights(model, queries, held_out)
    bm25 = BM25Index(list(corpus))
    test = load_beir_qrels(folder, "test")
    measured = {}
    for mode in map(RetrievalMode, args.modes):
        model.config = replace(model.config, mode=mode)
        started = time.perf_counter()
        measured.update(_hits_at_1(model, bm25, corpus, queries, test))
        measured[f"{mode.value}_seconds"] = round(time.perf_counter() - started, 1)
    console = Console()
    console.print(measured)
    report = {
        "artifact": str(args.artifact),
        "questions": len(test),
        "weights_before": before.weights,
        "weights": dict(model.config.hybrid.weights),
        "rerank_weights": dict(model.config.hybrid.rerank_weights),
        "fitted": model.config.hybrid.fitted,
        "hits@1": measured,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python benchmarks/quickstart_hybrid.py --artifact "
        + f"{args.artifact}{' --refit' if args.refit else ''} --modes {' '.join(args.modes)}",
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
