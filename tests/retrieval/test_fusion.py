"""``rank_candidates``: the fused scores of candidates and the order they give."""

from __future__ import annotations

import numpy as np
import pytest

from selfretrieval_integrations.retrieval import (
    Candidates,
    Fusion,
    bounded_relevance,
    fuse_scores,
    logprob_fused,
    rank_candidates,
)


def _candidates(relevance=None) -> Candidates:
    return Candidates(
        passages=[7, 3, 5, 1],
        titles=["A", "B", "A", "C"],
        title_logprobs=np.array([-0.1, -2.0, -0.1, -3.0]),
        logprobs=np.array([-1.0, -2.0, -1.0, -3.0]),
        relevance=relevance,
    )


def test_generation_ranks_by_logprob_and_ties_go_to_the_lower_passage():
    order, scores = rank_candidates(_candidates(np.array([0.1, 0.9, 0.5, 0.2])), "generation", 0.4)
    assert order == [2, 0, 1, 3]  # candidates 0 and 2 tie: passage 5 before passage 7
    assert scores.tolist() == [-1.0, -2.0, -1.0, -3.0]
    stable, _ = rank_candidates(_candidates(), Fusion.GENERATION, 0.4, stable=True)
    assert stable == [0, 2, 1, 3]  # ties keep the given order


@pytest.mark.parametrize("fusion", list(Fusion))
def test_scores_are_the_fused_scores(fusion):
    candidates = _candidates(np.array([0.1, 0.9, 0.5, 0.2]))
    weights = {"generation": 0.3, "relevance": 0.7}
    order, scores = rank_candidates(candidates, fusion, 0.4, weights=weights)
    expected = fuse_scores(
        fusion,
        title_keys=candidates.titles,
        title_logprobs=candidates.title_logprobs,
        logprobs=candidates.logprobs,
        relevance=candidates.relevance,
        temperature=0.4,
        weights=weights,
    )
    assert scores.tolist() == expected.tolist()
    assert [scores[i] for i in order] == sorted(scores, reverse=True)


def test_convex_fusion_weighs_normalised_generation_and_relevance():
    candidates = _candidates(np.array([0.1, 0.9, 0.5, 0.2]))
    by_relevance, scores = rank_candidates(
        candidates, Fusion.CONVEX, 0.4, weights={"generation": 0.0, "relevance": 1.0}
    )
    assert by_relevance == [1, 2, 3, 0]
    assert scores.tolist() == pytest.approx([0.0, 1.0, 0.5, 0.125])
    by_generation, _ = rank_candidates(
        candidates, Fusion.CONVEX, 0.4, weights={"generation": 1.0, "relevance": 0.0}
    )
    assert by_generation == [2, 0, 1, 3]
    with pytest.raises(ValueError, match="weights"):
        rank_candidates(candidates, Fusion.CONVEX, 0.4)


def test_paper_fusion_shares_a_title_probability_within_a_title():
    _, scores = rank_candidates(_candidates(np.array([0.1, 0.9, 0.5, 0.2])), Fusion.PAPER, 0.4)
    title_a = scores[0] + scores[2]  # softmax within title A sums to A's title probability
    assert np.isclose(scores.sum(), 1.0) and title_a > scores[1] > scores[3]
    assert scores[2] > scores[0]  # more relevant within the same title


def test_without_relevance_every_fusion_falls_back_to_generation():
    for fusion in Fusion:
        order, _ = rank_candidates(_candidates(), fusion, 0.4)
        assert order == [2, 0, 1, 3]


def test_bounded_relevance_keeps_the_exact_places_and_skips_the_rest():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        logprobs = -rng.exponential(3.0, n)
        relevance = rng.uniform(0.001, 0.999, n)
        full = fuse_scores(
            "logprob",
            title_keys=[0] * n,
            title_logprobs=logprobs,
            logprobs=logprobs,
            relevance=relevance,
        )
        for places in (1, 2, 3, n):
            asked: list[int] = []

            def assess(chosen, asked=asked, relevance=relevance):
                asked.extend(chosen)
                return relevance[chosen]

            known = bounded_relevance(logprobs, places, assess, logprob_fused(logprobs))
            assert len(asked) == len(set(asked))  # nothing assessed twice
            assert np.array_equal(~np.isnan(known), np.isin(np.arange(n), asked))
            fused = fuse_scores(
                "logprob",
                title_keys=[0] * n,
                title_logprobs=logprobs,
                logprobs=logprobs,
                relevance=known,
            )
            top = min(places, n)
            assert list(np.argsort(-fused, kind="stable")[:top]) == list(
                np.argsort(-full, kind="stable")[:top]
            )
            assert np.all(fused >= full - 1e-12)  # a skipped candidate ranks by its bound


def test_bounded_relevance_stops_once_the_bound_decides():
    logprobs = np.array([-1.0, -5.0, -6.0, -7.0])
    asked: list[int] = []

    def assess(chosen):
        asked.extend(chosen)
        return np.full(len(chosen), 0.5)  # fused -1.69: nobody below -1.69 can overtake it

    known = bounded_relevance(logprobs, 1, assess, logprob_fused(logprobs))
    assert asked == [0] and np.isnan(known[1:]).all()
    with pytest.raises(ValueError, match="every candidate"):
        fuse_scores(
            "paper", title_keys=[0] * 4, title_logprobs=logprobs, logprobs=logprobs, relevance=known
        )
