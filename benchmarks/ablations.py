"""Ablations through the evaluation harness: what each part of Self-Retrieval is worth.

Two kinds, each writing a JSON report to ``benchmarks/results/`` and printing a table:

- ``beams``: decoding widths on a trained artifact (generation scores only, so every setting
  costs one decoding pass per question)::

      python benchmarks/ablations.py beams --artifact runs/squad-small/model \\
          --data runs/squad-small/data --questions 200

- ``training``: variants that need their own training run (indexing-only, no titles, no
  self-assessment data, full fine-tuning, LoRA rank and target modules, and full fine-tuning
  with more epochs, BM25 negatives or deeper targets), each trained the same way on a corpus
  small enough to train several times on a CPU (default: the bundled corpus)::

      python benchmarks/ablations.py training --epochs 2 --questions 102

- ``table``: one Markdown table from several ``training`` reports (runs split over several
  commands, so that a stopped session keeps what finished)::

      python benchmarks/ablations.py table benchmarks/results/ablation-training*.json

Fusion variants (paper, logprob, generation = no self-assessment) and rerank variants (rrf,
assessment) need no separate run: every ``selfretrieval evaluate`` report already holds them.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from selfretrieval_integrations.evaluation import (
    EvaluationConfig,
    evaluate,
    format_table,
    report_console,
)
from selfretrieval_integrations.retrieval import Fusion

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

FULL: dict[str, Any] = {"full_finetune": True, "learning_rate": 1e-4}

#: name -> (TrainingConfig overrides, MixConfig overrides, PromptTemplate overrides, with queries)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], bool]] = {
    "default": ({}, {}, {}, True),
    "indexing-only": ({}, {}, {}, False),
    "no-titles": ({}, {}, {"use_titles": False}, True),
    "no-assessment-data": ({}, {"assessment": False, "answer_repeats": 0}, {}, True),
    "full-finetune": (FULL, {}, {}, True),
    "lora-r64": ({"lora_rank": 64, "lora_alpha": 128}, {}, {}, True),
    "lora-attention-only": (
        {"lora_target_modules": ("q_proj", "k_proj", "v_proj", "o_proj")},
        {},
        {},
        True,
    ),
    # Variants of the best setting (full fine-tuning): epochs, negatives, target depth, training
    # mix and learning rate.
    "full-finetune-2-epochs": ({**FULL, "epochs": 2.0}, {}, {}, True),
    "full-finetune-bm25-negatives": (FULL, {"negatives": "bm25"}, {}, True),
    "full-finetune-whole-passage-targets": (FULL, {"supervised_full_target": True}, {}, True),
    "full-finetune-deeper-targets": (FULL, {"extra_tokens": 32}, {}, True),
    "full-finetune-no-assessment-data": (
        FULL,
        {"assessment": False, "answer_repeats": 0},
        {},
        True,
    ),
    "full-finetune-lr-2e-5": ({**FULL, "learning_rate": 2e-5}, {}, {}, True),  # the library default
    "full-finetune-lr-3e-4": ({**FULL, "learning_rate": 3e-4}, {}, {}, True),
    # Query likelihood, the default self-assessment since: the default recipe (2 epochs, full
    # fine-tuning) with and without the refusal's data, and with synthetic questions.
    "ql-with-refusal-data": ({**FULL, "epochs": 2.0}, {}, {}, True),
    "ql": ({**FULL, "epochs": 2.0}, {"assessment": False}, {}, True),
    "ql-synthetic-2": (
        {**FULL, "epochs": 2.0},
        {"assessment": False, "synthetic_questions": 2},
        {},
        True,
    ),
}


def _print(report: dict[str, Any]) -> None:
    report_console().print(format_table(report))


def run_beams(args: argparse.Namespace) -> dict[str, Any]:
    from selfretrieval_integrations import SelfRetrievalModel

    model = SelfRetrievalModel.from_pretrained(args.artifact)
    base = model.config
    rows: dict[str, Any] = {}
    for title_beams, passage_beams in args.settings:
        model.config = replace(
            base,
            fusion=Fusion.GENERATION,
            decoding=replace(base.decoding, title_beams=title_beams, passage_beams=passage_beams),
        )
        model.decoder.config = model.config.decoding
        report = evaluate(
            model,
            args.data,
            EvaluationConfig(max_questions=args.questions, variants=False),
        )
        name = f"titles {title_beams} / passages {passage_beams}"
        rows[name] = report["systems"]["self-retrieval"]
        print(name, rows[name], flush=True)
    return {
        "ablation": "decoding beam widths (generation scores, no self-assessment)",
        "artifact": str(args.artifact),
        "data": str(args.data),
        "questions": report["questions"],
        "systems": rows,
    }


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    from selfretrieval_trainer.data import MixConfig, answers_from_metadata
    from selfretrieval_trainer.train import TrainingConfig, train

    from selfretrieval_integrations import PromptTemplate
    from selfretrieval_integrations.corpus import (
        load_beir_qrels,
        load_beir_queries,
        load_beir_query_metadata,
        load_corpus,
    )

    data = args.data
    corpus = load_corpus(data)
    queries = load_beir_queries(data)
    qrels = load_beir_qrels(data, "train")
    answers = answers_from_metadata(load_beir_query_metadata(data))
    rows: dict[str, Any] = {}
    for name in args.variants:
        overrides, mix_overrides, template_overrides, with_queries = VARIANTS[name]
        mix = MixConfig(**{"answer_repeats": 1, **mix_overrides})
        config = TrainingConfig(
            **{"epochs": args.epochs, "lora_dropout": 0.0, "save_steps": 1000, **overrides},
            mix=mix,
        )
        out = args.workdir / name
        started = time.perf_counter()
        model = train(
            args.base_model,
            corpus,
            out,
            queries=queries if with_queries else None,
            qrels=qrels if with_queries else None,
            answers=answers if with_queries else None,
            config=config,
            template=PromptTemplate(**template_overrides),
        )
        train_s = time.perf_counter() - started
        report = evaluate(
            model,
            data,
            EvaluationConfig(baseline="bm25", max_questions=args.questions),
        )
        rows[name] = {
            "train_seconds": round(train_s, 1),
            "training": report["training"],
            "systems": report["systems"],
        }
        _print(report)
    return {
        "ablation": "training variants, each trained and evaluated the same way",
        "data": str(data),
        "base_model": args.base_model,
        "epochs": args.epochs,
        "questions": args.questions,
        "variants": rows,
    }


def _fusion_scores(systems: dict[str, Any], fusion: str) -> dict[str, Any]:
    """A fusion's metrics, whichever fusion was the default when the report was written."""
    return systems.get(f"self-retrieval/{fusion}") or systems["self-retrieval"]


