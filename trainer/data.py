"""The training data of Self-Retrieval: indexing, supervised, answer and self-assessment examples.

Four kinds of examples teach one model the whole retrieval job (see ``docs/method.md``):

``indexing``
    Internalizes the corpus. Each sentence of a passage (5 to 50 words) is a pseudo-query whose
    target is the start of the passage's trie key (title segment, then passage). The target is cut
    where the trie identifies the passage (its *unique depth*), but never before the title segment
    plus ``extra_tokens`` passage tokens: long enough to name exactly one passage and to start the
    passage itself. The research code instead used a fixed "title + 10 words", which may stop
    before the passage is identified (retrieval then has to guess the rest) and wastes tokens on
    passages identified by their title alone.
``supervised``
    A real training query with one relevant passage: the same cut target (or the whole passage).
``answer``
    The same query and passage followed by the answer after ``Final answer:``; the loss is on the
    answer only. Produced when answers are known.
``assessment``
    Self-assessment: a query with a *negative* passage is labelled with the template's refusal
    (``cannot extract answer``); with a *positive* one, with the answer or, when none is known,
    the template's affirmation, so the refusal is not simply learnt as "always".

Every target is a prefix of ``Renderer.encode_target`` (the function that also makes the trie
keys), so the ids a model learns are, token for token, the ids the trie allows. Everything is
deterministic for a seed and uses only local random generators; per-passage and per-query
choices are seeded by the passage or query id, so adding documents does not change the choices
made for the others.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from selfretrieval_integrations.corpus import Corpus, count_words, cut_words
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.index import PassageTrie
from selfretrieval_integrations.retrieval import (
    IGNORE_INDEX,
    AssessmentConfig,
    EncodedExample,
    EncodedTarget,
    Renderer,
)

__all__ = [
    "MixConfig",
    "NegativeSampling",
    "TrainingSet",
    "answers_from_metadata",
    "assessment_examples",
    "build_training_set",
    "indexing_examples",
    "replay_sample",
    "split_sentences",
    "supervised_examples",
    "unique_depths",
]

DEFAULT_MAX_PASSAGE_WORDS: int = AssessmentConfig.max_passage_words
"""Passages of assessment examples are cut like self-assessment cuts them at retrieval time."""

_MAX_LISTED = 5
# Candidate lists up to this size are sampled exactly; larger corpora use rejection sampling.
_EXACT_SAMPLING_LIMIT = 4096


# --------------------------------------------------------------------------------------------------
# Sentences and words
# --------------------------------------------------------------------------------------------------

_CLOSERS = "\"'\u201d\u2019\u00bb)\\]}\u300d\u300f\uff09\u3011\u3015\u300b"
_OPENERS = "\"'\u201c\u2018\u00ab([{"
# A sentence end: CJK full stops need no space after them; Latin ones need whitespace after.
_END_RE = re.compile(
    f"[\u3002\uff01\uff1f\uff61\uff0e]+[{_CLOSERS}]*|[.!?\u2026]+[{_CLOSERS}]*(?= )"
)
_CJK_STOPS = frozenset("\u3002\uff01\uff1f\uff61\uff0e")
_LIST_MARKER_RE = re.compile(r"^(?:[-*\u2022\u25aa\u2013\u2014]\s|\(?\w{1,3}[.)]\s)")
_LOWER_DOTTED_RE = re.compile(r"^(?:[a-z]\.)+[a-z]$")  # e.g / i.e / a.m (last dot is the end)
_UPPER_DOTTED_RE = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S / Ph.D / D.C
_ROMAN_RE = re.compile(r"^[IVXLCDM]+$|^[ivxlcdm]+$")
_HAS_WORD_RE = re.compile(r"\w")
_JOINS_NEXT_LINE = tuple(",;-\u2013\u2014(/&")

#: Words that a period follows without ending the sentence (case-sensitive).
_NON_FINAL_ABBREVIATIONS = frozenset(
    """
    Mr Mrs Ms Mx Dr Prof Sr Sra Srta St Ste Mt Ft Gen Gov Sen Rep Pres Rev Hon Capt Cpt Col Lt
    Sgt Maj Cmdr Adm Brig Fr Msgr Supt Insp Det Pvt Cpl No Nos no nos Fig Figs fig figs Vol Vols
    vol vols Ch ch Eq eq Eqs Art art Sec sec Sect Para para Ref ref Refs pp p ed eds Ed Eds vs v
    cf approx ca viz al Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Mon Tue Tues Wed Thu
    Thur Thurs Fri Sat Sun Op op Nr nr Dept dept Univ Assn Ave Blvd Rd
    """.split()  # noqa: SIM905 - a word list reads better as text
)

#: Capitalised words that commonly start a sentence: after an initial ("John F. Kennedy") or a
#: dotted acronym ("the U.S. Army"), a period ends the sentence only before one of these.
_SENTENCE_STARTERS = frozenset(
    """
    A An The This That These Those There Here It Its He She His Her They Their Them We Our I You
    Your In On At As By For From To Of With Without After Before When While Where If Since
    Although Though Because But And Or So Yet Then Thus However Therefore Moreover Also Both Each
    Every All Some Many Most Several Such Other Another One Two Three Today Later During Despite
    Following Under Over Between Among Nevertheless Meanwhile Instead Finally First Later Since
    What Who Which How Why Unlike Like Not No Only Even
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def _blocks(text: str) -> list[str]:
    """Lines of ``text`` grouped into blocks that sentences can not cross.

    A blank line always ends a block. A single line break ends one too (headings, list items,
    table rows, verses), except when the next line starts with a lowercase letter or the line
    ends with ``, ; - ( / &``: that is a hard-wrapped sentence and the lines are joined.
    """
    blocks: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                blocks.append(" ".join(current))
                current = []
            continue
        wrapped = (
            current
            and not _LIST_MARKER_RE.match(line)
            and (line[0].islower() or current[-1].endswith(_JOINS_NEXT_LINE))
        )
        if current and not wrapped:
            blocks.append(" ".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append(" ".join(current))
    return blocks


def _ends_sentence(block: str, sentence_start: int, match: re.Match[str]) -> bool:
    punct = match.group()
    if punct[0] in _CJK_STOPS:
        return True
    after = block[match.end() :].lstrip()
    if not after or after[0].islower():
        return not after  # "Yahoo! is", "approx. five", unknown abbreviations: no end
    terminator = punct.rstrip(_CLOSERS)
    if terminator != ".":
        return True  # ! ? ... and ellipses before a capital, a digit or a quote
    before = block[sentence_start : match.start()]
    word = before.rsplit(" ", 1)[-1].lstrip(_OPENERS)
    if word in _NON_FINAL_ABBREVIATIONS or _LOWER_DOTTED_RE.match(word):
        return False  # "Dr. Smith", "e.g. Paris"
    next_word = after.split(" ", 1)[0].strip(_OPENERS + _CLOSERS + ",;:")
    if _UPPER_DOTTED_RE.match(word) or (len(word) == 1 and word.isupper()):
        return next_word in _SENTENCE_STARTERS  # "the U.S. Army" / "the U.S. The"; initials
    # A list marker at the start ("1. Preheat", "a. First", "IV. Results") ends nothing.
    at_start = word == before.strip()
    return not (at_start and (word.isdigit() or len(word) == 1 or _ROMAN_RE.match(word)))


def _split_block(block: str) -> list[str]:
    block = " ".join(block.split())
    sentences: list[str] = []
    start = 0
    for match in _END_RE.finditer(block):
        if match.end() <= start or not _ends_sentence(block, start, match):
            continue
        sentences.append(block[start : match.end()].strip())
        start = match.end()
    sentences.append(block[start:].strip())
    return sentences


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, offline and deterministically (regular expressions only).

    Inner whitespace of each sentence is collapsed to single spaces; fragments without any letter
    or digit are dropped. Handled:

    - ``.``, ``!``, ``?`` and ellipses followed by whitespace, with closing quotes or brackets
      kept on the sentence they close (``He said "Stop." Then ...``);
    - CJK full stops ``。！？`` (also full-width ``．`` and half-width ``｡``), which need no space;
    - decimals, versions, URLs and e-mail addresses (no space after the period, so no end);
    - common abbreviations that precede a name or a number (``Dr.``, ``Mr.``, ``St.``, ``No.``,
      ``Fig.``, ``vs.``, ``approx.``, months, ...) and lowercase dotted ones (``e.g.``, ``i.e.``,
      ``a.m.``);
    - initials and dotted acronyms (``John F. Kennedy``, ``the U.S. Army``): they end a sentence
      only when a common sentence-starting word follows (``... in the U.S. The ...``);
    - a period followed by a lowercase word never ends a sentence (``approx. five``);
    - list markers at the start of a line (``1. ``, ``a) ``, ``- ``);
    - line breaks: a blank line always ends a sentence, a single line break too unless the text
      is hard-wrapped (next line starts in lowercase, or the line ends with ``,;-(/&``).

    Limits: it is a heuristic, not a trained segmenter (like NLTK's punkt, which would need a
    download). Unknown abbreviations followed by a capitalised name split (``Acme Corp. Chairman``
    gives two sentences); a sentence ending in an initial or acronym before a word not in the
    starter list is merged with the next one (``... vitamin C. Lemons ...``); sentences starting
    with a lowercase letter (``... end. iPhones ...``) merge with the previous one; Thai, Lao,
    Khmer and other scripts without sentence punctuation come back as one sentence per line.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences takes a str, got {type(text).__name__}")
    sentences: list[str] = []
    for block in _blocks(text):
        sentences.extend(s for s in _split_block(block) if _HAS_WORD_RE.search(s))
    return sentences


# --------------------------------------------------------------------------------------------------
# Trie depths and targets
# --------------------------------------------------------------------------------------------------


def unique_depths(trie: PassageTrie) -> np.ndarray:
    """For each passage index, the number of target tokens that identify it in ``trie``.

    It is the depth of the passage's leaf: the shortest prefix of its key that no other (different)
    key shares. Passages with identical keys share a leaf, whose depth is the whole key.
    """
    return np.asarray(trie.unique_depths(), dtype=np.int64)


def _check_depths(depths: Sequence[int] | np.ndarray, corpus: Corpus) -> np.ndarray:
    array = np.asarray(depths)
    if array.shape != (len(corpus),) or (array.size and array.dtype.kind not in "iu"):
        raise CorpusError(
            f"depths has shape {array.shape} and dtype {array.dtype}; it must hold one integer per "
            f"passage of the corpus ({len(corpus)}): use unique_depths(trie) with the trie built "
            "from this corpus"
        )
    return array.astype(np.int64)


def _cut_length(target: EncodedTarget, depth: int, extra_tokens: int) -> int:
    """Target tokens to train on: identify the passage and start its text, never past the EOS."""
    return min(len(target.ids), max(int(depth), target.title_length + extra_tokens))


class _Targets:
    """Encodes passage targets lazily, once each, and optionally checks them against the trie."""

    def __init__(
        self,
        renderer: Renderer,
        corpus: Corpus,
        depths: np.ndarray,
        extra_tokens: int,
        trie: PassageTrie | None = None,
    ) -> None:
        self.renderer = renderer
        self.corpus = corpus
        self.depths = depths
        self.extra_tokens = extra_tokens
        self.trie = trie
        self._cache: dict[int, EncodedTarget] = {}

    def target(self, p: int) -> EncodedTarget:
        found = self._cache.get(p)
        if found is None:
            passage = self.corpus[p]
            found = self._cache[p] = self.renderer.encode_target(passage.title, passage.text)
            depth = int(self.depths[p])
            if depth > len(found.ids) or (
                self.trie is not None and p not in self.trie.passage_ids_for_prefix(found.ids)
            ):
                raise CorpusError(
                    f"the trie does not hold passage {p} ({passage.id!r}) as this renderer "
                    "encodes it: the trie was built from another corpus, tokenizer or template; "
                    "rebuild it with selfretrieval_integrations.model.build_trie(tokenizer, "
                    "template, corpus)"
                )
        return found

    def cut(self, p: int) -> int:
        return _cut_length(self.target(p), int(self.depths[p]), self.extra_tokens)


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Indexing examples
# --------------------------------------------------------------------------------------------------


def _pseudo_queries(
    text: str, passage_key: str, *, seed: int, min_words: int, max_words: int, limit: int | None
) -> list[str]:
    sentences = list(dict.fromkeys(split_sentences(text)))
    chosen = [s for s in sentences if min_words <= count_words(s) <= max_words]
    if not chosen:
        chosen = [cut_words(sentences[0] if sentences else text.strip(), max_words)]
    if limit is not None and len(chosen) > limit:
        rng = random.Random(f"{seed}\x00indexing\x00{passage_key}")
        keep = sorted(rng.sample(range(len(chosen)), limit))
        chosen = [chosen[i] for i in keep]
    return chosen


def _indexing(
    targets: _Targets,
    passages: Iterable[int],
    *,
    seed: int,
    min_words: int,
    max_words: int,
    max_per_passage: int | None,
) -> list[EncodedExample]:
    renderer, corpus = targets.renderer, targets.corpus
    examples: list[EncodedExample] = []
    for p in passages:
        passage = corpus[p]
        target, cut = targets.target(p), targets.cut(p)
        queries = _pseudo_queries(
            passage.text,
            passage.id,
            seed=seed,
            min_words=min_words,
            max_words=max_words,
            limit=max_per_passage,
        )
        for query in queries:
            example = renderer.example(query, target, prefix_length=cut)
            example.metadata = {"kind": "indexing", "passage": p}
            examples.append(example)
    return examples


def indexing_examples(
    renderer: Renderer,
    corpus: Corpus,
    depths: Sequence[int] | np.ndarray,
    *,
    seed: int,
    min_words: int = 5,
    max_words: int = 50,
    max_per_passage: int | None = None,
    extra_tokens: int = 8,
    passages: Sequence[int] | None = None,
) -> list[EncodedExample]:
    """Self-supervised examples: each sentence of a passage retrieves the passage.

    Sentences of ``min_words`` to ``max_words`` words are the queries; a passage with none in that
    range uses its first sentence cut to ``max_words`` words. ``max_per_passage`` keeps a seeded
    sample of that many sentences per passage. The target is the passage's trie key cut to
    ``max(depths[p], title_length + extra_tokens)`` tokens (at most the whole key with its EOS).
    ``depths`` is ``unique_depths(trie)``; ``passages`` restricts the examples to these passage
    indices (all by default). Examples come in passage order, then sentence order.
    """
    min_words = _check_count(min_words, "min_words", 1)
    max_words = _check_count(max_words, "max_words", min_words)
    if max_per_passage is not None:
        max_per_passage = _check_count(max_per_passage, "max_per_passage", 1)
    extra_tokens = _check_count(extra_tokens, "extra_tokens", 0)
    targets = _Targets(renderer, corpus, _check_depths(depths, corpus), extra_tokens)
    return _indexing(
        targets,
        _checked_passages(passages, corpus),
        seed=seed,
        min_words=min_words,
        max_words=max_words,
        max_per_passage=max_per_passage,
    )


def _checked_passages(passages: Sequence[int] | None, corpus: Corpus) -> list[int]:
    if passages is None:
        return list(range(len(corpus)))
    if isinstance(passages, (str, bytes)):
        raise CorpusError(f"passages must be a sequence of passage indices, got {passages!r}")
    chosen: list[int] = []
    bad: list[object] = []
    for value in passages:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or not 0 <= value < len(corpus)
        ):
            bad.append(value)
        else:
            chosen.append(int(value))
    if bad:
        raise CorpusError(
            f"passages holds {len(bad)} invalid passage indices ({_listed(bad)}); give ints in "
            f"[0, {len(corpus)}) (corpus.index_of(passage_id) converts an id)"
        )
    return list(dict.fromkeys(chosen))


