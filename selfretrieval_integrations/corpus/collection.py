"""``Corpus``: the exact, ordered, stable collection of passages a model is trained on.

A model memorises its corpus passage by passage and can only ever generate a passage of it, so the
corpus must be exact, ordered and stable: every passage has a stable id, lookups are O(1), and
``Corpus.checksum()`` identifies the content so that a saved model can tell which corpus it holds.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from selfretrieval_integrations.errors import CorpusError

from .chunking import ChunkingConfig, Tokenizer, chunk_document
from .documents import Document, Passage, _clean_id, _duplicates, _listed
from .jsonl import read_json_lines

#: Version tag hashed first by ``Corpus.checksum``; change it only if the hashed format changes.
_CHECKSUM_TAG = b"selfretrieval-corpus/1\n"


class Corpus:
    """An ordered, immutable collection of passages with O(1) lookup by passage id.

    Positions matter (a trained model refers to passages by their order), so every method that
    changes the content returns a new corpus and leaves this one as it was. Build one with
    ``from_documents``, ``from_passages`` or ``from_jsonl``, or ``Corpus(passages)`` from
    ``Passage`` objects.
    """

    __slots__ = ("_by_doc", "_checksum", "_index", "_passages")

    def __init__(self, passages: Iterable[Passage]) -> None:
        items = tuple(passages)
        if not items:
            raise CorpusError("corpus is empty: give at least one document with non-empty text.")
        wrong = [type(item).__name__ for item in items if not isinstance(item, Passage)]
        if wrong:
            raise CorpusError(
                f"Corpus(...) takes Passage objects, got {sorted(set(wrong))}; use "
                f"Corpus.from_documents(...) or Corpus.from_passages(...) for documents or dicts."
            )
        index: dict[str, int] = {}
        for position, passage in enumerate(items):
            index.setdefault(passage.id, position)
        if len(index) != len(items):
            dups = _duplicates(passage.id for passage in items)
            raise CorpusError(
                f"duplicate passage ids: {_listed(dups)} ({len(dups)} ids in all); every passage "
                f"id must be unique, so rename or drop the repeats."
            )
        by_doc: dict[str, list[int]] = {}
        for position, passage in enumerate(items):
            by_doc.setdefault(passage.doc_id, []).append(position)
        self._passages = items
        self._index = index
        self._by_doc = by_doc
        self._checksum: str | None = None

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_documents(
        cls,
        docs: Iterable[Document | Mapping[str, Any]],
        chunking: ChunkingConfig | None = None,
        *,
        tokenizer: Tokenizer | None = None,
    ) -> Corpus:
        """A corpus of these documents (``Document`` or ``{"id", "text", ...}``), chunked.

        ``tokenizer`` is needed only with ``ChunkingConfig(unit="tokens")``.
        """
        if isinstance(docs, (str, bytes, Mapping, Document)):
            raise CorpusError(
                f"from_documents takes an iterable of documents, got a single "
                f"{type(docs).__name__}; wrap it in a list."
            )
        documents = [
            doc if isinstance(doc, Document) else Document.from_mapping(doc) for doc in docs
        ]
        if not documents:
            raise CorpusError("corpus is empty: give at least one document with non-empty text.")
        dups = _duplicates(doc.id for doc in documents)
        if dups:
            raise CorpusError(
                f"duplicate document ids: {_listed(dups)} ({len(dups)} ids in all); every "
                f"document id must be unique, so rename or merge the repeats."
            )
        passages: list[Passage] = []
        for doc in documents:
            passages.extend(chunk_document(doc, chunking, tokenizer=tokenizer))
        return cls(passages)

    @classmethod
    def from_passages(cls, passages: Iterable[Passage | Mapping[str, Any]]) -> Corpus:
        """A corpus of ready-made passages, which keep their own ids (``doc_id`` defaults to id)."""
        if isinstance(passages, (str, bytes, Mapping, Passage)):
            raise CorpusError(
                f"from_passages takes an iterable of passages, got a single "
                f"{type(passages).__name__}; wrap it in a list."
            )
        return cls(p if isinstance(p, Passage) else Passage.from_mapping(p) for p in passages)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> Corpus:
        """Load passages written by ``to_jsonl`` (one JSON object per line; blank lines skipped)."""
        file = Path(path)
        if not file.is_file():
            raise CorpusError(
                f"no passages file at {str(file)!r}; give the path of a file written by "
                f"Corpus.to_jsonl (use loaders.load_corpus for documents)."
            )
        passages: list[Passage] = []
        what = 'like {"id": ..., "doc_id": ..., "title": ..., "text": ..., "metadata": {}}'
        for line_number, data in read_json_lines(file, what):
            try:
                passages.append(Passage.from_mapping(data))
            except CorpusError as exc:
                raise CorpusError(f"{file}, line {line_number}: {exc}") from exc
        if not passages:
            raise CorpusError(
                f"corpus is empty: {file} holds no passages; give at least one document with "
                f"non-empty text."
            )
        return cls(passages)

    # -- sequence and lookup -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._passages)

    def __iter__(self) -> Iterator[Passage]:
        return iter(self._passages)

    def __getitem__(self, position: int) -> Passage:
        if isinstance(position, (bool, str)) or not hasattr(position, "__index__"):
            raise TypeError(
                f"Corpus[...] takes an int position, got {type(position).__name__} "
                f"{position!r}; use corpus.get(passage_id) to look up by id."
            )
        return self._passages[operator.index(position)]

    def __contains__(self, passage_id: object) -> bool:
        return passage_id in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Corpus):
            return NotImplemented
        return self._passages == other._passages

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Corpus({len(self._passages)} passages from {len(self._by_doc)} documents)"

    def get(self, passage_id: str) -> Passage:
        """The passage with this id; an unknown id is an error (use ``in`` to test first)."""
        return self._passages[self.index_of(passage_id)]

    def index_of(self, passage_id: str) -> int:
        """The position of a passage, as used by the trie and the model."""
        try:
            return self._index[passage_id]
        except (KeyError, TypeError):
            raise CorpusError(
                f"no passage with id {passage_id!r} in this corpus of {len(self)} passages; "
                f"chunked passages are named '<doc_id>#<i>' (corpus.passage_ids lists them all)."
            ) from None

    @property
    def passage_ids(self) -> tuple[str, ...]:
        """All passage ids, in corpus order."""
        return tuple(passage.id for passage in self._passages)

    def doc_ids(self) -> list[str]:
        """Document ids in the order of their first passage."""
        return list(self._by_doc)

    def passages_of(self, doc_id: str) -> list[int]:
        """Positions of the passages of one document, in corpus order."""
        try:
            return list(self._by_doc[doc_id])
        except (KeyError, TypeError):
            raise CorpusError(
                f"no document with id {doc_id!r} in this corpus of {len(self._by_doc)} "
                f"documents; corpus.doc_ids() lists them."
            ) from None

    # -- identity ----------------------------------------------------------------------------------

    def checksum(self) -> str:
        """SHA-256 (hex) of the passages in order: ids, doc ids, titles, texts and metadata.

        Canonical JSON (sorted keys, no ASCII escaping) makes it stable across runs, platforms and
        Python versions; a saved model records it to detect a different corpus.
        """
        if self._checksum is None:
            digest = hashlib.sha256(_CHECKSUM_TAG)
            for passage in self._passages:
                row = [passage.id, passage.doc_id, passage.title, passage.text, passage.metadata]
                line = json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                digest.update(line.encode("utf-8"))
                digest.update(b"\n")
            self._checksum = digest.hexdigest()
        return self._checksum

    # -- updates -----------------------------------------------------------------------------------

    def without_documents(self, doc_ids: Iterable[str] | str) -> Corpus:
        """A new corpus without the passages of these documents (a single id may be given as str).

        Unknown ids are an error, to catch typos; removing every document is an error too.
        """
        wanted = [doc_ids] if isinstance(doc_ids, (str, int)) else list(doc_ids)
        removed = {_clean_id(doc_id, "a document id to remove") for doc_id in wanted}
        unknown = sorted(doc_id for doc_id in removed if doc_id not in self._by_doc)
        if unknown:
            raise CorpusError(
                f"cannot remove unknown document ids {_listed(unknown)}; corpus.doc_ids() lists "
                f"the {len(self._by_doc)} documents of this corpus."
            )
        kept = [passage for passage in self._passages if passage.doc_id not in removed]
        if not kept:
            raise CorpusError(
                "corpus is empty: removing these documents would leave no passages; keep at least "
                "one document."
            )
        return Corpus(kept)

    def with_documents(
        self,
        docs: Iterable[Document | Mapping[str, Any]],
        chunking: ChunkingConfig | None = None,
        *,
        tokenizer: Tokenizer | None = None,
    ) -> Corpus:
        """A new corpus with these documents chunked and appended after the existing passages.

        A document id already in the corpus is an error: remove it first with
        ``without_documents`` to replace a document.
        """
        added = Corpus.from_documents(docs, chunking, tokenizer=tokenizer)
        clash = [doc_id for doc_id in added.doc_ids() if doc_id in self._by_doc]
        if clash:
            raise CorpusError(
                f"document ids already in the corpus: {_listed(clash)}; call "
                f"corpus.without_documents([...]) first to replace them, or use new ids."
            )
        return Corpus(self._passages + added._passages)

    # -- persistence -------------------------------------------------------------------------------

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write one JSON object per passage (id, doc_id, title, text, metadata), UTF-8.

        The file is written to a temporary name and then renamed, so a crash never leaves half a
        corpus behind. Returns the path written.
        """
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            newline="\n",
            dir=file.parent,
            prefix=f".{file.name}.",
            suffix=".tmp",
            delete=False,
        ) as handle:
            temporary = Path(handle.name)
            try:
                for passage in self._passages:
                    handle.write(json.dumps(passage.to_dict(), ensure_ascii=False))
                    handle.write("\n")
            except BaseException:
                handle.close()
                temporary.unlink(missing_ok=True)
                raise
        os.replace(temporary, file)
        return file
