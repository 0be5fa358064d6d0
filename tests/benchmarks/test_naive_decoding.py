"""The benchmark's naive baseline runs the same search as ``ConstrainedDecoder``.

``benchmarks/naive_decoding.py`` is only useful as a baseline if it returns what the optimized
decoder returns: the same passages, in the same order, with the same log-probabilities.
"""

from __future__ import annotations

import pytest

from selfretrieval_integrations import (
    DecodingConfig,
    Passage,
    PromptTemplate,
    RetrievalConfig,
    SelfRetrievalModel,
)
from selfretrieval_integrations.retrieval import Fusion

from .scripts import load_benchmark

naive = load_benchmark("naive_decoding")

TEXTS = [
    "The Eiffel Tower is in Paris.",
    "The Eiffel Tower was built in 1889.",
    "The Colosseum is in Rome.",
    "The Colosseum is an amphitheatre.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Water freezes at 0 degrees Celsius.",
    "The Amazon is the largest rainforest.",
    "Mount Everest is the highest mountain.",
    "Mount Everest is in the Himalayas.",
    "The same text twice.",
    "The same text twice.",
    "Short",
    "Short and then longer",
    "Rivers carry water from the mountains to the sea.",
]
TITLES = [
    "Paris",
    "Paris",
    "Rome",
    "Rome",
    "Water",
    "Water",
    "Amazon",
    "Everest",
    "Everest",
    "Twice",
    "Twice",
    "Short",
    "Short",
    "Rivers",
]
QUERIES = [
    "Where is the Eiffel Tower?",
    "When does water boil?",
    "What is the highest mountain?",
    "twice",
]


def _model(tiny_model, template: PromptTemplate, decoding: DecodingConfig) -> SelfRetrievalModel:
    passages = [
        Passage(id=f"p{i}", doc_id=f"d{i}", title=title, text=text)
        for i, (title, text) in enumerate(zip(TITLES, TEXTS, strict=True))
    ]
    config = RetrievalConfig(decoding=decoding, fusion=Fusion.GENERATION)
    return SelfRetrievalModel.from_base(tiny_model, passages, template=template, config=config)


def _baseline(model: SelfRetrievalModel, decoding: DecodingConfig, **options):
    return naive.NaiveDecoder.for_model(model, decoding, **options)


@pytest.mark.parametrize(
    ("use_titles", "title_beams", "passage_beams"),
    [(True, 5, 10), (True, 2, 3), (False, 5, 4)],
)
def test_naive_baseline_matches_constrained_decoder(
    tiny_model, use_titles, title_beams, passage_beams
):
    decoding = DecodingConfig(title_beams=title_beams, passage_beams=passage_beams)
    model = _model(tiny_model, PromptTemplate(use_titles=use_titles), decoding)
    baseline = _baseline(model, decoding)
    assert baseline.trie.has_titles == use_titles
    for query in QUERIES:
        for k in (1, 3, 10, 14):
            expected = model.retrieve(query, k=k)
            # The model decodes `candidates` passages (at least k) and keeps the best k.
            width = max(k, decoding.candidates)
            got = baseline.retrieve(model.renderer.encode_prompt(query), width)[:k]
            assert [model.store[p].id for p, _, _ in got] == [r.passage_id for r in expected]
            for (_, logprob, title_logprob), result in zip(got, expected, strict=True):
                assert logprob == pytest.approx(result.generation_logprob, abs=1e-3)
                assert title_logprob == pytest.approx(result.title_logprob, abs=1e-3)


def test_naive_baseline_counts_one_token_per_forward_pass(tiny_model):
    decoding = DecodingConfig()
    model = _model(tiny_model, PromptTemplate(), decoding)
    baseline = _baseline(model, decoding)
    prompt = model.renderer.encode_prompt(QUERIES[0])
    baseline.retrieve(prompt, 10)
    stats = baseline.stats
    # Two prefills (prompt, then prompt + titles) and at least one pass per generated token.
    assert stats.forward_passes >= 3
    assert stats.callback_calls >= 2
    expected = model.retrieve(QUERIES[0], k=10)
    assert stats.forward_passes > model.last_stats.forward_passes
    # Not feeding the forced runs that end a stage changes the cost, never the result.
    lazy = _baseline(model, decoding, feed_ending_runs=False)
    got = lazy.retrieve(prompt, 10)
    assert [model.store[p].id for p, _, _ in got] == [r.passage_id for r in expected]
    assert lazy.stats.forward_passes < stats.forward_passes


def test_dict_trie_cuts_at_unique_depth_and_keeps_duplicates():
    keys = [[5, 6, 7, 0], [5, 6, 8, 0], [5, 6, 8, 0], [9, 0]]
    trie = naive.DictTrie(keys, [2, 2, 2, 1])
    assert sorted(trie.root["next"]) == [5, 9]
    assert trie.walk([9])["next"] == {}  # one distinct key below: cut after one token
    assert trie.walk([5, 6])["title_end"]
    assert trie.walk([5, 6, 8])["passages"] == [1, 2]
    allowed = trie.prefix_allowed_tokens_fn(prompt_length=2)
    import torch

    assert sorted(allowed(0, torch.tensor([1, 1, 5, 6]))) == [7, 8]
    with pytest.raises(ValueError, match="proper prefix"):
        naive.DictTrie([[1, 2], [1, 2, 3]], [0, 0])