def training_table(paths: list[Path]) -> str:
    """Markdown rows for every variant in the given reports, in the order given."""
    lines = [
        "| variant | train s | tokens/s | Hits@1 logprob / paper / generation "
        "| Hits@5 logprob | MRR@5 logprob | Hits@10 logprob | report |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        for name, row in report.get("variants", {}).items():
            systems = row["systems"]
            logprob = _fusion_scores(systems, "logprob")
            paper = _fusion_scores(systems, "paper")
            generation = systems["self-retrieval/generation"]
            lines.append(
                f"| {name} | {row['train_seconds']:,.0f} "
                f"| {row['training']['tokens_per_second']:.0f} "
                f"| {logprob['hits@1']:.2f} / {paper['hits@1']:.2f} / {generation['hits@1']:.2f} "
                f"| {logprob['hits@5']:.2f} | {logprob['mrr@5']:.3f} | {logprob['hits@10']:.2f} "
                f"| `{path.name}` |"
            )
    return "\n".join(lines)


def _setting(text: str) -> tuple[int, int]:
    titles, passages = text.split("/")
    return int(titles), int(passages)


def main(argv: list[str] | None = None) -> int:
    from selfretrieval_integrations.corpus import quickstart_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    beams = commands.add_parser("beams", help="decoding widths on one artifact")
    beams.add_argument("--artifact", type=Path, required=True)
    beams.add_argument("--data", type=Path, required=True)
    beams.add_argument("--questions", type=int, default=200)
    beams.add_argument(
        "--settings",
        type=_setting,
        nargs="+",
        default=[(1, 1), (1, 5), (5, 5), (5, 10), (10, 20)],
        help="title_beams/passage_beams pairs",
    )
    beams.add_argument("--output", type=Path, default=RESULTS / "ablation-beams.json")
    training = commands.add_parser("training", help="variants that need their own training")
    training.add_argument("--data", type=Path, default=quickstart_dir())
    training.add_argument("--base-model", default="smollm2-135m")
    training.add_argument("--epochs", type=float, default=2.0)
    training.add_argument("--questions", type=int, default=None)
    training.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    training.add_argument("--workdir", type=Path, default=ROOT / "runs" / "ablations")
    training.add_argument("--output", type=Path, default=RESULTS / "ablation-training.json")
    table = commands.add_parser("table", help="one Markdown table from training reports")
    table.add_argument("reports", type=Path, nargs="+")
    args = parser.parse_args(argv)

    if args.command == "table":
        print(training_table(args.reports))
        return 0
    started = time.perf_counter()
    report = run_beams(args) if args.command == "beams" else run_training(args)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["command"] = "python benchmarks/ablations.py " + " ".join(
        argv or __import__("sys").argv[1:]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
