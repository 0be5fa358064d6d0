"""Documents, passages and the corpus a Self-Retrieval model is trained on.

A model memorises its corpus passage by passage and can only ever generate a passage of it, so the
corpus must be exact, ordered and stable: every passage has a stable id, lookups are O(1), and
``Corpus.checksum()`` identifies the content so that a saved model can tell which corpus it holds.

Normalisation (the only changes made to what you give):

- Text and titles are stripped of leading and trailing whitespace.
- Titles are single-line, because the prompt puts a newline after the title: every line break in a
  title (with the spaces around it) becomes one space.
- The inner whitespace of a text is kept as it is, so passages are verbatim slices of their
  document, and Unicode is kept verbatim (no NFC or other normalisation).
- Metadata is stored as its JSON round trip (tuples become lists), so a corpus saved with
  ``to_jsonl`` and loaded back compares equal.

Chunking (``chunk_document``): a document is split into paragraphs on blank lines; whole paragraphs
are packed greedily into one chunk while they fit the limit. A paragraph over the limit gets chunks
of its own: it is cut at sentence ends, a sentence over the limit is cut between words, and (only
with ``unit="tokens"``) a word over the limit is cut between characters. Words are runs of
non-space characters, except that each CJK character counts as one word (those scripts do not use
spaces) and a run longer than 20 characters counts as one word per 20 characters, so text without
spaces (code, base64, Thai) still makes bounded chunks.
"""

from __future__ import annotations

import bisect
import hashlib
import inspect
import itertools
import json
import operator
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from selfretrieval_integrations.errors import CorpusError

__all__ = [
    "ChunkingConfig",
    "Corpus",
    "Document",
    "Passage",
    "Tokenizer",
    "chunk_document",
]

#: A run of non-space characters counts as one word per this many characters.
MAX_WORD_CHARS = 20

#: Version tag hashed first by ``Corpus.checksum``; change it only if the hashed format changes.
_CHECKSUM_TAG = b"selfretrieval-corpus/1\n"

_MAX_LISTED = 5


class _Encoder(Protocol):
    def encode(self, text: str, /) -> Sequence[int]: ...


#: A tokenizer for ``unit="tokens"``: a callable ``str -> list[int]`` or an object with ``.encode``
#: (a Hugging Face tokenizer is called with ``add_special_tokens=False``).
Tokenizer = Callable[[str], Sequence[int]] | _Encoder


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _clean_id(value: object, what: str, context: str = "") -> str:
    """Return ``value`` as an id string; ints are converted because ids often come from counters."""
    where = f" ({context})" if context else ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(
            f"{what} must be a non-empty string{where}, got {type(value).__name__} {value!r}; "
            f"give a string (ints are converted with str())."
        )
    text = str(value)
    if not text.strip():
        raise CorpusError(
            f"{what} must be a non-empty string{where}, got {text!r}; give every item a unique, "
            f"non-blank id."
        )
    return text


