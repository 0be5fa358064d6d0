"""Cutting documents into passages (``chunk_document``, configured by ``ChunkingConfig``).

A document is split into paragraphs on blank lines; whole paragraphs are packed greedily into one
chunk while they fit the limit. A paragraph over the limit gets chunks of its own: it is cut at
sentence ends, a sentence over the limit is cut between words (see ``corpus.words``), and (only
with ``unit="tokens"``) a word over the limit is cut between characters.
"""

from __future__ import annotations

import bisect
import inspect
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.validation import checked_int

from .documents import Document, Passage
from .words import cut_points, word_spans


class _Encoder(Protocol):
    def encode(self, text: str, /) -> Sequence[int]: ...


#: A tokenizer for ``unit="tokens"``: a callable ``str -> list[int]`` or an object with ``.encode``
#: (a Hugging Face tokenizer is called with ``add_special_tokens=False``).
Tokenizer = Callable[[str], Sequence[int]] | _Encoder

_PARAGRAPH_BREAK_RE = re.compile("\n[^\\S\n]*\n|\u2029")
_SENTENCE_END_RE = re.compile("[.!?\u2026][\"'\u2019\u201d)\\]]*$")
_CJK_SENTENCE_END_RE = re.compile("[\u3002\uff01\uff1f][\"'\u2019\u201d\u300d\u300f)\\]]*$")


@dataclass(frozen=True)
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
        checked_int(self.max_words, "ChunkingConfig.max_words", error=CorpusError)
        if self.unit == "tokens":
            if self.max_tokens is None:
                raise CorpusError(
                    'ChunkingConfig(unit="tokens") needs max_tokens, got None; give e.g. '
                    'ChunkingConfig(unit="tokens", max_tokens=256).'
                )
            checked_int(self.max_tokens, "ChunkingConfig.max_tokens", error=CorpusError)
        elif self.max_tokens is not None:
            raise CorpusError(
                f'ChunkingConfig.max_tokens is only used with unit="tokens", got '
                f'max_tokens={self.max_tokens!r} with unit="words"; set unit="tokens" or drop '
                f"max_tokens."
            )
        checked_int(
            self.overlap_words, "ChunkingConfig.overlap_words", minimum=0, error=CorpusError
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
        self.words = word_spans(text)
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
        cuts = cut_points(self.text, start, end, 1)
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
