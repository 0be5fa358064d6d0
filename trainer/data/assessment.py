"""Self-assessment examples: after a passage, the model says whether it answers the query.

A query with a *negative* passage is labelled with the template's refusal (``cannot extract
answer``); with a *positive* one, with the answer or, when none is known, the template's
affirmation, so the refusal is not simply learnt as "always".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from selfretrieval_integrations.corpus import Corpus, cut_words
from selfretrieval_integrations.index import BM25Index
from selfretrieval_integrations.retrieval import AssessmentConfig, EncodedExample, Renderer
from selfretrieval_integrations.validation import checked_int

from .queries import JudgedQuery, ResolvedQueries, contains_answer, pick_answer, resolve_queries

DEFAULT_MAX_PASSAGE_WORDS: int = AssessmentConfig.max_passage_words
"""Passages of assessment examples are cut like self-assessment cuts them at retrieval time."""

# Candidate lists up to this size are sampled exactly; larger corpora use rejection sampling.
_EXACT_SAMPLING_LIMIT = 4096


class NegativeSampling(str, Enum):
    """Where the negative passages of self-assessment examples come from."""

    SAME_DOC = "same_doc"
    """Other passages of the relevant document (the paper's choice), without the answer; then
    passages of other documents with the same title (paragraph-level documents of one article)."""
    BM25 = "bm25"
    """The best BM25 matches of the query (title + text) that are not relevant: hard negatives."""
    MIXED = "mixed"
    """Half from each (an odd one is drawn at random)."""


def checked_negative_sampling(value: object) -> NegativeSampling:
    """``value`` as a ``NegativeSampling`` (its value as a string works too: ``"bm25"``)."""
    try:
        return NegativeSampling(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in NegativeSampling)
        raise ValueError(f"negatives must be one of {allowed}, got {value!r}") from None


def _bm25_ranked(corpus: Corpus, queries: Sequence[str], k: int) -> list[list[int]]:
    """For each query, passage indices with a positive BM25 score, best first (at most ``k``).

    Uses the project's BM25 baseline (bm25s over title + text; bm25s loads only when needed).
    """
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
class AssessmentCounts:
    """How many examples of each label were made, and where the negatives came from."""

    positives: int = 0
    negatives: int = 0
    negatives_missing: int = 0
    sources: dict[str, int] = field(default_factory=dict)


def encode_assessment(
    renderer: Renderer,
    corpus: Corpus,
    resolved: ResolvedQueries,
    *,
    seed: int,
    negatives: NegativeSampling,
    n_negatives: int,
    max_passage_words: int,
    positives: bool = True,
    skip_positive: Callable[[str, int], bool] | None = None,
) -> tuple[list[EncodedExample], AssessmentCounts]:
    """``assessment_examples`` without its checks, for ``build_training_set``."""
    template = renderer.template
    pools = _NegativePools(corpus)
    info = AssessmentCounts(sources={})
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
                answer = pick_answer(query.answers, text) if query.answers else template.affirmation
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
    query: JudgedQuery,
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
        return p not in excluded and p not in chosen and not contains_answer(corpus[p].text, normed)

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
    n_negatives = checked_int(n_negatives, "n_negatives", minimum=0)
    max_passage_words = checked_int(max_passage_words, "max_passage_words")
    resolved = resolve_queries(corpus, queries, qrels, answers)
    examples, _ = encode_assessment(
        renderer,
        corpus,
        resolved,
        seed=seed,
        negatives=checked_negative_sampling(negatives),
        n_negatives=n_negatives,
        max_passage_words=max_passage_words,
        positives=positives,
    )
    return examples
