"""``rank_candidates``: the fused scores of candidates and the order they give."""

from __future__ import annotations

import numpy as np
import pytest

from selfretrieval_integrations.retrieval import Candidates, Fusion, fuse_scores, rank_candidates


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
    order, scores = rank_candidates(candidates, fusion, 0.4)
    expected = fuse_scores(
        fusion,
        title_keys=candidates.titles,
        title_logprobs=candidates.title_logprobs,
        logprobs=candidates.logprobs,
        relevance=candidates.relevance,
        temperature=0.4,
    )
    assert scores.tolist() == expected.tolist()
    assert [scores[i] for i in order] == sorted(scores, reverse=True)


def test_paper_fusion_shares_a_title_probability_within_a_title():
    _, scores = rank_candidates(_candidates(np.array([0.1, 0.9, 0.5, 0.2])), Fusion.PAPER, 0.4)
    title_a = scores[0] + scores[2]  # softmax within title A sums to A's title probability
    assert np.isclose(scores.sum(), 1.0) and title_a > scores[1] > scores[3]
    assert scores[2] > scores[0]  # more relevant within the same title


def test_without_relevance_every_fusion_falls_back_to_generation():
    for fusion in Fusion:
        order, _ = rank_candidates(_candidates(), fusion, 0.4)
        assert order == [2, 0, 1, 3]
