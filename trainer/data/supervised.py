"""Supervised examples: a real query retrieves its relevant passage; answer examples add the
answer after that passage, so the model learns to answer from what it retrieved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from selfretrieval_integrations.corpus import Corpus, cut_words
from selfretrieval_integrations.retrieval import EncodedExample, Renderer
from selfretrieval_integrations.validation import checked_int

from .assessment import DEFAULT_MAX_PASSAGE_WORDS
from .queries import ResolvedQueries, pick_answer, resolve_queries
from .targets import PassageTargets, checked_depths


def encode_supervised(
    targets: PassageTargets,
    resolved: ResolvedQueries,
    *,
    full_target: bool,
    max_passage_words: int,
) -> list[EncodedExample]:
    """``supervised_examples`` without its checks, for ``build_training_set``."""
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
                answer = pick_answer(query.answers, text)
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
    extra_tokens = checked_int(extra_tokens, "extra_tokens", minimum=0)
    max_passage_words = checked_int(max_passage_words, "max_passage_words")
    targets = PassageTargets(renderer, corpus, checked_depths(depths, corpus), extra_tokens)
    resolved = resolve_queries(corpus, queries, qrels, answers)
    return encode_supervised(
        targets, resolved, full_target=full_target, max_passage_words=max_passage_words
    )