def _clean_title(value: object, owner: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CorpusError(
            f"the title of {owner} must be a string, got {type(value).__name__} {value!r}; "
            f"give a string or leave it out."
        )
    lines = [line.strip() for line in value.splitlines()]
    return " ".join(line for line in lines if line)


def _clean_text(value: object, owner: str) -> str:
    if not isinstance(value, str):
        raise CorpusError(
            f"the text of {owner} must be a string, got {type(value).__name__}; give its content "
            f"as str."
        )
    text = value.strip()
    if not text:
        raise CorpusError(
            f"the text of {owner} is empty or only whitespace ({value!r}); give it some text or "
            f"leave it out of the corpus."
        )
    return text


def _clean_metadata(value: object, owner: str) -> dict[str, Any]:
    """Return a JSON round trip of ``value``: checks it is serialisable and copies it deeply."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CorpusError(
            f"the metadata of {owner} must be a mapping (dict), got {type(value).__name__}; "
            f"give a dict of JSON values."
        )
    if not value:
        return {}
    bad_keys = [key for key in value if not isinstance(key, str)]
    if bad_keys:
        raise CorpusError(
            f"the metadata of {owner} has non-string keys {bad_keys[:_MAX_LISTED]!r}; JSON "
            f"objects only have string keys, so convert them with str()."
        )
    try:
        dumped = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CorpusError(
            f"the metadata of {owner} is not JSON-serialisable ({exc}); keep only str, int, "
            f"float (not NaN or infinity), bool, None, lists and dicts with string keys."
        ) from exc
    loaded: dict[str, Any] = json.loads(dumped)
    return loaded


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(repr(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _duplicates(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    dup_set: set[str] = set()
    for item in ids:
        if item in seen and item not in dup_set:
            dups.append(item)
            dup_set.add(item)
        seen.add(item)
    return dups


# --------------------------------------------------------------------------------------------------
# Documents and passages
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One source document as the user gives it; it is chunked into passages by ``Corpus``.

    The constructor validates and normalises (see the module docstring): ids may be ints, the text
    must not be blank, metadata must be JSON-serialisable.
    """

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        doc_id = _clean_id(self.id, "a document id")
        owner = f"document {doc_id!r}"
        object.__setattr__(self, "id", doc_id)
        object.__setattr__(self, "text", _clean_text(self.text, owner))
        object.__setattr__(self, "title", _clean_title(self.title, owner))
        object.__setattr__(self, "metadata", _clean_metadata(self.metadata, owner))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, extra_to_metadata: bool = False) -> Document:
        """Build a document from ``{"id" or "_id", "text", "title"?, "metadata"?}``.

        Unknown keys are an error (likely a typo) unless ``extra_to_metadata`` is set, which moves
        them into the metadata (used by the file loaders, whose files come from elsewhere).
        """
        if not isinstance(data, Mapping):
            raise CorpusError(
                f"a document must be a Document or a mapping, got {type(data).__name__}; give "
                f'Document(id=..., text=...) or {{"id": ..., "text": ...}}.'
            )
        doc_id = _id_from_mapping(data, "document")
        if "text" not in data:
            raise CorpusError(
                f'document {doc_id!r} has no "text" key (keys: {sorted(map(str, data))}); give its '
                f'content under "text".'
            )
        allowed = {"id", "_id", "text", "title", "metadata"}
        extra = {key: value for key, value in data.items() if key not in allowed}
        metadata = data.get("metadata")
        if extra:
            if not extra_to_metadata:
                raise CorpusError(
                    f"document {doc_id!r} has unknown keys {sorted(map(str, extra))}; the allowed "
                    f'keys are {sorted(allowed)}. Put other fields under "metadata".'
                )
            if metadata is not None and not isinstance(metadata, Mapping):
                raise CorpusError(
                    f"the metadata of document {doc_id!r} must be a mapping (dict), got "
                    f"{type(metadata).__name__}; give a dict of JSON values."
                )
            merged = dict(extra)
            merged.update(metadata or {})
            metadata = merged
        return cls(
            id=doc_id,
            text=data["text"],
            title=data.get("title") or "",
            metadata=metadata if metadata is not None else {},
        )


def _id_from_mapping(data: Mapping[str, Any], what: str) -> str:
    has_id, has_underscore = "id" in data, "_id" in data
    if not has_id and not has_underscore:
        raise CorpusError(
            f'a {what} has no "id" (or "_id") key (keys: {sorted(map(str, data))}); give every '
            f"{what} a unique id."
        )
    if has_id and has_underscore and str(data["id"]) != str(data["_id"]):
        raise CorpusError(
            f'a {what} has both "id" ({data["id"]!r}) and "_id" ({data["_id"]!r}) and they differ; '
            f"keep only one of them."
        )
    return _clean_id(data["id"] if has_id else data["_id"], f"a {what} id")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit: a chunk of a document, with the title the model generates before it.

    Chunks made by ``chunk_document`` have the id ``f"{doc_id}#{i}"`` (``i`` is the 0-based chunk
    index in the document); passages given directly keep their own id.
    """

    id: str
    doc_id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        passage_id = _clean_id(self.id, "a passage id")
        owner = f"passage {passage_id!r}"
        object.__setattr__(self, "id", passage_id)
        object.__setattr__(self, "doc_id", _clean_id(self.doc_id, "a document id", owner))
        object.__setattr__(self, "text", _clean_text(self.text, owner))
        object.__setattr__(self, "title", _clean_title(self.title, owner))
        object.__setattr__(self, "metadata", _clean_metadata(self.metadata, owner))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Passage:
        """Build a passage from ``{"id", "text", "doc_id"?, "title"?, "metadata"?}``.

        ``doc_id`` defaults to the passage id (each passage is then its own document).
        """
        if not isinstance(data, Mapping):
            raise CorpusError(
                f"a passage must be a Passage or a mapping, got {type(data).__name__}; give "
                f'Passage(...) or {{"id": ..., "doc_id": ..., "text": ...}}.'
            )
        passage_id = _id_from_mapping(data, "passage")
        allowed = {"id", "_id", "doc_id", "text", "title", "metadata"}
        extra = sorted(str(key) for key in data if key not in allowed)
        if extra:
            raise CorpusError(
                f"passage {passage_id!r} has unknown keys {extra}; the allowed keys are "
                f'{sorted(allowed)}. Put other fields under "metadata".'
            )
        if "text" not in data:
            raise CorpusError(
                f'passage {passage_id!r} has no "text" key; give its content under "text".'
            )
        return cls(
            id=passage_id,
            doc_id=data.get("doc_id", passage_id),
            title=data.get("title") or "",
            text=data["text"],
            metadata=data.get("metadata"),  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written by ``Corpus.to_jsonl`` (a fresh copy)."""
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "title": self.title,
            "text": self.text,
            "metadata": json.loads(json.dumps(self.metadata)) if self.metadata else {},
        }


