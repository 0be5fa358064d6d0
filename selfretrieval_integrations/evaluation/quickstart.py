"""``selfretrieval quickstart``: train on the bundled corpus, then show what the model retrieves.

The bundled corpus is 32 paragraphs of four SQuAD v1.1 articles (CC BY-SA 4.0, see
``data/quickstart/ATTRIBUTION.md``); the base model is the offline SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.index import BM25Index
from selfretrieval_integrations.retrieval import RetrievalMode
from selfretrieval_integrations.training import load_trainer


def run_quickstart(
    out: Path,
    *,
    base_model: str = "smollm2-135m",
    epochs: float = 2.0,
    questions: int = 3,
    k: int = 3,
    seed: int = 0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train, then measure Hits@1 on every held-out question against BM25 and show a few;
    returns what it measured and showed."""
    trainer = load_trainer()
    console = console or Console()
    folder = quickstart_dir()
    corpus = load_corpus(folder)
    queries = load_beir_queries(folder)
    meta = load_beir_query_metadata(folder)
    answers = {q: m["answers"] for q, m in meta.items() if m.get("answers")}
    train_qrels = load_beir_qrels(folder, "train")
    test_qrels = load_beir_qrels(folder, "test")
    console.print(
        f"[bold]Self-Retrieval quickstart[/]: {len(corpus)} passages from SQuAD v1.1 "
        f"(CC BY-SA 4.0), {len(train_qrels)} training questions, base model {base_model}"
    )
    started = time.perf_counter()
    model = trainer.train(
        base_model,
        corpus,
        out,
        queries={q: queries[q] for q in train_qrels},
        qrels=train_qrels,
        answers=answers,
        # Supervised data once per epoch (the paper repeats it twice) keeps the CPU run short;
        # the rest is the library's default recipe (full fine-tuning, a held-out fold on which
        # the hybrid's weights are fitted).
        config=trainer.TrainingConfig(
            epochs=epochs, seed=seed, mix=trainer.MixConfig(supervised_repeats=1)
        ),
    )
    summary = model.manifest.get("training") or {}
    console.print(
        f"trained in {time.perf_counter() - started:.0f} s: {summary.get('examples')} examples, "
        f"{summary.get('tokens_per_second')} tokens/s, final loss {summary.get('final_loss')}; "
        f"artifact saved to {out}"
    )
    bm25 = BM25Index(list(corpus))
    doc_of = {i: p.doc_id for i, p in enumerate(corpus)}
    measured = _hits_at_1(model, bm25, corpus, queries, test_qrels)
    table = Table(title=f"Hits@1 on all {len(test_qrels)} held-out questions")
    for column in ("system", "Hits@1"):
        table.add_column(column)
    for name, value in measured.items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)
    sample = random.Random(seed).sample(sorted(test_qrels), min(questions, len(test_qrels)))
    shown = []
    for qid in sample:
        question = queries[qid]
        relevant = set(test_qrels[qid])
        results = model.retrieve(question, k=k)
        table = Table(title=f"Q: {question}", show_lines=True)
        for column in ("rank", "passage", "relevant", "BM25 rank", "score"):
            table.add_column(column, overflow="fold")
        for r in results:
            index = model.store.index_of(r.passage_id)
            text = r.text if len(r.text) <= 160 else r.text[:157] + "..."
            table.add_row(
                str(r.rank),
                f"[b]{r.title}[/b]: {text}",
                "yes" if r.doc_id in relevant else "",
                str(bm25.rank_of(question, index)),
                f"{r.score:.3f}",
            )
        console.print(table)
        answer = model.answer(question, [(results[0].title, results[0].text)]) if results else ""
        gold = ", ".join(answers.get(qid, [])[:2])
        console.print(f"answer: [bold]{answer}[/]   (SQuAD: {gold})\n")
        relevant_index = [i for i, d in doc_of.items() if d in relevant]
        shown.append(
            {
                "question": question,
                "retrieved": [r.passage_id for r in results],
                "bm25_top": int(bm25.search([question], 1)[0][0][0]),
                "relevant": sorted(relevant),
                "relevant_bm25_rank": min(bm25.rank_of(question, i) for i in relevant_index),
                "answer": answer,
            }
        )
    return {"artifact": str(out), "training": summary, "hits@1": measured, "questions": shown}


def _hits_at_1(
    model: Any, bm25: BM25Index, corpus: Any, queries: dict[str, str], qrels: dict[str, Any]
) -> dict[str, float]:
    """Hits@1 of the trained model in both modes (its own, the default, first) and of BM25 on
    every question."""
    qids = sorted(qrels)
    texts = [queries[q] for q in qids]
    measured = {}
    own = model.config.mode
    for mode in sorted(RetrievalMode, key=lambda m: m is not own):
        moded = copy.copy(model)  # same weights, trie and lock; only the mode differs
        moded.config = replace(model.config, mode=mode)
        top = [r[0].doc_id if r else None for r in moded.retrieve_batch(texts, k=1)]
        hits = sum(d in qrels[q] for q, d in zip(qids, top, strict=True))
        measured[f"Self-Retrieval ({mode.value})"] = hits / len(qids)
    by_bm25 = bm25.search(texts, 1)[0][:, 0]
    passages = list(corpus)
    hits = sum(passages[int(i)].doc_id in qrels[q] for q, i in zip(qids, by_bm25, strict=True))
    return {**measured, "BM25": hits / len(qids)}
