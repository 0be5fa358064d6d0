"""Convex fusion: normalisation, the weight grid and the fit that picks weights."""

from __future__ import annotations

import numpy as np
import pytest

from selfretrieval_integrations.retrieval import (
    HybridConfig,
    RetrievalConfig,
    RetrievalMode,
    convex_scores,
    fit_weights,
    minmax,
)
from selfretrieval_integrations.retrieval.convex import simplex_grid


def test_minmax_scales_each_query_and_gives_a_constant_no_signal():
    assert minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert minmax(np.array([7.0, 7.0])).tolist() == [0.0, 0.0]
    assert minmax(np.array([])).size == 0


def test_convex_scores_weigh_normalised_features():
    features = {"a": np.array([0.0, 10.0]), "b": np.array([-1.0, -3.0])}
    assert convex_scores(features, {"a": 0.25, "b": 0.75}).tolist() == [0.75, 0.25]
    assert convex_scores(features, {"a": 1.0, "c": 0.0}).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="not computed"):
        convex_scores(features, {"c": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        convex_scores(features, {"a": 0.0})


def test_simplex_grid_covers_every_weighting_that_sums_to_one():
    grid = simplex_grid(["x", "y", "z"], 0.25)
    assert len(grid) == 15  # C(4 + 2, 2)
    assert all(abs(sum(w.values()) - 1) < 1e-9 for w in grid)
    assert {"x": 0.0, "y": 0.0, "z": 1.0} in grid and {"x": 1.0, "y": 0.0, "z": 0.0} in grid
    with pytest.raises(ValueError, match="divide"):
        simplex_grid(["x", "y"], 0.3)


def test_fit_finds_the_feature_that_ranks_the_relevant_passage_first():
    rng = np.random.default_rng(0)
    questions = []
    for _ in range(30):
        relevant = np.zeros(8, dtype=bool)
        relevant[rng.integers(8)] = True
        useful = relevant * 2.0 + rng.normal(0, 0.3, 8)
        questions.append(({"noise": rng.normal(0, 1, 8), "useful": useful}, relevant))
    fit = fit_weights(questions, ["noise", "useful"], step=0.1)
    assert fit.weights["useful"] > 0.5 and fit.objective > 0.9 and fit.questions == 30
    only_noise = fit_weights(questions, ["noise"], step=0.5)
    assert only_noise.objective < fit.objective
    with pytest.raises(ValueError, match="at least one question"):
        fit_weights([], ["noise"])


def test_hybrid_config_checks_and_round_trips_through_the_manifest_form():
    config = RetrievalConfig(
        mode="hybrid",
        hybrid=HybridConfig(bm25_depth=5, weights={"bm25": 1.0}, fitted={"questions": 3}),
    )
    assert config.mode is RetrievalMode.HYBRID
    assert config.hybrid.weights == {
        "bm25": 1.0,
        "dense": 0.0,
        "generation": 0.0,
        "relevance": 0.0,
    }
    assert RetrievalConfig.from_dict(config.to_dict()) == config
    assert RetrievalConfig.from_dict({}).mode is RetrievalMode.SELF  # artifacts from before
    for bad in (
        {"weights": {"vector": 1.0}},
        {"weights": {"bm25": -1.0, "generation": 2.0}},
        {"rerank_weights": {"first_stage": 0.0}},
        {"bm25_depth": -1},
        {"generation_tokens": 0},
    ):
        with pytest.raises(ValueError):
            HybridConfig(**bad)
    with pytest.raises(ValueError):
        RetrievalConfig(mode="vector")


def test_vectorised_ranks_equal_a_stable_sort():
    from selfretrieval_integrations.retrieval.convex import _reciprocal_ranks

    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(1, 12))
        scores = rng.integers(0, 3, size=(4, n)).astype(float)  # many ties
        relevant = rng.random(n) < 0.3
        expected = []
        for row in scores:
            order = np.argsort(-row, kind="stable")[:5]
            hits = np.flatnonzero(relevant[order])
            expected.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
        assert _reciprocal_ranks(scores, relevant, 5).tolist() == expected


def _fit_question(rng, relevant_at, dense_informative):
    from selfretrieval_integrations.retrieval import FitQuestion

    n = 8
    relevant = np.zeros(n, dtype=bool)
    relevant[relevant_at] = True
    dense = rng.random(n)
    if dense_informative:
        dense[relevant_at] = 2.0
    return FitQuestion(
        relevant=relevant,
        in_bm25=np.ones(n, dtype=bool),
        bm25=rng.random(n),
        token_logprobs=[rng.random(32) for _ in range(n)],
        relevance=rng.random(n),
        dense=dense,
    )


def test_library_fit_weights_the_dense_score_only_when_every_question_has_it():
    from dataclasses import replace

    from selfretrieval_integrations.retrieval import fit_from_questions

    rng = np.random.default_rng(0)
    questions = [_fit_question(rng, i % 8, True) for i in range(12)]
    fitted = fit_from_questions(questions, HybridConfig(), step=0.25)
    assert fitted.weights["dense"] > 0.5 and fitted.fitted["dense"] is True
    assert fitted.fitted["hybrid_objective"] == 1.0
    without = [replace(q, dense=None) for q in questions[:-1]] + questions[-1:]
    fitted = fit_from_questions(without, HybridConfig(), step=0.25)
    assert fitted.weights["dense"] == 0.0 and fitted.fitted["dense"] is False


def test_library_fit_picks_generation_tokens_among_those_offered():
    from selfretrieval_integrations.retrieval import fit_from_questions

    rng = np.random.default_rng(2)
    questions = [_fit_question(rng, i % 8, False) for i in range(12)]
    for question in questions:  # the first 8 tokens find the relevant candidate, later ones hide it
        for i, logprobs in enumerate(question.token_logprobs):
            logprobs[:8] = 5.0 if question.relevant[i] else 0.0
            logprobs[8:] = -10.0 if question.relevant[i] else 0.0
    assert fit_from_questions(questions, HybridConfig(), step=0.25).generation_tokens == 8
    only = fit_from_questions(questions, HybridConfig(), step=0.25, generation_tokens=[16])
    assert only.generation_tokens == 16
    for bad in ([], [0], [33]):
        with pytest.raises(ValueError, match="generation_tokens"):
            fit_from_questions(questions, HybridConfig(), generation_tokens=bad)


def test_library_fit_of_self_mode_uses_the_beams_alone():
    from dataclasses import replace

    from selfretrieval_integrations.retrieval import fit_from_questions

    rng = np.random.default_rng(1)
    questions = []
    for i in range(24):
        question = _fit_question(rng, i % 8, False)
        beams = np.where(np.arange(8) < 5, rng.random(8), np.nan)  # five beams, three from BM25
        relevant_at = int(np.flatnonzero(question.relevant)[0])
        if relevant_at < 5:
            beams[relevant_at] = 5.0  # the beam score finds it; relevance is noise
        questions.append(replace(question, beam_logprob=beams))
    prior = HybridConfig(self_weights={"generation": 0.1, "relevance": 0.9})
    fitted = fit_from_questions(questions, prior, step=0.25, prior=prior)
    assert fitted.self_weights["generation"] >= 0.5  # ties go to the one nearest the prior
    assert fitted.fitted["self_objective"] == 0.625  # first whenever a beam (5 of 8) has it
    unfitted = fit_from_questions([replace(q, beam_logprob=None) for q in questions], prior)
    assert unfitted.self_weights == prior.self_weights and unfitted.fitted["self_objective"] is None


def test_a_prior_stands_unless_the_fit_beats_it_by_more_than_chance():
    # Feature "a" ranks the relevant candidate first in 15 of 16 questions, "b" in all 16.
    def question(b_wins_alone):
        relevant = np.array([True, False, False])
        a = np.array([0.0, 1.0, 0.5]) if b_wins_alone else np.array([1.0, 0.0, 0.5])
        return {"a": a, "b": np.array([1.0, 0.0, 0.5])}, relevant

    few = [question(i == 0) for i in range(16)]
    kept = fit_weights(few, ["a", "b"], step=0.5, prior={"a": 1.0})
    assert kept.weights == {"a": 1.0, "b": 0.0}  # one question is not evidence
    assert fit_weights(few, ["a", "b"], step=0.5).weights["b"] > 0  # without the prior it moves
    many = [question(i % 2 == 0) for i in range(16)]
    moved = fit_weights(many, ["a", "b"], step=0.5, prior={"a": 1.0})
    assert moved.weights["b"] > 0 and moved.objective == 1.0


def test_bounded_convex_scores_keep_the_exact_places_on_the_probability_scale():
    from selfretrieval_integrations.retrieval import bounded_convex_scores

    rng = np.random.default_rng(11)
    weights = {"bm25": 0.5, "generation": 0.3, "relevance": 0.2}
    for _ in range(100):
        n = int(rng.integers(1, 15))
        features = {"bm25": rng.uniform(0, 9, n), "generation": -rng.exponential(3, n)}
        relevance = rng.uniform(0, 1, n)
        full = convex_scores({**features, "relevance": relevance}, weights, as_is=["relevance"])
        for places in (1, 2, 4):
            asked: list[int] = []

            def assess(chosen, asked=asked, relevance=relevance):
                asked.extend(chosen)
                return relevance[chosen]

            scores, known = bounded_convex_scores(
                features, weights, assess, places, as_is=["relevance"]
            )
            top = min(places, n)
            assert list(np.argsort(-scores, kind="stable")[:top]) == list(
                np.argsort(-full, kind="stable")[:top]
            )
            assert np.array_equal(~np.isnan(known), np.isin(np.arange(n), asked))
            assert np.all(scores >= full - 1e-12)
    no_relevance = {"bm25": 1.0}
    scores, known = bounded_convex_scores(features, no_relevance, assess, 1)
    assert known is None and scores == pytest.approx(convex_scores(features, no_relevance))
