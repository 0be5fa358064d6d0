"""``rerank``: self-assessment alone, or fused with the first-stage order."""

from __future__ import annotations

import numpy as np
import pytest

from selfretrieval_integrations.errors import QueryError
from selfretrieval_integrations.retrieval import (
    RerankConfig,
    RerankMethod,
    RetrievalConfig,
    rerank,
    rerank_by_relevance,
    rerank_convex,
)


class FixedAssessor:
    """Stands in for SelfRetrievalModel: relevance (and generation scores) given per text."""

    def __init__(self, relevance: dict[str, float], generation: dict[str, float] | None = None):
        self.relevance = relevance
        self.generation = generation or dict.fromkeys(relevance, 0.0)
        self.config = RetrievalConfig()
        self.calls = 0
        self.assessed: list[int] = []

    def assess(self, query, passages):
        self.calls += 1
        return np.array([self.relevance[p if isinstance(p, str) else p[1]] for p in passages])

    def relevance_of(self, query, passages):
        def relevance(chosen):
            self.assessed.extend(chosen)
            return self.assess(query, [passages[i] for i in chosen])

        return relevance

    def exact_places(self, k):
        return min(k, self.config.assessment.exact_ranks or k)

    def bounded_pairs(self, passages):
        return [("", p) if isinstance(p, str) else p for p in passages]

    def generation_scores(self, query, pairs):
        return np.array([self.generation[text] for _, text in pairs])


