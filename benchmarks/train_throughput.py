"""Training throughput with and without target-only logits, on the same examples.

Trains the base model for one pass over a fixed, seeded sample of the bundled corpus's training
examples, once per setting (LoRA or full fine-tuning, target-only logits on or off), from the
same starting weights, and reports tokens/s and the loss of each run::

    python benchmarks/train_throughput.py --examples 96

Writes ``benchmarks/results/train-throughput.json``. Equal losses show that the faster path
trains the same thing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    import torch
    from selfretrieval_trainer.data import MixConfig, TrainingSet, build_training_set
    from selfretrieval_trainer.train import TrainingConfig, fit

    from selfretrieval_integrations import PromptTemplate
    from selfretrieval_integrations.base_models import load_base_model
    from selfretrieval_integrations.corpus import (
        load_beir_qrels,
        load_beir_queries,
        load_corpus,
        quickstart_dir,
    )
    from selfretrieval_integrations.retrieval import Renderer, build_trie

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--output", type=Path, default=RESULTS / "train-throughput.json")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    data = quickstart_dir()
    corpus = load_corpus(data)
    base, tokenizer = load_base_model(args.base_model, device="cpu", dtype="float32")
    initial = {k: v.clone() for k, v in base.state_dict().items()}
    template = PromptTemplate()
    trie = build_trie(tokenizer, template, corpus, show_progress=False)
    full_set = build_training_set(
        Renderer(tokenizer, template),
        corpus,
        trie,
        queries=load_beir_queries(data),
        qrels=load_beir_qrels(data, "train"),
        mix=MixConfig(answer_repeats=1),
    )
    examples = full_set.examples[: args.examples]
    training_set = TrainingSet(examples=examples, stats={"kinds": {}})
    tokens = sum(len(e.input_ids) for e in examples)
    targets = sum(sum(1 for t in e.labels if t != -100) for e in examples)
    print(f"{len(examples)} examples, {tokens} tokens, {targets} target tokens", flush=True)

    rows: dict[str, Any] = {}
    for mode in args.modes:
        for only in (False, True):
            base.load_state_dict(initial)
            base.requires_grad_(True)  # peft froze the base weights of an earlier LoRA run
            config = TrainingConfig(
                epochs=1,
                full_finetune=mode == "full",
                learning_rate=1e-4 if mode == "full" else None,
                lora_dropout=0.0,
                save_steps=10_000,
                target_logits_only=only,
            )
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                run = fit(base, tokenizer, training_set, config, Path(folder), show_progress=False)
                seconds = time.perf_counter() - started
            if mode == "lora":
                base = run.model.unload()  # drop the adapter so the next run starts bare
            name = f"{mode}, {'target-only logits' if only else 'all logits'}"
            rows[name] = {
                "tokens_per_second": run.summary["tokens_per_second"],
                "train_loss": run.summary["train_loss"],
                "seconds": round(seconds, 1),
                "steps": run.summary["steps"],
            }
            print(name, rows[name], flush=True)
    for mode in args.modes:
        before = rows[f"{mode}, all logits"]["tokens_per_second"]
        after = rows[f"{mode}, target-only logits"]["tokens_per_second"]
        rows[f"{mode}, speedup"] = round(after / before, 3)
    report = {
        "benchmark": "training throughput, target-only logits against all logits",
        "base_model": args.base_model,
        "examples": len(examples),
        "tokens": tokens,
        "target_tokens": targets,
        "threads": torch.get_num_threads(),
        "results": rows,
        "command": "python benchmarks/train_throughput.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print("| setting | tokens/s | train loss |\n|---|---|---|")
    for name, row in rows.items():
        if isinstance(row, dict):
            print(f"| {name} | {row['tokens_per_second']} | {row['train_loss']:.4f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