# --------------------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------------------


@dataclass
class ChunkingConfig:
    """How documents are cut into passages (see the module docstring for the exact rules).

    Attributes:
        max_words: the most words in a passage when ``unit="words"``.
        unit: ``"words"`` (no tokenizer needed) or ``"tokens"`` (limit in tokenizer tokens, so
            passages fit the model's budget exactly; needs a tokenizer).
        max_tokens: the most tokens in a passage; required with ``unit="tokens"`` only.
        overlap_words: words repeated from the end of a chunk at the start of the next one where a
            paragraph had to be cut; chunks that start at a paragraph boundary never overlap.
    """

    max_words: int = 200
    unit: Literal["words", "tokens"] = "words"
    max_tokens: int | None = None
    overlap_words: int = 0

    def __post_init__(self) -> None:
        if self.unit not in ("words", "tokens"):
            raise CorpusError(
                f'ChunkingConfig.unit must be "words" or "tokens", got {self.unit!r}; use "tokens" '
                f"to count the model's tokens (needs a tokenizer)."
            )
        _check_positive_int(self.max_words, "max_words")
        if self.unit == "tokens":
            if self.max_tokens is None:
                raise CorpusError(
                    'ChunkingConfig(unit="tokens") needs max_tokens, got None; give e.g. '
                    'ChunkingConfig(unit="tokens", max_tokens=256).'
                )
            _check_positive_int(self.max_tokens, "max_tokens")
        elif self.max_tokens is not None:
            raise CorpusError(
                f'ChunkingConfig.max_tokens is only used with unit="tokens", got '
                f'max_tokens={self.max_tokens!r} with unit="words"; set unit="tokens" or drop '
                f"max_tokens."
            )
        if (
            isinstance(self.overlap_words, bool)
            or not isinstance(self.overlap_words, int)
            or self.overlap_words < 0
        ):
            raise CorpusError(
                f"ChunkingConfig.overlap_words must be an int >= 0, got {self.overlap_words!r}; "
                f"use 0 for no overlap."
            )
        if self.overlap_words >= self.limit:
            raise CorpusError(
                f"ChunkingConfig.overlap_words ({self.overlap_words}) must be smaller than the "
                f"chunk limit ({self.limit} {self.unit}); lower overlap_words."
            )

    @property
    def limit(self) -> int:
        """The size limit of a chunk, in ``unit``."""
        if self.unit == "tokens" and self.max_tokens is not None:
            return self.max_tokens
        return self.max_words


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CorpusError(
            f"ChunkingConfig.{name} must be an int >= 1, got {value!r}; give a positive limit."
        )


_CJK_RANGES = (
    "\u3001-\u303f"  # CJK punctuation (\u3000, the ideographic space, is whitespace)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u31f0-\u31ff"
    "\u3400-\u4dbf"
    "\u4e00-\u9fff"
    "\uf900-\ufaff"
    "\uff01-\uff9f"  # full-width forms, half-width katakana
    "\U00020000-\U0003134f"
)
_MARKS = "\u0300-\u036f\u3099\u309a\ufe00-\ufe0f\u200d"
_WORD_RE = re.compile(f"[{_CJK_RANGES}][{_MARKS}]*|[^\\s{_CJK_RANGES}]+")
_PARAGRAPH_BREAK_RE = re.compile("\n[^\\S\n]*\n|\u2029")
_SENTENCE_END_RE = re.compile("[.!?\u2026][\"'\u2019\u201d)\\]]*$")
_CJK_SENTENCE_END_RE = re.compile("[\u3002\uff01\uff1f][\"'\u2019\u201d\u300d\u300f)\\]]*$")


def _continues_cluster(text: str, pos: int) -> bool:
    """True when a cut before ``text[pos]`` would split a character from its marks or an emoji."""
    ch, prev = text[pos], text[pos - 1]
    if ch == "\u200d" or prev == "\u200d" or "\U0001f3fb" <= ch <= "\U0001f3ff":
        return True
    if "\U0001f1e6" <= ch <= "\U0001f1ff" and "\U0001f1e6" <= prev <= "\U0001f1ff":
        return True
    return unicodedata.category(ch) in ("Mn", "Mc", "Me")


