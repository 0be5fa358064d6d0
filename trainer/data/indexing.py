"""Indexing examples: each sentence of a passage is a pseudo-query that retrieves the passage.

They internalize the corpus. The target is cut where the trie identifies the passage, but never
before the title segment plus ``extra_tokens`` passage tokens: long enough to name exactly one
passage and to start the passage itself. The research code used a fixed "title + 10 words"
instead, which may stop before the passage is identified and wastes tokens on passages that
their title alone identifies.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import numpy as np

from selfretrieval_integrations.corpus import Corpus, count_words, cut_words
from selfretrieval_integrations.retrieval import EncodedExample, Renderer
from selfretrieval_integrations.validation import checked_int

from .checks import checked_passages
from .sentences import split_sentences
from .targets import PassageTargets, checked_depths


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


def encode_indexing(
    targets: PassageTargets,
    passages: Iterable[int],
    *,
    seed: int,
    min_words: int,
    max_words: int,
    max_per_passage: int | None,
) -> list[EncodedExample]:
    """``indexing_examples`` without its checks, for ``build_training_set``."""
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
    min_words = checked_int(min_words, "min_words")
    max_words = checked_int(max_words, "max_words", minimum=min_words)
    if max_per_passage is not None:
        max_per_passage = checked_int(max_per_passage, "max_per_passage")
    extra_tokens = checked_int(extra_tokens, "extra_tokens", minimum=0)
    targets = PassageTargets(renderer, corpus, checked_depths(depths, corpus), extra_tokens)
    return encode_indexing(
        targets,
        checked_passages(passages, corpus),
        seed=seed,
        min_words=min_words,
        max_words=max_words,
        max_per_passage=max_per_passage,
    )
