"""The ``selfretrieval`` command line (typer): build, search and inspect artifacts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfretrieval_integrations.corpus import (
    ChunkingConfig,
    Corpus,
    Document,
    Passage,
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.errors import SelfRetrievalError
from selfretrieval_integrations.training import Trainer, load_trainer

app = typer.Typer(
    help="Self-Retrieval: one small LLM that indexes, retrieves and reranks a corpus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

BUNDLED_CORPUS = quickstart_dir()

#: The option the commands that read a corpus share.
MaxWords = Annotated[int, typer.Option(help="Passage length limit in words.")]
#: The option the commands that fit the fusion weights share.
GenerationTokens = Annotated[
    Optional[list[int]],  # noqa: UP045
    typer.Option(
        "--generation-tokens",
        help="A generation-score length (1-32 trie-key tokens) the fusion fit may choose; "
        "repeat for several (default: 8 and 16; 32 ranked a little better on SQuAD, a third "
        "slower per query). Fewer tokens rank faster.",
    ),
]


def _fail(error: Exception | str) -> NoReturn:
    # escape: messages hold text like "[train]" that rich would read as markup
    err_console.print(f"[bold red]error:[/] {escape(str(error))}")
    raise typer.Exit(code=2) from (error if isinstance(error, Exception) else None)


def _load(corpus: Path, max_words: int) -> Corpus:
    """The corpus as every command reads it: documents chunked at ``max_words``."""
    return load_corpus(corpus, chunking=ChunkingConfig(max_words=max_words))


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Artifact folder to write.")],
    corpus: Annotated[
        Path,
        typer.Option(help="BEIR folder, JSONL of documents, or folder of .txt/.md files."),
    ] = BUNDLED_CORPUS,
    base_model: Annotated[
        str,
        typer.Option(help="tiny, smollm2-135m, gemma3-270m (opt-in), a hub id or a local path."),
    ] = "smollm2-135m",
    max_words: MaxWords = 200,
) -> None:
    """Build an untrained (zero-shot) artifact over a corpus: trie, store and base weights."""
    from selfretrieval_integrations.retrieval import SelfRetrievalModel

    try:
        docs = _load(corpus, max_words)
        model = SelfRetrievalModel.from_base(base_model, docs, show_progress=True)
        model.save_pretrained(out)
    except SelfRetrievalError as error:
        _fail(error)
    console.print(f"wrote {out} ({len(model.store)} passages, base model {base_model})")


@app.command()
def search(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder.")],
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Number of passages.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    mode: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="self or hybrid (default: the artifact's own mode)."),
    ] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ...")] = None,  # noqa: UP045
) -> None:
    """Retrieve the k best passages for a query."""
    from selfretrieval_integrations.retrieval import RetrievalMode, SelfRetrievalModel

    try:
        model = SelfRetrievalModel.from_pretrained(artifact, device=device)
        if mode is not None:
            model.config = replace(model.config, mode=RetrievalMode(mode))
        results = model.retrieve(query, k=k)
    except (SelfRetrievalError, ValueError) as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{query}", show_lines=True)
    for column in ("rank", "score", "title", "passage", "id"):
        table.add_column(column, overflow="fold")
    for r in results:
        text = r.text if len(r.text) <= 240 else r.text[:237] + "..."
        table.add_row(str(r.rank), f"{r.score:.4f}", r.title, text, r.passage_id)
    console.print(table)


@app.command()
def evaluate(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder.")],
    data: Annotated[Path, typer.Option("--data", help="BEIR folder with queries and qrels.")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    baseline: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            help="bm25 and/or dense (--baseline bm25 dense): each retriever, and the "
            "SelfReranker over its candidates, on the same questions."
        ),
    ] = None,
    more_baselines: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(hidden=True, help="The rest of --baseline bm25 dense."),
    ] = None,
    json_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json", help="Write the JSON report here (and a PNG plot beside it)."),
    ] = None,
    questions: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Evaluate a seeded sample of this many questions."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the question sample.")] = 0,
    rerank_depth: Annotated[int, typer.Option(help="Candidates of each baseline reranked.")] = 20,
    rerank_method: Annotated[str, typer.Option(help="convex, rrf or assessment.")] = "convex",
    hybrid: Annotated[bool, typer.Option(help="Also evaluate the hybrid mode.")] = True,
    dense_model: Annotated[
        str, typer.Option(help="Dense baseline: all-minilm-l6-v2 (offline), a hub id or path.")
    ] = "all-minilm-l6-v2",
    variants: Annotated[
        bool, typer.Option(help="Also score fusion and rerank variants (ablations).")
    ] = True,
    stat_test: Annotated[str, typer.Option(help="Paired test: student or fisher.")] = "student",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ...")] = None,  # noqa: UP045
    cache_megabytes: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            help="Memory for query likelihood's passage caches (default: the artifact's, "
            "1024); enough for the whole corpus reads each passage once."
        ),
    ] = None,
) -> None:
    """Hits@k, MRR and nDCG@10 (ranx), latency and paired significance tests on a BEIR split."""
    from selfretrieval_integrations.evaluation import (
        EvaluationConfig,
        format_table,
        report_console,
        write_report,
    )
    from selfretrieval_integrations.evaluation import evaluate as run_evaluation
    from selfretrieval_integrations.retrieval import RerankConfig, SelfRetrievalModel

    if more_baselines and not baseline:
        _fail(f"unexpected argument(s) {' '.join(more_baselines)}: name baselines with --baseline")
    try:
        config = EvaluationConfig(
            split=split,
            baseline=[*(baseline or []), *(more_baselines or [])],
            hybrid=hybrid,
            dense_model=dense_model,
            rerank_depth=rerank_depth,
            rerank=RerankConfig(method=rerank_method),
            max_questions=questions,
            seed=seed,
            variants=variants,
            stat_test=stat_test,
            cache_megabytes=cache_megabytes,
        )
        model = SelfRetrievalModel.from_pretrained(artifact, device=device)
        report = run_evaluation(model, data, config)
    except (SelfRetrievalError, ValueError) as error:
        _fail(error)
    report["config"]["artifact"] = str(artifact)
    if json_out is not None:
        write_report(report, json_out)
    else:
        report_console().print(format_table(report))
    for pair, tests in report["significance"].items():
        if pair.split(" vs ")[0] in ("self-retrieval", "hybrid", "bm25", "dense"):
            p = tests["hits@1"]["p_value"]
            console.print(f"{pair}: Hits@1 p = {p:.4f} ({config.stat_test} paired test)")


@app.command()
def info(artifact: Annotated[Path, typer.Argument(help="Artifact folder.")]) -> None:
    """Show what an artifact holds: base model, passages, trie, versions, training summary."""
    from selfretrieval_integrations.artifact import read_manifest

    try:
        manifest = read_manifest(artifact, verify=True)
    except SelfRetrievalError as error:
        _fail(error)
    summary = {k: v for k, v in manifest.items() if k != "files"}
    summary["files"] = len(manifest.get("files", {}))
    summary["size_bytes"] = sum(f["size"] for f in manifest.get("files", {}).values())
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False, sort_keys=True))


def _require_trainer() -> Trainer:
    try:
        return load_trainer()
    except ImportError as error:
        _fail(error)


def _read_qrels(path: Path, split: str) -> dict[str, dict[str, int]]:
    if path.is_file():
        if path.parent.name != "qrels":
            raise typer.BadParameter(
                f"{path}: give a BEIR folder or a file inside its qrels/ folder"
            )
        return load_beir_qrels(path.parent.parent, path.stem)
    return load_beir_qrels(path, split)


@app.command()
def train(
    corpus: Annotated[
        Path, typer.Option(help="BEIR folder, JSONL of documents, or folder of .txt/.md files.")
    ],
    out: Annotated[Path, typer.Option(help="Artifact folder to write (replaced atomically).")],
    base_model: Annotated[
        str, typer.Option(help="tiny, smollm2-135m, gemma3-270m (opt-in), a hub id or a path.")
    ] = "smollm2-135m",
    queries: Annotated[
        Optional[Path], typer.Option(help="queries.jsonl (or a BEIR folder).")  # noqa: UP045
    ] = None,
    qrels: Annotated[
        Optional[Path], typer.Option(help="BEIR folder or qrels/<split>.tsv.")  # noqa: UP045
    ] = None,
    split: Annotated[str, typer.Option(help="qrels split used for training.")] = "train",
    epochs: Annotated[
        float, typer.Option(help="Passes over the training data (2: the measured default).")
    ] = 2.0,
    full: Annotated[
        bool,
        typer.Option(
            "--full/--lora",
            help="Full fine-tuning (default: it beat LoRA for the 135M model, RESULTS.md) or a "
            "LoRA adapter.",
        ),
    ] = True,
    validation_fraction: Annotated[
        float,
        typer.Option(
            help="Training questions held out to fit the hybrid and reranker weights (0: none)."
        ),
    ] = 0.2,
    batch_size: Annotated[int, typer.Option(help="Examples per step and device.")] = 8,
    learning_rate: Annotated[
        Optional[float], typer.Option(help="Default 3e-4 (LoRA) / 1e-4 (full).")  # noqa: UP045
    ] = None,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    max_words: MaxWords = 200,
    seed: Annotated[int, typer.Option(help="Seed for data and training.")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda ...")] = None,  # noqa: UP045
    generation_tokens: GenerationTokens = None,
) -> None:
    """Train a base model on a corpus (and optional training queries) into an artifact."""
    trainer = _require_trainer()
    try:
        docs = _load(corpus, max_words)
        query_texts = answers = qrel_map = None
        if qrels is not None and queries is None and (corpus / "queries.jsonl").is_file():
            queries = corpus
        if queries is not None:
            query_texts = load_beir_queries(queries)
            meta = load_beir_query_metadata(queries)
            answers = {q: m["answers"] for q, m in meta.items() if m.get("answers")}
            if qrels is None:
                raise typer.BadParameter("--queries needs --qrels (which passages answer them)")
            qrel_map = _read_qrels(qrels, split)
        config = trainer.TrainingConfig(
            epochs=epochs,
            full_finetune=full,
            batch_size=batch_size,
            learning_rate=learning_rate,
            lora_rank=lora_rank,
            seed=seed,
            validation_fraction=validation_fraction,
            fusion_generation_tokens=tuple(
                generation_tokens or trainer.TrainingConfig.fusion_generation_tokens
            ),
        )
        model = trainer.train(
            base_model,
            docs,
            out,
            queries=query_texts,
            qrels=qrel_map,
            answers=answers,
            config=config,
            device=device,
        )
    except (SelfRetrievalError, ValueError) as error:
        _fail(error)
    summary = model.manifest.get("training") or {}
    console.print(
        f"wrote {out}: {summary.get('examples')} examples, "
        f"{summary.get('tokens_trained')} tokens at {summary.get('tokens_per_second')} tokens/s, "
        f"padding {summary.get('padding_fraction')}, final loss {summary.get('final_loss')}"
    )


@app.command()
def add(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder to update in place.")],
    corpus: Annotated[Path, typer.Option(help="New documents (BEIR folder, JSONL or folder).")],
    epochs: Annotated[float, typer.Option(help="Passes over new + replayed passages.")] = 3.0,
    replay_ratio: Annotated[float, typer.Option(help="Old passages replayed per new one.")] = 1.0,
    max_words: MaxWords = 200,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda ...")] = None,  # noqa: UP045
) -> None:
    """Add documents to an artifact: train on them plus a replay sample, rebuild the trie."""
    trainer = _require_trainer()
    try:
        docs = _load(corpus, max_words)
        documents = _passages_as_documents(docs)
        model = trainer.add_documents(
            artifact,
            documents,
            config=trainer.TrainingConfig(epochs=epochs),
            replay_ratio=replay_ratio,
            device=device,
        )
    except SelfRetrievalError as error:
        _fail(error)
    console.print(f"added {len(documents)} document(s); {len(model.store)} passages now")


def _passages_as_documents(corpus: Corpus) -> list[Document]:
    """Regroup a loaded corpus into documents (its passages, in order, per document)."""
    grouped: dict[str, list[Passage]] = {}
    for passage in corpus:
        grouped.setdefault(passage.doc_id, []).append(passage)
    return [
        Document(
            id=doc_id,
            title=parts[0].title,
            text="\n\n".join(p.text for p in parts),
            metadata=dict(parts[0].metadata),
        )
        for doc_id, parts in grouped.items()
    ]


@app.command()
def delete(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder to update.")],
    ids: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--ids", help="Document or passage ids: --ids a b c, or --ids a --ids b."),
    ] = None,
    ids_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--ids-file", help="A file of ids, one per line (blank lines skipped)."),
    ] = None,
    more_ids: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(hidden=True, help="The rest of --ids a b c."),
    ] = None,
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for another writer of the artifact.")
    ] = 300.0,
) -> None:
    """Delete documents (or passages) from an artifact at once, without training."""
    from selfretrieval_integrations.retrieval import delete_documents

    if more_ids and not ids:
        _fail(f"unexpected argument(s) {' '.join(more_ids)}: give the ids with --ids")
    wanted = [*(ids or []), *(more_ids or [])]
    if ids_file is not None:
        try:
            lines = ids_file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            _fail(f"cannot read --ids-file {ids_file}: {error}")
        wanted += [line.strip() for line in lines if line.strip()]
    if not wanted:
        _fail("give the ids to delete with --ids or --ids-file")
    try:
        removed = delete_documents(artifact, wanted, lock_timeout=lock_timeout)
    except SelfRetrievalError as error:
        _fail(error)
    console.print(f"removed {removed} passage(s) from {artifact}")


def _held_out_questions(artifact: Path, qrels: dict) -> dict:
    """The part of ``qrels`` that training held out of this artifact's training questions."""
    from selfretrieval_integrations import artifact as artifacts

    trainer = _require_trainer()
    current, _ = artifacts.resolve(artifact)
    manifest = artifacts.read_manifest(current, verify=False)
    config = (manifest.get("training") or {}).get("config") or {}
    fraction = config.get("validation_fraction")
    if not fraction:
        _fail(f"{artifact} records no held-out questions (validation_fraction) in its manifest")
    return trainer.split_validation(qrels, float(fraction), int(config.get("seed", 0)))[1]