def test_assessment_orders_by_relevance_and_keeps_input_order_on_ties():
    model = FixedAssessor({"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.5})
    out = rerank(model, "q", ["a", "b", "c", "d"], config=RerankConfig(method="assessment"))
    assert [r.index for r in out] == [1, 2, 3, 0]
    assert [r.relevance for r in out] == [0.9, 0.5, 0.5, 0.1]


def test_rrf_fuses_first_stage_rank_with_assessment_rank():
    model = FixedAssessor({"a": 0.1, "b": 0.9, "c": 0.8, "d": 0.0})
    out = rerank(model, "q", ["a", "b", "c", "d"], config=RerankConfig(method=RerankMethod.RRF))
    # a: 1/61 + 1/63, b: 1/62 + 1/61, c: 1/63 + 1/62, d: 1/64 + 1/64
    assert [r.index for r in out] == [1, 0, 2, 3]
    weight_zero = rerank(
        model, "q", ["a", "b", "c"], config=RerankConfig(method="rrf", assessment_weight=0)
    )
    assert [r.index for r in weight_zero] == [0, 1, 2]


@pytest.mark.parametrize("method", [RerankMethod.ASSESSMENT, RerankMethod.RRF])
def test_known_relevance_is_ordered_as_rerank_orders_it(method):
    relevance = {"a": 0.3, "b": 0.9, "c": 0.3, "d": 0.6}
    config = RerankConfig(method=method)
    by_model = rerank(FixedAssessor(relevance), "q", list(relevance), config=config)
    assert rerank_by_relevance(np.array(list(relevance.values())), config) == by_model


def test_convex_fuses_first_stage_scores_generation_and_relevance():
    relevance = {"a": 0.1, "b": 0.9, "c": 0.5}
    generation = {"a": -5.0, "b": -9.0, "c": -1.0}
    model = FixedAssessor(relevance, generation)
    only = {
        "first_stage": {"first_stage": 1.0},
        "generation": {"generation": 1.0},
        "relevance": {"relevance": 1.0},
    }
    passages = list(relevance)
    by = {
        name: [r.index for r in rerank(model, "q", passages, scores=[3.0, 1.0, 2.0], config=c)]
        for name, c in ((n, RerankConfig(weights=w)) for n, w in only.items())
    }
    assert by == {"first_stage": [0, 2, 1], "generation": [2, 0, 1], "relevance": [1, 2, 0]}
    # Without scores the first stage's order stands in for them.
    no_scores = rerank(model, "q", passages, config=RerankConfig(weights=only["first_stage"]))
    assert [r.index for r in no_scores] == [0, 1, 2]
    mixed = rerank_convex(
        np.array([3.0, 1.0, 2.0]),
        np.array([-5.0, -9.0, -1.0]),
        np.array([0.1, 0.9, 0.5]),
        {"first_stage": 0.5, "generation": 0.5, "relevance": 0.0},
    )
    # a: 0.5 * 1 + 0.5 * 0.5; b: 0; c: 0.5 * 0.5 + 0.5 * 1
    assert [r.index for r in mixed] == [0, 2, 1]  # the tie keeps the first stage's order
    assert [round(r.score, 6) for r in mixed] == [0.75, 0.75, 0.0]
    with pytest.raises(QueryError, match="scores"):
        rerank(model, "q", passages, scores=[1.0])


def test_a_generation_score_without_weight_is_not_computed():
    model = FixedAssessor({"a": 0.2, "b": 0.9, "c": 0.5}, {"a": -5.0, "b": -9.0, "c": -1.0})
    weights = {"first_stage": 0.5, "generation": 0.0, "relevance": 0.5}
    passages, first = ["a", "b", "c"], [3.0, 2.5, 1.0]
    tiny = RerankConfig(weights=weights | {"generation": 1e-9})
    expected = rerank(model, "q", passages, scores=first, config=tiny)

    def never(query, pairs):
        raise AssertionError("a score with weight 0 was computed")

    model.generation_scores = never
    got = rerank(model, "q", passages, scores=first, config=RerankConfig(weights=weights))
    assert [r.index for r in got] == [r.index for r in expected] == [1, 0, 2]
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-6)


def test_convex_weights_are_checked():
    with pytest.raises(ValueError, match="unknown features"):
        RerankConfig(weights={"bm25": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        RerankConfig(weights={"relevance": 0.0})
    with pytest.raises(ValueError, match="convex order"):
        rerank_by_relevance(np.array([0.5]), RerankConfig())


def test_top_n_and_empty_input():
    model = FixedAssessor({"a": 0.1, "b": 0.9})
    by_relevance = RerankConfig(method="assessment")
    assert [r.index for r in rerank(model, "q", ["a", "b"], top_n=1, config=by_relevance)] == [1]
    assert rerank(model, "q", []) == [] and model.calls == 1
    for bad in (0, -1, True, 1.5):
        with pytest.raises(QueryError, match="top_n"):
            rerank(model, "q", ["a"], top_n=bad)


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        RerankConfig(method="nope")
    with pytest.raises(ValueError, match="rrf_k"):
        RerankConfig(rrf_k=0)
    with pytest.raises(ValueError, match="assessment_weight"):
        RerankConfig(assessment_weight=-1)


def test_reranks_with_a_real_model_on_passages_outside_the_trie(tiny_model):
    from selfretrieval_integrations import SelfRetrievalModel

    model = SelfRetrievalModel.from_base(tiny_model, [{"id": "x", "text": "Indexed text."}])
    out = rerank(model, "where?", ["Paris is in France.", ("Rome", "Rome is in Italy.")])
    assert sorted(r.index for r in out) == [0, 1]
    assert all(0 <= r.relevance < 1 for r in out)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_refusal_loss_matches_a_plain_forward_pass(tiny_model, batch_size):
    """The batched, cache-sharing, last-positions-only scoring equals the textbook loss."""
    import torch

    from selfretrieval_integrations.retrieval import (
        AssessmentConfig,
        PromptTemplate,
        Renderer,
        SelfAssessor,
    )

    model, tokenizer = tiny_model
    renderer = Renderer(tokenizer, PromptTemplate())
    assessor = SelfAssessor(model, renderer, AssessmentConfig(batch_size=batch_size))
    query = "where is the tower?"
    passages = [("Paris", "The tower is in Paris, " * n) for n in (1, 7, 3)] + [("", "Short.")]
    losses = assessor.refusal_loss(query, passages)
    refusal = renderer.refusal_ids()
    for (title, text), loss in zip(passages, losses, strict=True):
        ids = renderer.encode_prompt(query) + renderer.assessment_context_ids(title, text)
        full = torch.as_tensor([ids + refusal])
        with torch.inference_mode():
            logits = model(input_ids=full).logits[0]
        at = torch.arange(len(refusal)) + len(ids) - 1
        logp = torch.log_softmax(logits[at].float(), dim=-1)
        expected = -logp[torch.arange(len(refusal)), torch.as_tensor(refusal)].mean()
        assert loss == pytest.approx(float(expected), abs=1e-4)


def test_convex_on_the_probability_scale_assesses_only_what_can_reach_the_exact_places():
    from dataclasses import replace

    from selfretrieval_integrations.retrieval import AssessmentConfig, HybridConfig

    texts = [f"t{i}" for i in range(8)]
    rng = np.random.default_rng(3)
    model = FixedAssessor(
        dict(zip(texts, rng.uniform(0, 1, 8), strict=True)),
        dict(zip(texts, -rng.exponential(2, 8), strict=True)),
    )
    weights = {"first_stage": 0.6, "generation": 0.3, "relevance": 0.1}
    first = [float(s) for s in sorted(rng.uniform(0, 10, 8), reverse=True)]
    config = RerankConfig(weights=weights)
    model.config = replace(model.config, hybrid=HybridConfig(relevance_scale="probability"))
    every = rerank(model, "q", texts, scores=first, config=config)
    assert sorted(model.assessed) == list(range(8))  # every place exact: every passage assessed
    model.assessed.clear()
    model.config = replace(model.config, assessment=AssessmentConfig(exact_ranks=1))
    bounded = rerank(model, "q", texts, scores=first, config=config)
    assert 1 <= len(model.assessed) < 8 and len(set(model.assessed)) == len(model.assessed)
    assert bounded[0].index == every[0].index and bounded[0].score == pytest.approx(every[0].score)
    skipped = [r for r in bounded if r.relevance is None]
    assert len(skipped) == 8 - len(model.assessed)
    assert [r.score for r in bounded] == sorted((r.score for r in bounded), reverse=True)
    model.assessed.clear()  # scaled per query, relevance needs every passage
    model.config = replace(model.config, hybrid=HybridConfig(relevance_scale="minmax"))
    rerank(model, "q", texts, scores=first, config=config)
    assert sorted(model.assessed) == list(range(8))
    with pytest.raises(ValueError, match="relevance_scale"):
        HybridConfig(relevance_scale="log")
