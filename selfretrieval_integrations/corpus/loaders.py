"""Load corpora, queries and relevance judgements from files.

``load_corpus`` accepts three layouts, recognised from the path:

- a BEIR folder: ``corpus.jsonl`` with lines ``{"_id", "title", "text", "metadata"?}``, usually
  next to ``queries.jsonl`` and ``qrels/{split}.tsv``;
- a JSONL file of documents: ``{"id" or "_id", "text", "title"?, "metadata"?}`` per line;
- a folder of ``.txt`` / ``.md`` files (searched recursively, hidden files skipped): the id is the
  relative path without extension, the title the first Markdown heading (``# Title``) if any, else
  the file name without extension.

In JSONL files, keys other than id, title, text and metadata are moved into the metadata, because
such files come from elsewhere and often carry extra fields. BEIR corpus-ids in qrels are document
ids: map them to passages with ``Corpus.passages_of``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from selfretrieval_integrations.errors import CorpusError

from .chunking import ChunkingConfig, Tokenizer
from .collection import Corpus
from .documents import Document
from .jsonl import PROGRESS_MIN_ITEMS, count_lines, read_json_lines

__all__ = [
    "load_beir_qrels",
    "load_beir_queries",
    "load_beir_query_metadata",
    "load_corpus",
    "quickstart_dir",
]

#: Inputs with fewer lines (or files) than this load without a progress bar.

_TEXT_SUFFIXES = (".txt", ".md")
_LAYOUTS = (
    "a BEIR folder containing corpus.jsonl; a .jsonl file of documents "
    '({"id" or "_id", "text", "title"?, "metadata"?} per line); or a folder of .txt/.md files'
)
_HEADING_RE = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(```|~~~)")


def quickstart_dir() -> Path:
    """The bundled BEIR folder (32 SQuAD v1.1 paragraphs, their questions, train/test qrels)."""
    return Path(__file__).resolve().parents[1] / "data" / "quickstart"


# --------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------


def load_corpus(
    path: str | os.PathLike[str],
    chunking: ChunkingConfig | None = None,
    *,
    tokenizer: Tokenizer | None = None,
) -> Corpus:
    """Load documents from a BEIR folder, a JSONL file or a folder of text files, and chunk them.

    ``chunking`` defaults to ``ChunkingConfig()``; ``tokenizer`` is needed only with
    ``unit="tokens"``.
    """
    source = Path(path)
    if not source.exists():
        raise CorpusError(f"no such file or folder: {str(source)!r}; accepted are {_LAYOUTS}.")
    if source.is_dir():
        beir = source / "corpus.jsonl"
        if beir.is_file():
            documents = _read_document_jsonl(beir)
        else:
            files = _text_files(source)
            if not files:
                raise CorpusError(
                    f"{str(source)!r} is a folder without corpus.jsonl and without .txt/.md files; "
                    f"accepted are {_LAYOUTS}."
                )
            documents = _read_text_files(source, files)
    elif source.suffix.lower() == ".jsonl":
        documents = _read_document_jsonl(source)
    else:
        raise CorpusError(
            f"cannot tell the layout of {str(source)!r} (a {source.suffix or 'suffix-less'} file); "
            f"accepted are {_LAYOUTS}."
        )
    if not documents:
        raise CorpusError(
            f"corpus is empty: {str(source)!r} holds no documents; give at least one document "
            f"with non-empty text."
        )
    return Corpus.from_documents(documents, chunking, tokenizer=tokenizer)


def _read_document_jsonl(file: Path) -> list[Document]:
    documents: list[Document] = []
    what = 'like {"_id": ..., "title": ..., "text": ...}'
    for line_number, data in read_json_lines(file, what):
        try:
            documents.append(Document.from_mapping(data, extra_to_metadata=True))
        except CorpusError as exc:
            raise CorpusError(f"{file}, line {line_number}: {exc}") from exc
    return documents


def _text_files(folder: Path) -> list[Path]:
    files = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if file.suffix.lower() in _TEXT_SUFFIXES and file.is_file():
            files.append(file)
    return sorted(files, key=lambda file: file.relative_to(folder).as_posix())


def _markdown_title(text: str) -> str:
    """The first ATX heading (``# Title``) outside fenced code, or "" if there is none."""
    in_fence = False
    for line in text.splitlines():
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence and (match := _HEADING_RE.match(line)):
            return match.group(1).strip()
    return ""


def _read_text_files(folder: Path, files: list[Path]) -> list[Document]:
    documents: list[Document] = []
    sources: dict[str, Path] = {}
    for file in tqdm(files, desc="reading text files", disable=len(files) < PROGRESS_MIN_ITEMS):
        relative = file.relative_to(folder)
        doc_id = relative.with_suffix("").as_posix()
        if doc_id in sources:
            raise CorpusError(
                f"{sources[doc_id]} and {file} would both get the document id {doc_id!r} (the "
                f"path without extension); rename one of them."
            )
        sources[doc_id] = file
        try:
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CorpusError(
                f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
            ) from exc
        try:
            documents.append(
                Document(
                    id=doc_id,
                    text=text,
                    title=_markdown_title(text) or file.stem,
                    metadata={"path": relative.as_posix()},
                )
            )
        except CorpusError as exc:
            raise CorpusError(f"{file}: {exc}") from exc
    return documents


# --------------------------------------------------------------------------------------------------
# BEIR queries and qrels
# --------------------------------------------------------------------------------------------------


def _queries_file(folder_or_file: str | os.PathLike[str]) -> Path:
    source = Path(folder_or_file)
    file = source / "queries.jsonl" if source.is_dir() else source
    if not file.is_file():
        raise CorpusError(
            f"no queries file at {str(file)!r}; give a BEIR folder containing queries.jsonl or "
            f'the path of a .jsonl file with lines {{"_id": ..., "text": ...}}.'
        )
    return file


def _read_queries(file: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    queries: dict[str, tuple[str, dict[str, Any]]] = {}
    what = 'like {"_id": ..., "text": ...}'
    for line_number, data in read_json_lines(file, what):
        where = f"{file}, line {line_number}"
        raw_id = data.get("_id", data.get("id"))
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id):
            raise CorpusError(
                f'{where}: a query needs a non-empty "_id" (or "id"), got {raw_id!r}; give every '
                f"query a unique id."
            )
        query_id = str(raw_id)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(
                f'{where}: query {query_id!r} needs a non-empty string under "text", got '
                f"{text!r}; give the question text."
            )
        if query_id in queries:
            raise CorpusError(
                f"{where}: duplicate query id {query_id!r}; every query id must be unique."
            )
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise CorpusError(
                f"{where}: the metadata of query {query_id!r} must be a JSON object, got "
                f"{type(metadata).__name__}."
            )
        queries[query_id] = (text.strip(), metadata)
    return queries


def load_beir_queries(folder_or_file: str | os.PathLike[str]) -> dict[str, str]:
    """Query id -> query text, from ``queries.jsonl`` (texts are stripped of outer whitespace)."""
    return {qid: text for qid, (text, _) in _read_queries(_queries_file(folder_or_file)).items()}


def load_beir_query_metadata(folder_or_file: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Query id -> metadata (e.g. ``{"answers": [...]}`` in the bundled corpus), ``{}`` if none."""
    return {qid: meta for qid, (_, meta) in _read_queries(_queries_file(folder_or_file)).items()}


def load_beir_qrels(folder: str | os.PathLike[str], split: str) -> dict[str, dict[str, int]]:
    """Query id -> {document id: relevance} from ``qrels/{split}.tsv`` (tab-separated).

    The header line ``query-id corpus-id score`` is skipped; BEIR corpus-ids are document ids.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CorpusError(
            f"no such folder: {str(root)!r}; give a BEIR folder containing qrels/{{split}}.tsv."
        )
    if not isinstance(split, str) or not split or "/" in split or "\\" in split:
        raise CorpusError(
            f'split must be a plain name like "test", got {split!r}; it names qrels/<split>.tsv.'
        )
    qrels_dir = root / "qrels"
    file = qrels_dir / f"{split}.tsv"
    if not file.is_file():
        available = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        hint = (
            f"available splits: {available}"
            if available
            else f"{qrels_dir} has no .tsv files"
            if qrels_dir.is_dir()
            else f"{root} has no qrels/"
        )
        raise CorpusError(f"no qrels for split {split!r} at {file}; {hint}.")
    qrels: dict[str, dict[str, int]] = {}
    total = count_lines(file)
    with (
        file.open(encoding="utf-8-sig") as handle,
        tqdm(
            total=total, desc=f"reading {file.name}", disable=total < PROGRESS_MIN_ITEMS
        ) as progress,
    ):
        for line_number, line in enumerate(handle, start=1):
            progress.update(1)
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if line_number == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(fields) != 3:
                raise CorpusError(
                    f"{file}, line {line_number}: expected 3 tab-separated fields (query-id, "
                    f"corpus-id, score), got {len(fields)}: {line.rstrip()!r}."
                )
            query_id, doc_id, raw_score = (value.strip() for value in fields)
            try:
                score = int(raw_score)
            except ValueError:
                raise CorpusError(
                    f"{file}, line {line_number}: the score must be an integer, got {raw_score!r}."
                ) from None
            if not query_id or not doc_id:
                raise CorpusError(
                    f"{file}, line {line_number}: empty query-id or corpus-id in {line.rstrip()!r}."
                )
            previous = qrels.setdefault(query_id, {}).setdefault(doc_id, score)
            if previous != score:
                raise CorpusError(
                    f"{file}, line {line_number}: query {query_id!r} and document {doc_id!r} "
                    f"were already judged {previous}, now {score}; keep one judgement per pair."
                )
    return qrels
