"""Cached contexts give the scores of a plain forward pass, and the cache keeps to its budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfretrieval_integrations.retrieval import AssessmentConfig, RetrievalConfig
from selfretrieval_integrations.retrieval.context_scoring import CachedContextScorer, ContextCache


def _plain(model, context: list[int], target: list[int]) -> np.ndarray:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([context + target])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return np.array([logp[len(context) - 1 + i, t].item() for i, t in enumerate(target)])


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30])
def test_scores_equal_a_plain_forward_pass(tiny_model, cache_bytes):
    model, tokenizer = tiny_model
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    contexts = [rng.integers(3, vocab, size=n).tolist() for n in (2, 9, 30, 17)]
    rows = [(contexts[i % 4], rng.integers(3, vocab, size=1 + i % 5).tolist()) for i in range(9)]
    scorer = CachedContextScorer(
        model, tokenizer.pad_token_id, batch_size=4, cache_bytes=cache_bytes
    )
    for _ in range(2):  # the second time from the cache, when there is one
        got = scorer.token_logprobs(rows)
        for (context, target), scores in zip(rows, got, strict=True):
            np.testing.assert_allclose(scores, _plain(model, context, target), atol=2e-5)
    if cache_bytes:
        assert len(scorer.cache) == 4 and scorer.cache.hits > 0
    else:
        assert len(scorer.cache) == 0
    with pytest.raises(ValueError, match="two tokens"):
        scorer.token_logprobs([([5], [6])])
    with pytest.raises(ValueError, match="target token"):
        scorer.token_logprobs([([5, 6], [])])


def test_cache_drops_the_least_recently_used():
    layers = [(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))]  # 64 bytes
    cache = ContextCache(max_bytes=150)
    cache.put((1,), layers)
    cache.put((2,), layers)
    assert cache.get((1,)) is layers  # (1,) is now the most recent
    cache.put((3,), layers)
    assert cache.get((2,)) is None and cache.get((1,)) is layers and len(cache) == 2
    cache.resize(64)
    assert len(cache) == 1 and cache.bytes == 64 and cache.get((1,)) is layers
    cache.put((4,), [(torch.zeros(1, 1, 40, 2), torch.zeros(1, 1, 40, 2))])  # over budget
    assert cache.get((4,)) is None


def test_query_likelihood_relevance(tiny_model):
    from selfretrieval_integrations.retrieval import SelfRetrievalModel

    model_ = tiny_model[0]
    corpus = [{"id": "a", "title": "Paris", "text": "Paris is the capital of France."}]
    model = SelfRetrievalModel.from_base(tiny_model, corpus)
    assert model.config.assessment.method == "query_likelihood"
    pairs = [("Paris", "Paris is the capital of France."), ("", "Berlin is in Germany.")]
    relevance = model.assess("capital of France?", pairs)
    renderer = model.renderer
    question = renderer.question_ids("capital of France?")
    expected = [
        np.exp(_plain(model_, renderer.question_context_ids(t, x), question).mean())
        for t, x in pairs
    ]
    np.testing.assert_allclose(relevance, expected, rtol=1e-4)
    assert model.assessor.context_scorer.cache.misses == 2
    model.assess("another question", pairs)
    assert model.assessor.context_scorer.cache.hits == 2  # the passages were read once
    model.config = RetrievalConfig(assessment=AssessmentConfig(method="refusal"))
    refusal = model.assess("capital of France?", pairs)
    assert not np.allclose(refusal, relevance)
    with pytest.raises(ValueError, match="method"):
        AssessmentConfig(method="yes")


def test_manifests_from_before_query_likelihood_keep_the_refusal():
    old = RetrievalConfig().to_dict()
    del old["assessment"]["method"]
    assert RetrievalConfig.from_dict(old).assessment.method == "refusal"
    assert RetrievalConfig.from_dict(RetrievalConfig().to_dict()).assessment.method == (
        "query_likelihood"
    )
    assert RetrievalConfig.from_dict({}).assessment.method == "query_likelihood"


def test_warm_cache_reads_the_corpus_once(tiny_model):
    from selfretrieval_integrations.retrieval import SelfRetrievalModel

    corpus = [
        {"id": str(i), "title": f"T{i}", "text": f"Passage number {i} about topic {i}."}
        for i in range(5)
    ]
    model = SelfRetrievalModel.from_base(tiny_model, corpus)
    assert model.warm_cache(show_progress=False) == 5
    assert model.warm_cache(show_progress=False) == 0  # already read
    cache = model.assessor.context_scorer.cache
    misses = cache.misses
    model.assess("topic 3?", [(p.title, p.text) for p in model.store])
    assert cache.misses == misses and cache.hits >= 5
    model.config = RetrievalConfig(assessment=AssessmentConfig(method="refusal"))
    assert model.warm_cache(show_progress=False) == 0