@app.command("fit-fusion")
def fit_fusion(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder to update.")],
    data: Annotated[Path, typer.Option("--data", help="BEIR folder with queries and qrels.")],
    split: Annotated[
        str, typer.Option(help="qrels split of held-out questions (never trained on).")
    ] = "validation",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda ...")] = None,  # noqa: UP045
    dense: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--dense/--no-dense",
            help="Also fit a weight for the dense score (default: when the dense extra is "
            "installed).",
        ),
    ] = None,
    held_out: Annotated[
        bool,
        typer.Option(
            "--held-out",
            help="Fit on the questions of --split that training held out (its "
            "validation_fraction and seed, from the manifest), e.g. --split train for an artifact "
            "trained with questions.",
        ),
    ] = False,
    relevance_scale: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="minmax (relevance scaled per query, the most accurate) or probability "
            "(unscaled, so retrieval assesses only candidates that can reach the exact places: "
            "faster); default: the artifact's.",
        ),
    ] = None,
    assessment: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="query_likelihood or refusal: the self-assessment to fit the weights for and "
            "save (default: the artifact's; artifacts from before query likelihood use the "
            "refusal).",
        ),
    ] = None,
    generation_tokens: GenerationTokens = None,
) -> None:
    """Fit the hybrid's and the SelfReranker's fusion weights on held-out questions."""
    from selfretrieval_integrations.retrieval import (
        SelfRetrievalModel,
        fit_hybrid,
        save_retrieval_config,
    )
    from selfretrieval_integrations.retrieval.fitting import (
        GENERATION_TOKENS,
        checked_generation_tokens,
    )

    try:
        offered = checked_generation_tokens(generation_tokens or GENERATION_TOKENS)
    except ValueError as error:
        _fail(error)
    try:
        model = SelfRetrievalModel.from_pretrained(artifact, device=device)
        if assessment is not None:
            try:
                judged = replace(model.config.assessment, method=assessment)
            except ValueError as error:
                _fail(error)
            model.config = replace(model.config, assessment=judged)
        if relevance_scale is not None:
            try:
                scaled = replace(model.config.hybrid, relevance_scale=relevance_scale)
            except ValueError as error:
                _fail(error)
            model.config = replace(model.config, hybrid=scaled)
        qrels = load_beir_qrels(data, split)
        if held_out:
            qrels = _held_out_questions(artifact, qrels)
        hybrid = fit_hybrid(
            model, load_beir_queries(data), qrels, dense=dense, generation_tokens=offered
        )
        save_retrieval_config(artifact, replace(model.config, hybrid=hybrid))
    except SelfRetrievalError as error:
        _fail(error)
    console.print(
        f"fitted on {hybrid.fitted['questions'] if hybrid.fitted else 0} questions: hybrid "
        f"{dict(hybrid.weights)}, reranker {dict(hybrid.rerank_weights)}, "
        f"{hybrid.generation_tokens} generation tokens; saved to {artifact}"
    )


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Where to save the trained artifact.")] = Path(
        "selfretrieval-quickstart"
    ),
    base_model: Annotated[str, typer.Option(help="Base model to train.")] = "smollm2-135m",
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 2.0,
    questions: Annotated[int, typer.Option(help="Held-out questions to show.")] = 3,
) -> None:
    """Train on the bundled SQuAD sample with the offline SmolLM2-135M, then answer questions."""
    _require_trainer()
    from selfretrieval_integrations.evaluation import run_quickstart

    try:
        run_quickstart(
            out, base_model=base_model, epochs=epochs, questions=questions, console=console
        )
    except SelfRetrievalError as error:
        _fail(error)
