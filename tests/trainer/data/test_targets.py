"""Targets are trie-key prefixes that identify their passage, and stop at the EOS."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from selfretrieval_trainer.data import (
    MixConfig,
    build_training_set,
    indexing_examples,
    split_sentences,
    unique_depths,
)

from selfretrieval_integrations.corpus import Corpus, load_corpus, quickstart_dir
from selfretrieval_integrations.retrieval import IGNORE_INDEX, Renderer, build_trie

from ...index.helpers import leaf_node, path
from .helpers import TEMPLATE, trained_labels


def test_unique_depths_are_the_shortest_identifying_prefixes(renderer, quickstart):
    corpus, trie = quickstart["corpus"], quickstart["trie"]
    depths = unique_depths(trie)
    assert depths.shape == (len(corpus),)
    for p, passage in enumerate(corpus):
        ids = renderer.encode_target(passage.title, passage.text).ids
        d = int(depths[p])
        assert d <= len(ids)
        assert p in trie.passage_ids_for_prefix(ids[:d])
        assert trie.passage_ids_for_prefix(ids[: d - 1]).size == 0


def test_retrieval_targets_are_identifying_trie_key_prefixes(renderer, quickstart, full_set):
    corpus, trie = quickstart["corpus"], quickstart["trie"]
    depths = unique_depths(trie)
    leaves = trie.passage_leaves()
    kinds = {"indexing": 0, "supervised": 0}
    for example in full_set.examples:
        kind = example.metadata["kind"]
        if kind not in kinds:
            continue
        kinds[kind] += 1
        p = example.metadata["passage"]
        # The prompt is exactly the masked part: the query's prompt (a sentence of the passage
        # for indexing, the real question for supervised examples).
        if kind == "supervised":
            prompts = [renderer.encode_prompt(quickstart["queries"][example.metadata["query"]])]
        else:
            prompts = [renderer.encode_prompt(s) for s in split_sentences(corpus[p].text)]
        n = next(len(pr) for pr in prompts if example.input_ids[: len(pr)] == pr)
        assert example.labels[:n] == [IGNORE_INDEX] * n
        assert example.labels[n:] == example.input_ids[n:]  # no masking inside the target
        labelled = example.labels[n:]
        target = renderer.encode_target(corpus[p].title, corpus[p].text)
        assert labelled == list(target.ids[: len(labelled)])
        assert len(labelled) == min(len(target.ids), max(int(depths[p]), target.title_length + 8))
        assert len(labelled) >= depths[p]
        # Walking the trie with the target reaches the passage's own leaf.
        assert p in trie.passage_ids_for_prefix(labelled)
        leaf = leaf_node(trie, int(leaves[p]))
        assert labelled[: depths[p]] == path(trie, leaf).tolist()
    assert kinds["indexing"] > 0 and kinds["supervised"] > 0


def test_deep_unique_depth_is_trained_in_full(renderer, tokenizer):
    # Passages that share a long start: a fixed "10 words" target could not tell them apart.
    shared = " ".join(["common"] * 30)
    corpus = Corpus.from_passages(
        [
            {"id": "a", "title": "T", "text": f"{shared} alpha ends here. Another sentence here."},
            {"id": "b", "title": "T", "text": f"{shared} beta ends here. One more sentence here."},
        ]
    )
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    depths = unique_depths(trie)
    examples = indexing_examples(renderer, corpus, depths, seed=0)
    for example in examples:
        p = example.metadata["passage"]
        target = renderer.encode_target(corpus[p].title, corpus[p].text)
        assert depths[p] > target.title_length + 8
        assert len(trained_labels(example)) == depths[p]
        assert list(trie.passage_ids_for_prefix(trained_labels(example))) == [p]


def test_short_passage_target_stops_at_eos(renderer, tokenizer):
    corpus = Corpus.from_passages([{"id": "x", "title": "A title", "text": "Tiny."}])
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    (example,) = indexing_examples(renderer, corpus, unique_depths(trie), seed=0, extra_tokens=500)
    target = renderer.encode_target("A title", "Tiny.")
    assert trained_labels(example) == list(target.ids)
    assert example.metadata == {"kind": "indexing", "passage": 0}


def test_smollm2_targets_match_the_trie(request):
    tokenizer = None
    with contextlib.suppress(pytest.skip.Exception):
        tokenizer = request.getfixturevalue("smollm2_tokenizer")
    if tokenizer is None:
        pytest.skip("SmolLM2 tokenizer not available")
    corpus = load_corpus(quickstart_dir())
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    renderer = Renderer(tokenizer, TEMPLATE)
    result = build_training_set(renderer, corpus, trie, mix=MixConfig(indexing_per_passage=2))
    depths = unique_depths(trie)
    for example in result.examples:
        labelled = trained_labels(example)
        assert len(labelled) >= depths[example.metadata["passage"]]
        assert example.metadata["passage"] in trie.passage_ids_for_prefix(labelled)
    assert np.all(depths > 0)
