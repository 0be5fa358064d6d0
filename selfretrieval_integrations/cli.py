"""The ``selfretrieval`` command line (typer): build, search and inspect artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import SelfRetrievalError

app = typer.Typer(
    help="Self-Retrieval: one small LLM that indexes, retrieves and reranks a corpus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

BUNDLED_CORPUS = Path(__file__).parent / "data" / "quickstart"


def _fail(error: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(code=2)


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Artifact folder to write.")],
    corpus: Annotated[
        Path,
        typer.Option(help="BEIR folder, JSONL of documents, or folder of .txt/.md files."),
    ] = BUNDLED_CORPUS,
    base_model: Annotated[
        str, typer.Option(help="tiny, smollm2-135m, a hub id or a local path.")
    ] = "smollm2-135m",
    max_words: Annotated[int, typer.Option(help="Passage length limit in words.")] = 200,
) -> None:
    """Build an untrained (zero-shot) artifact over a corpus: trie, store and base weights."""
    from .corpus import ChunkingConfig
    from .loaders import load_corpus
    from .model import SelfRetrievalModel

    try:
        docs = load_corpus(corpus, chunking=ChunkingConfig(max_words=max_words))
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
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ...")] = None,  # noqa: UP045
) -> None:
    """Retrieve the k best passages for a query."""
    from .model import SelfRetrievalModel

    try:
        model = SelfRetrievalModel.from_pretrained(artifact, device=device)
        results = model.retrieve(query, k=k)
    except SelfRetrievalError as error:
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
def info(artifact: Annotated[Path, typer.Argument(help="Artifact folder.")]) -> None:
    """Show what an artifact holds: base model, passages, trie, versions, training summary."""
    from .artifact import read_manifest

    try:
        manifest = read_manifest(artifact, verify=True)
    except SelfRetrievalError as error:
        _fail(error)
    summary = {k: v for k, v in manifest.items() if k != "files"}
    summary["files"] = len(manifest.get("files", {}))
    summary["size_bytes"] = sum(f["size"] for f in manifest.get("files", {}).values())
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False, sort_keys=True))


def main() -> None:  # pragma: no cover - console entry point
    app()
