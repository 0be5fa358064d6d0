"""The SQuAD benchmark: BEIR data from the SQuAD v1.1 dev set, training, and evaluation.

Two slices, both deterministic and recorded in the report:

- ``small``: whole articles picked by a seeded shuffle until 250 to 300 paragraphs are reached
  (sized so that training and evaluation fit in 2 hours on a 2-core CPU);
- ``full``: all 48 articles (2,067 paragraphs), for GPU runs.

Each paragraph is a passage (title: the article's title); each paragraph's questions are split
into train and test by a seeded shuffle (half, rounded up, go to test). Train questions are the
supervised data; test questions are evaluated, and never seen in training.

Usage::

    python benchmarks/squad.py data --slice small --out runs/squad-small/data
    python benchmarks/squad.py run --slice small            # data + train + evaluate
    python benchmarks/squad.py run --slice small --skip-train --artifact DIR

``run`` writes ``benchmarks/results/squad-<slice>.json`` with BM25, Self-Retrieval and
BM25 + SelfReranker measured on the same test questions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_bundled_corpus import DEFAULT_SOURCE, build, load_squad, write_beir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEED = 2016
SMALL_RANGE = (250, 300)


def pick_articles(squad: dict[str, Any], slice_name: str, seed: int = SEED) -> list[str]:
    """Article titles of a slice: all of them, or a seeded set with 250-300 paragraphs."""
    sizes = {article["title"]: len(article["paragraphs"]) for article in squad["data"]}
    if slice_name == "full":
        return list(sizes)
    if slice_name != "small":
        raise SystemExit(f"error: unknown slice {slice_name!r}; use 'small' or 'full'")
    titles = sorted(sizes)
    random.Random(seed).shuffle(titles)
    low, high = SMALL_RANGE
    chosen: list[str] = []
    total = 0
    for title in titles:
        if total + sizes[title] <= high:
            chosen.append(title)
            total += sizes[title]
        if total >= low:
            return chosen
    raise SystemExit(f"error: could not pick articles with {low}-{high} paragraphs")


def build_beir(
    squad: dict[str, Any], titles: list[str], seed: int = SEED, split_by: str = "question"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[tuple[str, str]]]]:
    """Documents, queries (with answers) and train/test qrels for every paragraph of ``titles``."""
    return build(squad, titles, None, seed, split_by)


def make_data(
    slice_name: str, out: Path, source: Path = DEFAULT_SOURCE, split_by: str = "question"
) -> dict[str, Any]:
    """Write a slice as a BEIR folder; returns its description."""
    squad = load_squad(source)
    titles = pick_articles(squad, slice_name)
    documents, queries, qrels = build_beir(squad, titles, split_by=split_by)
    info = {
        "split_by": split_by,
        "source": "SQuAD v1.1 dev set (Rajpurkar et al. 2016, CC BY-SA 4.0)",
        "slice": slice_name,
        "seed": SEED,
        "articles": titles,
        "paragraphs": len(documents),
        "questions": len(queries),
        "train_questions": len(qrels["train"]),
        "test_questions": len(qrels["test"]),
    }
    write_beir(out, documents, queries, qrels)
    (out / "slice.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def write_qrels(path: Path, qrels: dict[str, dict[str, int]]) -> None:
    """A BEIR qrels file (the held-out fold of the training questions)."""
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{r}" for q, docs in qrels.items() for d, r in docs.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def train_artifact(data: Path, out: Path, args: argparse.Namespace) -> float:
    """Train SmolLM2 (or ``--base-model``) on the slice's corpus and train questions."""
    from selfretrieval_trainer.data import MixConfig, answers_from_metadata, split_validation
    from selfretrieval_trainer.train import TrainingConfig, train

    from selfretrieval_integrations.corpus import (
        load_beir_qrels,
        load_beir_queries,
        load_beir_query_metadata,
        load_corpus,
    )

    config = TrainingConfig(
        epochs=args.epochs,
        full_finetune=args.full,
        learning_rate=args.learning_rate,
        lora_rank=args.lora_rank,
        lora_alpha=2 * args.lora_rank,
        lora_dropout=args.lora_dropout,
        save_steps=25,
        validation_fraction=args.validation_fraction,
        fit_fusion=not args.no_fit_fusion,
        fusion_generation_tokens=tuple(
            args.generation_tokens or TrainingConfig.fusion_generation_tokens
        ),
        mix=MixConfig(
            questions=not args.no_question_training,
            synthetic_questions=args.synthetic_questions,
            supervised_repeats=args.supervised_repeats,
            answer_repeats=args.answer_repeats,
            assessment=not args.no_assessment_training,
            indexing=not args.no_indexing,
        ),
    )
    # The trainer holds these questions out itself (same function, same seed) and fits the
    # fusion weights on them; the file lets quality_study.py run the same questions.
    qrels = load_beir_qrels(data, "train")
    _, held_out = split_validation(qrels, args.validation_fraction, 0)
    write_qrels(data / "qrels" / "validation.tsv", held_out)
    started = time.perf_counter()
    train(
        args.base_model,
        load_corpus(data),
        out,
        queries=None if args.indexing_only else load_beir_queries(data),
        qrels=None if args.indexing_only else qrels,
        answers=None
        if args.indexing_only
        else answers_from_metadata(load_beir_query_metadata(data)),
        config=config,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data_cmd = commands.add_parser("data", help="write a slice as a BEIR folder")
    run_cmd = commands.add_parser("run", help="data + train + evaluate, write the JSON report")
    for cmd in (data_cmd, run_cmd):
        cmd.add_argument("--slice", default="small", choices=["small", "full"])
        cmd.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="SQuAD dev zip")
        cmd.add_argument(
            "--split-by",
            default="question",
            choices=["question", "paragraph"],
            help="question: half of each paragraph's questions are test; paragraph: test "
            "paragraphs have no training question at all",
        )
    data_cmd.add_argument("--out", type=Path, required=True)
    run_cmd.add_argument("--workdir", type=Path, default=None, help="default: runs/squad-<slice>")
    run_cmd.add_argument("--base-model", default="smollm2-135m")
    run_cmd.add_argument("--artifact", type=Path, default=None, help="default: <workdir>/model")
    run_cmd.add_argument("--skip-train", action="store_true", help="evaluate --artifact as is")
    run_cmd.add_argument(
        "--epochs",
        type=float,
        default=2.0,
        help="default 2: the second epoch doubled Self-Retrieval Hits@1 on the small slice "
        "(RESULTS.md), and the run still fits in 2 hours on a 2-core CPU",
    )
    weights = run_cmd.add_mutually_exclusive_group()
    weights.add_argument(
        "--full",
        dest="full",
        action="store_true",
        default=True,
        help="full fine-tuning (the default: it beat LoRA on the small slice, see RESULTS.md)",
    )
    weights.add_argument("--lora", dest="full", action="store_false", help="a LoRA adapter")
    run_cmd.add_argument(
        "--learning-rate", type=float, default=None, help="default: 1e-4 (full), 3e-4 (LoRA)"
    )
    run_cmd.add_argument("--lora-rank", type=int, default=16)
    run_cmd.add_argument("--supervised-repeats", type=int, default=2)
    run_cmd.add_argument("--answer-repeats", type=int, default=1)
    run_cmd.add_argument("--lora-dropout", type=float, default=0.0)
    run_cmd.add_argument("--indexing-only", action="store_true", help="no supervised questions")
    run_cmd.add_argument("--no-indexing", action="store_true", help="no indexing examples")
    run_cmd.add_argument("--no-assessment-training", action="store_true")
    run_cmd.add_argument(
        "--no-question-training", action="store_true", help="no query-likelihood examples"
    )
    run_cmd.add_argument(
        "--synthetic-questions", type=int, default=0, help="rule-made questions per passage"
    )
    run_cmd.add_argument(
        "--no-fit-fusion",
        action="store_true",
        help="keep the default fusion weights (quality_study.py fits its own)",
    )
    run_cmd.add_argument(
        "--generation-tokens",
        type=int,
        nargs="+",
        default=None,
        help="generation-score lengths the fusion fit chooses from (default: the trainer's, "
        "8 16; 8 16 32 offers 32 too)",
    )
    run_cmd.add_argument(
        "--questions", type=int, default=200, help="a seeded sample of test questions (0: all)"
    )
    run_cmd.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="training questions held out of training (qrels/validation.tsv), on which fusion "
        "weights are fitted",
    )
    run_cmd.add_argument("--skip-eval", action="store_true", help="train only")
    run_cmd.add_argument("--rerank-depth", type=int, default=20)
    run_cmd.add_argument(
        "--baseline",
        nargs="+",
        default=["bm25", "dense"],
        choices=["bm25", "dense"],
        help="retrievers evaluated beside Self-Retrieval, each also with the SelfReranker over "
        "its top --rerank-depth (default: both)",
    )
    run_cmd.add_argument(
        "--cache-megabytes",
        type=int,
        default=None,
        help="memory for query likelihood's passage caches while evaluating (default: the "
        "artifact's, 1024 MB; the small slice's 304 passages need about 3.5 GB)",
    )
    run_cmd.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.command == "data":
        info = make_data(args.slice, args.out, args.source, args.split_by)
        print(json.dumps(info | {"articles": len(info["articles"])}, indent=2))
        return 0

    workdir = args.workdir or ROOT / "runs" / f"squad-{args.slice}"
    data = workdir / "data"
    info = make_data(args.slice, data, args.source, args.split_by)
    artifact = args.artifact or workdir / "model"
    if not args.skip_train:
        train_seconds = train_artifact(data, artifact, args)
        print(f"trained in {train_seconds:.0f} s: {artifact}")
    if args.skip_eval:
        return 0
    from selfretrieval_integrations.evaluation import EvaluationConfig, evaluate, write_report

    started = time.perf_counter()
    report = evaluate(
        artifact,
        data,
        EvaluationConfig(
            split="test",
            baseline=args.baseline,
            rerank_depth=args.rerank_depth,
            max_questions=args.questions or None,
            keep_details=True,
            cache_megabytes=args.cache_megabytes,
        ),
    )
    trained_by = "this run: loading, training, saving and the fusion fit"
    if args.skip_train:  # the training run's own wall time, from the artifact's manifest
        train_seconds = (report.get("training") or {}).get("runtime_seconds")
        trained_by = (
            "the artifact's manifest: the trainer alone, without loading, saving and the "
            "fusion fit (the training run's 'trained in' line has the whole)"
        )
    report["dataset"] = f"SQuAD v1.1 dev, {args.slice} slice ({info['paragraphs']} paragraphs)"
    report["config"] |= {
        "slice": info,
        "train_seconds": train_seconds,
        "train_seconds_from": trained_by,
        "evaluate_seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", "benchmarks/squad.py", *(argv or sys.argv[1:])]),
    }
    output = args.output or RESULTS / f"squad-{args.slice}.json"
    write_report(report, output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