def _cut_points(text: str, start: int, end: int, step: int) -> list[int]:
    """Cut positions in ``text[start:end]`` about every ``step`` characters, never in a cluster."""
    cuts = [start]
    pos = start + step
    while pos < end:
        while pos < end and _continues_cluster(text, pos):
            pos += 1
        if pos >= end:
            break
        cuts.append(pos)
        pos += step
    cuts.append(end)
    return cuts


def _word_spans(text: str) -> list[tuple[int, int]]:
    """Word spans (see the module docstring), in order; a fast path keeps ordinary text cheap."""
    spans: list[tuple[int, int]] = []
    for match in _WORD_RE.finditer(text):
        start, end = match.span()
        if end - start <= MAX_WORD_CHARS:
            spans.append((start, end))
            continue
        cuts = _cut_points(text, start, end, MAX_WORD_CHARS)
        spans.extend(itertools.pairwise(cuts))
    return spans


def _token_counter(tokenizer: Tokenizer) -> Callable[[str], int]:
    encode = getattr(tokenizer, "encode", None)
    if encode is not None and callable(encode):
        try:
            params = inspect.signature(encode).parameters
            no_specials = "add_special_tokens" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
            )
        except (TypeError, ValueError):
            no_specials = False
        if no_specials:
            return lambda text: len(encode(text, add_special_tokens=False))
        return lambda text: len(encode(text))
    if callable(tokenizer):
        return lambda text: len(tokenizer(text))
    raise CorpusError(
        f"the tokenizer must be a callable str -> list[int] or have an .encode method, got "
        f"{type(tokenizer).__name__}; pass e.g. a Hugging Face tokenizer."
    )


class _Chunker:
    """Chunks one document text; spans are character offsets into it, ends exclusive."""

    def __init__(self, text: str, config: ChunkingConfig, tokenizer: Tokenizer | None) -> None:
        self.text = text
        self.config = config
        self.limit = config.limit
        self.words = _word_spans(text)
        self.word_starts = [start for start, _ in self.words]
        self.word_ends = [end for _, end in self.words]
        self._count_tokens = _token_counter(tokenizer) if tokenizer is not None else None

    def size(self, start: int, end: int) -> int:
        if self._count_tokens is not None:
            return self._count_tokens(self.text[start:end])
        first = bisect.bisect_left(self.word_starts, start)
        last = bisect.bisect_left(self.word_starts, end)
        return last - first

    def fits(self, start: int, end: int) -> bool:
        return self.size(start, end) <= self.limit

    def paragraphs(self) -> list[tuple[int, int, int, int]]:
        """(first word, end word, start char, end char) of each non-blank paragraph."""
        breaks = [match.start() for match in _PARAGRAPH_BREAK_RE.finditer(self.text)]
        result: list[tuple[int, int, int, int]] = []
        first = 0
        n_words = len(self.words)
        for brk in [*breaks, len(self.text)]:
            last = bisect.bisect_left(self.word_starts, brk, lo=first)
            if last > first:
                result.append((first, last, self.words[first][0], self.words[last - 1][1]))
            first = last
            if first >= n_words:
                break
        return result

    def chunks(self) -> list[tuple[int, int]]:
        chunks: list[tuple[int, int]] = []
        current: tuple[int, int] | None = None
        for first, last, start, end in self.paragraphs():
            if self.fits(start, end):
                if current is not None and self.fits(current[0], end):
                    current = (current[0], end)
                else:
                    if current is not None:
                        chunks.append(current)
                    current = (start, end)
                continue
            if current is not None:
                chunks.append(current)
                current = None
            chunks.extend(self._split_paragraph(first, last))
        if current is not None:
            chunks.append(current)
        return chunks

    def _sentences(self, first: int, last: int) -> list[tuple[int, int]]:
        """Character spans of the sentences of the paragraph made of words [first, last)."""
        text, words = self.text, self.words
        spans: list[tuple[int, int]] = []
        sentence_start = words[first][0]
        for index in range(first, last - 1):
            start, end = words[index]
            word = text[start:end]
            next_start = words[index + 1][0]
            if _CJK_SENTENCE_END_RE.search(word) or (
                next_start > end  # whitespace follows
                and _SENTENCE_END_RE.search(word)
                and not text[next_start].islower()
            ):
                spans.append((sentence_start, end))
                sentence_start = next_start
        spans.append((sentence_start, words[last - 1][1]))
        return spans

    def _refine(self, start: int, end: int) -> list[tuple[int, int]]:
        """Split a piece that does not fit alone: into words, or into characters if one word."""
        first = bisect.bisect_left(self.word_starts, start)
        last = bisect.bisect_left(self.word_starts, end)
        if last - first > 1:
            return [(max(start, s), min(end, e)) for s, e in self.words[first:last]]
        cuts = _cut_points(self.text, start, end, 1)
        return list(itertools.pairwise(cuts))

    def _split_paragraph(self, first: int, last: int) -> list[tuple[int, int]]:
        pieces = self._sentences(first, last)
        chunks: list[tuple[int, int]] = []
        index = 0
        chunk_start: int | None = None
        while index < len(pieces):
            start, end = pieces[index]
            if chunk_start is None:
                chunk_start = start
            if not self.fits(chunk_start, end):
                if chunk_start != start:  # an overlap that no longer fits: start at the piece
                    chunk_start = start
                    continue
                refined = self._refine(start, end)
                if len(refined) > 1:
                    pieces[index : index + 1] = refined
                    continue
                # One character over the limit cannot be cut further: it becomes a chunk.
                chunks.append((start, end))
                chunk_start = None
                index += 1
                continue
            # Gallop, then binary search, for the last piece that still fits with this start.
            best, step = index, 1
            while best + step < len(pieces) and self.fits(chunk_start, pieces[best + step][1]):
                best += step
                step *= 2
            high = min(best + step, len(pieces))  # pieces[high] does not fit, or high == len
            while high - best > 1:
                middle = (best + high) // 2
                if self.fits(chunk_start, pieces[middle][1]):
                    best = middle
                else:
                    high = middle
            chunk_end = pieces[best][1]
            chunks.append((chunk_start, chunk_end))
            index = best + 1
            chunk_start = self._overlap_start(chunk_start, chunk_end, pieces, index, first)
        return chunks

    def _overlap_start(
        self,
        previous_start: int,
        previous_end: int,
        pieces: list[tuple[int, int]],
        index: int,
        paragraph_first: int,
    ) -> int | None:
        """Where the next chunk starts with overlap, or None to start at the next piece."""
        overlap = self.config.overlap_words
        if overlap == 0 or index >= len(pieces):
            return None
        done = bisect.bisect_right(self.word_ends, previous_end)  # words ending in the chunk
        floor = max(paragraph_first, bisect.bisect_left(self.word_starts, previous_start) + 1)
        next_end = pieces[index][1]
        while overlap > 0:
            word = max(floor, done - overlap)
            if word >= done:
                return None
            start = self.words[word][0]
            if start < pieces[index][0] and self.fits(start, next_end):
                return start
            overlap //= 2
        return None


