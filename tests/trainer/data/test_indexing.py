"""Indexing examples: sentences in the word range retrieve their passage."""

from __future__ import annotations

from selfretrieval_trainer.data import indexing_examples, unique_depths

from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.retrieval import build_trie

from .helpers import TEMPLATE, prompt_length


def test_indexing_queries_are_sentences_in_range(renderer, tokenizer):
    text = (
        "Short one. This sentence has exactly seven words in it. "
        + " ".join(f"W{i}" for i in range(60))
        + ". Another fine sentence of enough words here."
    )
    corpus = Corpus.from_passages(
        [{"id": "p", "title": "", "text": text}, {"id": "q", "text": "Too short. Also short."}]
    )
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    examples = indexing_examples(renderer, corpus, unique_depths(trie), seed=0)
    prompts = [tokenizer.decode(e.input_ids[: prompt_length(e)]) for e in examples]
    by_passage = [e.metadata["passage"] for e in examples]
    assert by_passage == [0, 0, 1]
    assert "This sentence has exactly seven words in it." in prompts[0]
    assert "Another fine sentence of enough words here." in prompts[1]
    assert "Too short." in prompts[2]  # none in range: the first sentence
    assert "Also short" not in prompts[2]
    sampled = indexing_examples(renderer, corpus, unique_depths(trie), seed=0, max_per_passage=1)
    assert [e.metadata["passage"] for e in sampled] == [0, 1]


def test_long_first_sentence_fallback_is_cut(renderer, tokenizer):
    words = [f"word{i}" for i in range(80)]
    corpus = Corpus.from_passages([{"id": "p", "title": "T", "text": " ".join(words)}])
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    (example,) = indexing_examples(renderer, corpus, unique_depths(trie), seed=0, max_words=50)
    prompt = renderer.encode_prompt(" ".join(words[:50]))
    assert example.input_ids[: len(prompt)] == prompt