def _listed(items: Sequence[object]) -> str:
    shown = ", ".join(repr(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# --------------------------------------------------------------------------------------------------
# Queries, qrels and answers
# --------------------------------------------------------------------------------------------------


def answers_from_metadata(metadata: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Query id -> answers, from ``load_beir_query_metadata`` (its ``"answers"`` entries)."""
    answers: dict[str, list[str]] = {}
    for qid, meta in metadata.items():
        found = _clean_answers((meta or {}).get("answers"))
        if found:
            answers[qid] = found
    return answers


def _clean_answers(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise CorpusError(f"answers must be a list of strings, got {type(value).__name__}")
    cleaned = []
    for answer in value:
        if not isinstance(answer, str):
            raise CorpusError(f"answers must be strings, got {type(answer).__name__} {answer!r}")
        if answer.strip():
            cleaned.append(answer.strip())
    return cleaned


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _contains_answer(text: str, normed_answers: Sequence[str]) -> bool:
    if not normed_answers:
        return False
    normed = _norm(text)
    return any(answer in normed for answer in normed_answers)


def _pick_answer(answers: Sequence[str], text: str) -> str:
    """The first answer found in ``text`` (extractive, grounded), else the first answer."""
    normed = _norm(text)
    for answer in answers:
        if _norm(answer) in normed:
            return answer
    return answers[0]


@dataclass
class _Query:
    qid: str
    text: str
    positives: list[int]
    answers: list[str]

    @property
    def normed_answers(self) -> list[str]:
        return [_norm(a) for a in self.answers]


@dataclass
class _Resolved:
    queries: list[_Query]
    skipped_no_qrels: int
    qrels_documents: int = 0
    qrels_passages: int = 0


def _resolve(
    corpus: Corpus,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    answers: Mapping[str, Sequence[str] | str] | None,
) -> _Resolved:
    """Map qrels (document or passage ids) to positive passage indices, query by query."""
    if not isinstance(queries, Mapping):
        raise CorpusError(f"queries must map query id -> text, got {type(queries).__name__}")
    if not isinstance(qrels, Mapping):
        raise CorpusError(
            f"qrels must map query id -> {{corpus id: relevance}}, got {type(qrels).__name__}"
        )
    if answers is not None and not isinstance(answers, Mapping):
        raise CorpusError(f"answers must map query id -> list of answers, got {type(answers)}")
    unknown_queries = [qid for qid in qrels if qid not in queries]
    if unknown_queries:
        raise CorpusError(
            f"qrels name {len(unknown_queries)} query ids that are not in queries: "
            f"{_listed(unknown_queries)}; give the queries of every qrels entry (did you load "
            "another split's queries?)"
        )
    doc_ids = set(corpus.doc_ids())
    unknown_ids: list[str] = []
    for judged in qrels.values():
        if not isinstance(judged, Mapping):
            raise CorpusError(
                f"each qrels entry must map corpus id -> relevance, got {type(judged).__name__}"
            )
        for cid in judged:
            if cid not in corpus and cid not in doc_ids:
                unknown_ids.append(cid)
    if unknown_ids:
        unknown_ids = list(dict.fromkeys(unknown_ids))
        raise CorpusError(
            f"qrels name {len(unknown_ids)} corpus ids that are neither passage ids nor document "
            f"ids of this corpus: {_listed(unknown_ids)}; qrels must refer to the corpus the model "
            "is trained on (corpus.doc_ids() and corpus.passage_ids list the valid ids)"
        )
    resolved: list[_Query] = []
    skipped = n_docs = n_passages = 0
    for qid, text in queries.items():
        judged = qrels.get(qid) or {}
        relevant = [cid for cid, rel in judged.items() if _relevance(rel, qid, cid) > 0]
        if not relevant:
            skipped += 1
            continue
        query_answers = _clean_answers(answers.get(qid)) if answers is not None else []
        normed = [_norm(a) for a in query_answers]
        positives: list[int] = []
        for cid in relevant:
            if cid in corpus:
                n_passages += 1
                positives.append(corpus.index_of(cid))
                continue
            n_docs += 1
            chunks = corpus.passages_of(cid)
            if len(chunks) > 1 and normed:
                with_answer = [p for p in chunks if _contains_answer(corpus[p].text, normed)]
                chunks = with_answer or chunks
            positives.extend(chunks)
        resolved.append(_Query(qid, text, list(dict.fromkeys(positives)), query_answers))
    return _Resolved(resolved, skipped, n_docs, n_passages)


def _relevance(value: object, qid: str, cid: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CorpusError(
            f"qrels[{qid!r}][{cid!r}] must be a number (relevance), got {type(value).__name__}"
        )
    return float(value)


# --------------------------------------------------------------------------------------------------
# Supervised examples
# --------------------------------------------------------------------------------------------------


def _supervised(
    targets: _Targets,
    resolved: _Resolved,
    *,
    full_target: bool,
    max_passage_words: int,
) -> list[EncodedExample]:
    renderer, corpus = targets.renderer, targets.corpus
    examples: list[EncodedExample] = []
    for query in resolved.queries:
        for p in query.positives:
            target = targets.target(p)
            cut = None if full_target else targets.cut(p)
            example = renderer.example(query.text, target, prefix_length=cut)
            example.metadata = {"kind": "supervised", "query": query.qid, "passage": p}
            examples.append(example)
            if query.answers:
                passage = corpus[p]
                text = cut_words(passage.text, max_passage_words)
                answer = _pick_answer(query.answers, text)
                example = renderer.assessment_example(query.text, passage.title, text, answer)
                example.metadata = {"kind": "answer", "query": query.qid, "passage": p}
                examples.append(example)
    return examples


def supervised_examples(
    renderer: Renderer,
    corpus: Corpus,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    answers: Mapping[str, Sequence[str]] | None,
    *,
    depths: Sequence[int] | np.ndarray,
    full_target: bool = False,
    extra_tokens: int = 8,
    max_passage_words: int = DEFAULT_MAX_PASSAGE_WORDS,
) -> list[EncodedExample]:
    """Examples from real queries: one per (query, relevant passage), plus one with the answer.

    The retrieval example's target is cut like an indexing target (or is the whole passage with
    ``full_target``). When the query has answers, a second example teaches the answer after the
    passage (cut to ``max_passage_words`` words as self-assessment does), with the loss on the
    answer only; the answer is the first one found in the passage, else the first one.

    Corpus ids in ``qrels`` may be passage ids or document ids; a document stands for its
    passages (those containing an answer when answers are known and some do, else all). Relevance
    <= 0 is ignored, and so are queries without positive qrels. Unknown query, passage or
    document ids raise ``CorpusError``.
    """
    extra_tokens = _check_count(extra_tokens, "extra_tokens", 0)
    max_passage_words = _check_count(max_passage_words, "max_passage_words", 1)
    targets = _Targets(renderer, corpus, _check_depths(depths, corpus), extra_tokens)
    resolved = _resolve(corpus, queries, qrels, answers)
    return _supervised(
        targets, resolved, full_target=full_target, max_passage_words=max_passage_words
    )


# --------------------------------------------------------------------------------------------------
# Self-assessment examples
# --------------------------------------------------------------------------------------------------


class NegativeSampling(str, Enum):
    """Where the negative passages of self-assessment examples come from."""

    SAME_DOC = "same_doc"
    """Other passages of the relevant document (the paper's choice), without the answer; then
    passages of other documents with the same title (paragraph-level documents of one article)."""
    BM25 = "bm25"
    """The best BM25 matches of the query (title + text) that are not relevant: hard negatives."""
    MIXED = "mixed"
    """Half from each (an odd one is drawn at random)."""


def _negative_sampling(value: object) -> NegativeSampling:
    try:
        return NegativeSampling(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in NegativeSampling)
        raise ValueError(f"negatives must be one of {allowed}, got {value!r}") from None


def _bm25_ranked(corpus: Corpus, queries: Sequence[str], k: int) -> list[list[int]]:
    """For each query, passage indices with a positive BM25 score, best first (at most ``k``).

    Uses the project's BM25 baseline (bm25s over title + text, imported only when needed).
    """
    from selfretrieval_integrations.index import BM25Index

    if not queries:
        return []
    indices, scores = BM25Index(list(corpus)).search(queries, k)
    return [
        [int(d) for d, s in zip(row_docs, row_scores, strict=True) if s > 0]
        for row_docs, row_scores in zip(indices, scores, strict=True)
    ]


class _NegativePools:
    """Candidate negatives by source; every candidate passes ``usable`` (not relevant, ...)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._by_title: dict[str, list[int]] | None = None

    def same_doc(self, positives: Sequence[int]) -> list[int]:
        docs = dict.fromkeys(self.corpus[p].doc_id for p in positives)
        return [q for doc in docs for q in self.corpus.passages_of(doc)]

    def same_title(self, positives: Sequence[int]) -> list[int]:
        if self._by_title is None:
            by_title: dict[str, list[int]] = {}
            for index, passage in enumerate(self.corpus):
                if passage.title:
                    by_title.setdefault(passage.title, []).append(index)
            self._by_title = by_title
        titles = dict.fromkeys(self.corpus[p].title for p in positives if self.corpus[p].title)
        return [q for title in titles for q in self._by_title.get(title, [])]

    def random(self, rng: random.Random, k: int, usable: Callable[[int], bool]) -> list[int]:
        n = len(self.corpus)
        if n <= _EXACT_SAMPLING_LIMIT:
            candidates = [q for q in range(n) if usable(q)]
            return rng.sample(candidates, min(k, len(candidates)))
        chosen: dict[int, None] = {}
        for _ in range(50 * k + 100):
            q = rng.randrange(n)
            if q not in chosen and usable(q):
                chosen[q] = None
                if len(chosen) == k:
                    break
        return list(chosen)


@dataclass
class _AssessmentInfo:
    positives: int = 0
    negatives: int = 0
    negatives_missing: int = 0
    sources: dict[str, int] = field(default_factory=dict)


def _assessment(
    renderer: Renderer,
    corpus: Corpus,
    resolved: _Resolved,
    *,
    seed: int,
    negatives: NegativeSampling,
    n_negatives: int,
    max_passage_words: int,
    positives: bool = True,
    skip_positive: Callable[[str, int], bool] | None = None,
) -> tuple[list[EncodedExample], _AssessmentInfo]:
    template = renderer.template
    pools = _NegativePools(corpus)
    info = _AssessmentInfo(sources={})
    ranked: dict[str, list[int]] = {}
    if n_negatives and negatives is not NegativeSampling.SAME_DOC and resolved.queries:
        extra = max(len(q.positives) for q in resolved.queries)
        k = n_negatives * extra * 2 + extra + 10
        rows = _bm25_ranked(corpus, [q.text for q in resolved.queries], k)
        ranked = {q.qid: row for q, row in zip(resolved.queries, rows, strict=True)}
    examples: list[EncodedExample] = []

    def add(query: str, p: int, answer: str, metadata: dict[str, Any]) -> None:
        passage = corpus[p]
        text = cut_words(passage.text, max_passage_words)
        example = renderer.assessment_example(query, passage.title, text, answer)
        example.metadata = metadata
        examples.append(example)

    for query in resolved.queries:
        if positives:
            for p in query.positives:
                if skip_positive is not None and skip_positive(query.qid, p):
                    continue
                text = cut_words(corpus[p].text, max_passage_words)
                answer = (
                    _pick_answer(query.answers, text) if query.answers else template.affirmation
                )
                meta = {"kind": "assessment", "label": "positive", "query": query.qid, "passage": p}
                add(query.text, p, answer, meta)
                info.positives += 1
        need = n_negatives * len(query.positives)
        if not need:
            continue
        rng = random.Random(f"{seed}\x00assessment\x00{query.qid}")
        chosen = _draw_negatives(query, pools, ranked.get(query.qid, []), rng, negatives, need)
        info.negatives_missing += need - len(chosen)
        for p, source in chosen:
            info.sources[source] = info.sources.get(source, 0) + 1
            meta = {
                "kind": "assessment",
                "label": "negative",
                "query": query.qid,
                "passage": p,
                "source": source,
            }
            add(query.text, p, template.refusal, meta)
            info.negatives += 1
    return examples, info


def _draw_negatives(
    query: _Query,
    pools: _NegativePools,
    bm25_ranked: list[int],
    rng: random.Random,
    negatives: NegativeSampling,
    need: int,
) -> list[tuple[int, str]]:
    corpus = pools.corpus
    excluded = set(query.positives)
    normed = query.normed_answers
    chosen: dict[int, str] = {}

    def usable(p: int) -> bool:
        return (
            p not in excluded and p not in chosen and not _contains_answer(corpus[p].text, normed)
        )

    def take(candidates: Iterable[int], k: int, source: str, *, shuffle: bool) -> None:
        pool = [p for p in dict.fromkeys(candidates) if usable(p)]
        if shuffle:
            rng.shuffle(pool)
        for p in pool[: max(0, k)]:
            chosen[p] = source

    def same_doc(k: int) -> None:
        target = len(chosen) + k
        take(pools.same_doc(query.positives), k, "same_doc", shuffle=True)
        take(pools.same_title(query.positives), target - len(chosen), "same_title", shuffle=True)

    def bm25(k: int) -> None:
        take(bm25_ranked, k, "bm25", shuffle=False)  # best ranked first

    if negatives is NegativeSampling.SAME_DOC:
        same_doc(need)
    elif negatives is NegativeSampling.BM25:
        bm25(need)
    else:
        n_bm25 = need // 2 + (need % 2 if rng.random() < 0.5 else 0)
        bm25(n_bm25)
        same_doc(need - len(chosen))
        bm25(need - len(chosen))  # a short same-document pool is filled with BM25 negatives
    if len(chosen) < need:
        for p in pools.random(rng, need - len(chosen), usable):
            chosen[p] = "random"
    return list(chosen.items())


def assessment_examples(
    renderer: Renderer,
    corpus: Corpus,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    answers: Mapping[str, Sequence[str]] | None,
    *,
    seed: int,
    negatives: NegativeSampling | str = "same_doc",
    n_negatives: int = 1,
    max_passage_words: int = DEFAULT_MAX_PASSAGE_WORDS,
    positives: bool = True,
) -> list[EncodedExample]:
    """Self-assessment examples: the refusal after negative passages, the answer after positive.

    For each (query, relevant passage) pair: a positive example labelled with the answer (the
    first one found in the passage, else the first one) or, without answers, the template's
    affirmation; and ``n_negatives`` negatives labelled with the template's refusal. Negatives
    are never relevant passages of the query, never contain one of its answers, and are distinct
    within a query. Sources, by ``negatives``:

    - ``"same_doc"``: other passages of the relevant documents, then passages of other documents
      with the same title (a corpus of one document per paragraph, like SQuAD's);
    - ``"bm25"``: the best-ranked BM25 matches (title + text, index built once per call);
    - ``"mixed"``: half from each.

    When a source runs short (single-passage documents, a tiny corpus), random passages of other
    documents fill in; a corpus with nothing left yields fewer negatives. Passages are cut to
    ``max_passage_words`` words exactly as self-assessment cuts them at retrieval time. Examples
    are in query order; ``metadata["source"]`` tells where each negative came from.
    """
    n_negatives = _check_count(n_negatives, "n_negatives", 0)
    max_passage_words = _check_count(max_passage_words, "max_passage_words", 1)
    resolved = _resolve(corpus, queries, qrels, answers)
    examples, _ = _assessment(
        renderer,
        corpus,
        resolved,
        seed=seed,
        negatives=_negative_sampling(negatives),
        n_negatives=n_negatives,
        max_passage_words=max_passage_words,
        positives=positives,
    )
    return examples


# --------------------------------------------------------------------------------------------------
# The mix
# --------------------------------------------------------------------------------------------------


@dataclass
class MixConfig:
    """Which examples make up a training set, and how many of each."""

    indexing: bool = True
    """Train indexing examples (sentences of passages retrieve their passage)."""
    supervised_repeats: int = 2
    """Copies of each supervised and answer example (the paper repeats them twice); 0 drops
    them."""
    answer_repeats: int | None = None
    """Copies of each answer example when it should differ from ``supervised_repeats`` (None:
    the same). Answer examples carry a whole passage for a few target tokens, so they are most
    of the training tokens; one copy halves their cost."""
    assessment: bool = True
    """Train self-assessment examples (refusal after negatives, answer or affirmation after
    positives). Needs queries with qrels; positives with an answer example are not repeated."""
    n_negatives: int = 1
    """Negative passages per (query, relevant passage) pair."""
    negatives: NegativeSampling | str = NegativeSampling.SAME_DOC
    """Where negatives come from: ``"same_doc"``, ``"bm25"`` or ``"mixed"`` (NegativeSampling)."""
    indexing_per_passage: int | None = None
    """At most this many sentences per passage (a seeded sample); None keeps all of them."""
    indexing_fraction_with_queries: float = 1.0
    """Share of indexing examples kept (a seeded sample) when supervised examples exist; the
    paper's second stage mixes a sample of the indexing data with the supervised data."""
    extra_tokens: int = 8
    """Passage tokens trained after the title segment at least, even when fewer identify the
    passage (the target is cut at ``max(unique depth, title length + extra_tokens)``)."""
    seed: int = 0
    """Seed of every sampling choice and of the final shuffle."""
    min_words: int = 5
    """Shortest sentence (in words) used as an indexing query."""
    max_words: int = 50
    """Longest sentence (in words) used as an indexing query."""
    max_passage_words: int = DEFAULT_MAX_PASSAGE_WORDS
    """Passages of answer and assessment examples are cut to this many words (as at retrieval)."""
    supervised_full_target: bool = False
    """Train supervised examples on the whole passage instead of the identifying prefix."""

    def __post_init__(self) -> None:
        for name in ("indexing", "assessment", "supervised_full_target"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"MixConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )
        for name, minimum in (
            ("supervised_repeats", 0),
            ("n_negatives", 0),
            ("extra_tokens", 0),
            ("min_words", 1),
            ("max_passage_words", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"MixConfig.{name} must be an int >= {minimum}, got {value!r}")
        if isinstance(self.max_words, bool) or not isinstance(self.max_words, int):
            raise ValueError(f"MixConfig.max_words must be an int, got {self.max_words!r}")
        if self.max_words < self.min_words:
            raise ValueError(
                f"MixConfig.max_words ({self.max_words}) must be >= min_words ({self.min_words})"
            )
        if self.indexing_per_passage is not None and (
            isinstance(self.indexing_per_passage, bool)
            or not isinstance(self.indexing_per_passage, int)
            or self.indexing_per_passage < 1
        ):
            raise ValueError(
                "MixConfig.indexing_per_passage must be None (all sentences) or an int >= 1, "
                f"got {self.indexing_per_passage!r}"
            )
        if self.answer_repeats is not None and (
            isinstance(self.answer_repeats, bool)
            or not isinstance(self.answer_repeats, int)
            or self.answer_repeats < 0
        ):
            raise ValueError(
                f"MixConfig.answer_repeats must be None or an int >= 0, got {self.answer_repeats!r}"
            )
        fraction = self.indexing_fraction_with_queries
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction <= 1.0
        ):
            raise ValueError(
                "MixConfig.indexing_fraction_with_queries must be a number in [0, 1], got "
                f"{fraction!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"MixConfig.seed must be an int, got {self.seed!r}")
        self.negatives = _negative_sampling(self.negatives)
        if not (self.indexing or self.supervised_repeats or self.assessment):
            raise ValueError(
                "MixConfig turns every kind of example off; keep indexing=True, "
                "supervised_repeats >= 1 or assessment=True"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["negatives"] = _negative_sampling(self.negatives).value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixConfig:
        """Inverse of ``to_dict``; unknown keys (from newer versions) warn and are ignored."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            warnings.warn(
                f"MixConfig ignores unknown keys {unknown} (written by a newer version?)",
                stacklevel=2,
            )
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainingSet:
    """Encoded, shuffled training examples and what they are made of."""

    examples: list[EncodedExample]
    stats: dict[str, Any]

    def __len__(self) -> int:
        return len(self.examples)


def _copy(example: EncodedExample, repeat: int) -> EncodedExample:
    return EncodedExample(
        input_ids=list(example.input_ids),
        labels=list(example.labels),
        metadata={**example.metadata, "repeat": repeat},
    )


def build_training_set(
    renderer: Renderer,
    corpus: Corpus,
    trie: PassageTrie,
    *,
    queries: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    answers: Mapping[str, Sequence[str]] | None = None,
    mix: MixConfig | None = None,
    passages: Sequence[int] | None = None,
) -> TrainingSet:
    """All training examples for ``corpus`` (with its ``trie``), mixed and shuffled with a seed.

    - indexing examples of every passage, or only of ``passages`` (indices; for incremental
      updates: the new passages plus a replay sample), thinned to
      ``mix.indexing_fraction_with_queries`` when supervised examples exist;
    - supervised and answer examples (``queries`` + ``qrels`` + optional ``answers``), each
      ``mix.supervised_repeats`` times;
    - self-assessment examples: ``mix.n_negatives`` negatives per relevant pair, and a positive
      for each pair that has no answer example already (an answer example is a positive).

    Every retrieval target is checked against ``trie`` (it must identify its passage), so a trie
    built from another corpus, tokenizer or template is an error rather than silent garbage.
    ``stats`` holds counts per kind (``kinds``), tokens, target tokens and skipped queries.
    """
    mix = mix if mix is not None else MixConfig()
    if not isinstance(mix, MixConfig):
        raise ValueError(f"mix must be a MixConfig, got {type(mix).__name__}")
    if trie.n_passages != len(corpus):
        raise CorpusError(
            f"the trie holds {trie.n_passages} passages but the corpus has {len(corpus)}; build "
            "the trie from this corpus (selfretrieval_integrations.model.build_trie)"
        )
    if qrels is not None and queries is None:
        raise CorpusError("qrels were given without queries; pass queries={query id: text} too")
    if queries is not None and qrels is None:
        raise CorpusError(
            "queries were given without qrels; pass qrels={query id: {corpus id: relevance}} "
            "(e.g. loaders.load_beir_qrels(folder, 'train')) or leave queries out"
        )
    chosen = _checked_passages(passages, corpus)
    targets = _Targets(renderer, corpus, unique_depths(trie), mix.extra_tokens, trie)
    resolved = (
        _resolve(corpus, queries, qrels, answers)
        if queries is not None and qrels is not None
        else _Resolved([], 0)
    )

    supervised: list[EncodedExample] = []
    if mix.supervised_repeats and resolved.queries:
        supervised = _supervised(
            targets,
            resolved,
            full_target=mix.supervised_full_target,
            max_passage_words=mix.max_passage_words,
        )

    indexing: list[EncodedExample] = []
    indexing_before_sampling = 0
    if mix.indexing:
        indexing = _indexing(
            targets,
            chosen,
            seed=mix.seed,
            min_words=mix.min_words,
            max_words=mix.max_words,
            max_per_passage=mix.indexing_per_passage,
        )
        indexing_before_sampling = len(indexing)
        if supervised and mix.indexing_fraction_with_queries < 1.0:
            keep = round(mix.indexing_fraction_with_queries * len(indexing))
            rng = random.Random(f"{mix.seed}\x00indexing-fraction")
            kept = sorted(rng.sample(range(len(indexing)), keep))
            indexing = [indexing[i] for i in kept]

    assessment: list[EncodedExample] = []
    info = _AssessmentInfo()
    if mix.assessment and resolved.queries:
        answered = {
            (e.metadata["query"], e.metadata["passage"])
            for e in supervised
            if e.metadata["kind"] == "answer" and mix.answer_repeats != 0
        }
        assessment, info = _assessment(
            renderer,
            corpus,
            resolved,
            seed=mix.seed,
            negatives=_negative_sampling(mix.negatives),
            n_negatives=mix.n_negatives,
            max_passage_words=mix.max_passage_words,
            skip_positive=lambda qid, p: (qid, p) in answered,
        )

    examples = list(indexing)
    answer_repeats = mix.supervised_repeats if mix.answer_repeats is None else mix.answer_repeats
    for repeat in range(max(mix.supervised_repeats, answer_repeats)):
        for example in supervised:
            is_answer = example.metadata["kind"] == "answer"
            if repeat < (answer_repeats if is_answer else mix.supervised_repeats):
                examples.append(example if repeat == 0 else _copy(example, repeat))
    examples.extend(assessment)
    random.Random(f"{mix.seed}\x00shuffle").shuffle(examples)

    kinds: dict[str, int] = {}
    for example in examples:
        kind = example.metadata["kind"]
        if kind == "assessment":
            kind = f"assessment_{example.metadata['label']}"
        kinds[kind] = kinds.get(kind, 0) + 1
    lengths = [len(e.input_ids) for e in examples]
    target_tokens = sum(sum(1 for t in e.labels if t != IGNORE_INDEX) for e in examples)
    stats: dict[str, Any] = {
        "examples": len(examples),
        "kinds": kinds,
        "tokens": int(sum(lengths)),
        "target_tokens": int(target_tokens),
        "max_length": max(lengths, default=0),
        "mean_length": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "passages": len(corpus),
        "indexed_passages": len({e.metadata["passage"] for e in indexing}),
        "indexing_before_sampling": indexing_before_sampling,
        "queries": len(queries) if queries is not None else 0,
        "queries_used": len(resolved.queries),
        "queries_skipped_no_qrels": resolved.skipped_no_qrels,
        "relevant_pairs": sum(len(q.positives) for q in resolved.queries),
        "qrels_document_ids": resolved.qrels_documents,
        "qrels_passage_ids": resolved.qrels_passages,
        "negative_sources": dict(sorted(info.sources.items())),
        "negatives_missing": info.negatives_missing,
        "mix": mix.to_dict(),
    }
    return TrainingSet(examples=examples, stats=stats)


def replay_sample(
    corpus_size_or_indices: int | Sequence[int],
    n: int,
    *,
    seed: int,
    exclude: Iterable[int] = (),
) -> list[int]:
    """A seeded sample of ``n`` passage indices to replay during an incremental update.

    ``corpus_size_or_indices`` is the number of old passages (indices ``0 .. size-1``) or the
    candidate indices themselves; ``exclude`` removes some (e.g. passages of deleted documents).
    Returns fewer than ``n`` when fewer candidates exist, in ascending order.
    """
    n = _check_count(n, "n", 0)
    candidates: Sequence[int]
    if isinstance(corpus_size_or_indices, Iterable):
        candidates = list(dict.fromkeys(int(i) for i in corpus_size_or_indices))
    else:
        candidates = range(_check_count(corpus_size_or_indices, "corpus size", 0))
    excluded = {int(i) for i in exclude}
    pool = [i for i in candidates if i not in excluded] if excluded else candidates
    if n >= len(pool):
        return sorted(pool)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(pool), size=n, replace=False)
    return sorted(int(pool[int(i)]) for i in picked)