def chunk_document(
    doc: Document, config: ChunkingConfig | None = None, tokenizer: Tokenizer | None = None
) -> list[Passage]:
    """Cut one document into passages with ids ``f"{doc.id}#{i}"`` (verbatim slices of its text).

    ``tokenizer`` is required with ``unit="tokens"`` (a callable ``str -> list[int]`` or an object
    with ``.encode``) and ignored with ``unit="words"``.
    """
    if not isinstance(doc, Document):
        raise CorpusError(
            f"chunk_document needs a Document, got {type(doc).__name__}; build one with "
            f"Document(id=..., text=...) or Document.from_mapping(...)."
        )
    config = config if config is not None else ChunkingConfig()
    if not isinstance(config, ChunkingConfig):
        raise CorpusError(
            f"chunking must be a ChunkingConfig or None, got {type(config).__name__}; give e.g. "
            f"ChunkingConfig(max_words=200)."
        )
    if config.unit == "tokens":
        if tokenizer is None:
            raise CorpusError(
                f'ChunkingConfig(unit="tokens") needs a tokenizer to count tokens, got none while '
                f"chunking document {doc.id!r}; pass tokenizer=your_tokenizer or use "
                f'unit="words".'
            )
    else:
        tokenizer = None
    spans = _Chunker(doc.text, config, tokenizer).chunks()
    return [
        Passage(
            id=f"{doc.id}#{i}",
            doc_id=doc.id,
            title=doc.title,
            text=doc.text[start:end],
            metadata=doc.metadata,  # type: ignore[arg-type]
        )
        for i, (start, end) in enumerate(spans)
    ]


# --------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------


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
        with file.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(
                        f"{file}, line {line_number}: not valid JSON ({exc.msg} at column "
                        f'{exc.colno}); each line must be one object like {{"id": ..., '
                        f'"doc_id": ..., "title": ..., "text": ..., "metadata": {{}}}}.'
                    ) from exc
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
