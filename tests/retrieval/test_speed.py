"""The query-speed settings: a bounded assessment window, int8 weights, batched async calls."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from selfretrieval_integrations import ArtifactError, Passage, QueryError, SelfRetrievalModel
from selfretrieval_integrations.retrieval import AssessmentConfig, Fusion, RetrievalConfig

TEXTS = [
    "The Eiffel Tower is in Paris and was built for the world fair of 1889 by Gustave Eiffel.",
    "The Colosseum is in Rome; it held gladiator games for centuries before it fell to ruin.",
    "Water boils at 100 degrees Celsius at sea level, and at lower temperatures on mountains.",
    "The Amazon is the largest rainforest, spread over nine countries of South America.",
    "Mount Everest is the highest mountain, on the border of Nepal and China.",
    "Paris has many museums and the Louvre, the most visited museum in the world.",
]
QUERIES = ["where is the tower", "rome games", "boiling water", "rainforest", "highest", "museum"]


@pytest.fixture(scope="module")
def corpus():
    return [
        Passage(id=f"p{i}", doc_id=f"d{i}", title=f"Doc {i}", text=t, metadata={"even": i % 2 == 0})
        for i, t in enumerate(TEXTS)
    ]


@pytest.fixture(scope="module")
def artifact(tiny_model, corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "artifact"
    SelfRetrievalModel.from_base(tiny_model, corpus).save_pretrained(path)
    return path


def test_window_scores_only_the_passage_start(tiny_model, corpus):
    model = SelfRetrievalModel.from_base(tiny_model, corpus)
    config = replace(model.config, assessment=AssessmentConfig(window_tokens=6))
    windowed = SelfRetrievalModel.from_base(tiny_model, corpus, config=config)
    pairs = [(p.title, p.text) for p in corpus]
    cut = [(t, model.renderer.cut_to_tokens(x, 6)[0]) for t, x in pairs]
    assert windowed.assess("paris", pairs) == pytest.approx(model.assess("paris", cut))
    losses = (
        windowed.assessor.refusal_loss("paris", pairs),
        model.assessor.refusal_loss("paris", pairs),
    )
    assert not np.allclose(*losses, rtol=1e-5, atol=0)  # the rest of the passage was not read
    with pytest.raises(ValueError, match="window_tokens"):
        AssessmentConfig(window_tokens=0)
    reconfigured = SelfRetrievalModel.from_base(tiny_model, corpus)
    reconfigured.config = config  # a new config takes effect on the next call
    assert reconfigured.assess("paris", pairs) == pytest.approx(windowed.assess("paris", pairs))


def test_the_scorers_count_their_forward_passes(tiny_model, corpus):
    config = RetrievalConfig(assessment=AssessmentConfig(batch_size=4, method="refusal"))
    model = SelfRetrievalModel.from_base(tiny_model, corpus, config=config)
    scorer = model.assessor.scorer
    before = scorer.forward_passes
    model.assess("paris", [(p.title, p.text) for p in corpus])  # the prefix, then 4 + 2 rows
    assert scorer.forward_passes - before == 3 and scorer.tokens_fed > 0
    model.config = RetrievalConfig(assessment=AssessmentConfig(batch_size=4))
    scorer = model.assessor.context_scorer
    model.assess("paris", [(p.title, p.text) for p in corpus])  # read and score 4, then 2
    assert scorer.forward_passes == 4 and scorer.tokens_fed > 0
    model.assess("rome", [(p.title, p.text) for p in corpus])  # passages cached: score only
    assert scorer.forward_passes == 6


def test_int8_model_retrieves_real_passages_and_refuses_to_be_saved(artifact, tmp_path):
    plain = SelfRetrievalModel.from_pretrained(artifact)
    quantized = SelfRetrievalModel.from_pretrained(artifact, quantize="int8")
    assert "DynamicQuantizedLinear" in repr(quantized.model)
    assert "DynamicQuantizedLinear" not in repr(quantized.model.lm_head)  # the head stays float
    results = quantized.retrieve("where is the tower", k=3)
    assert len(results) == 3 and {r.passage_id for r in results} <= {p.id for p in plain.store}
    relevance = quantized.assess("paris", [p.text for p in plain.store])
    assert relevance == pytest.approx(plain.assess("paris", [p.text for p in plain.store]), abs=0.1)
    assert quantized.batcher().max_batch == 1  # int8 results would depend on the batch
    with pytest.raises(ArtifactError, match="quantize"):
        quantized.save_pretrained(tmp_path / "copy")
    with pytest.raises(ValueError, match="quantize"):
        SelfRetrievalModel.from_pretrained(artifact, quantize="int4")
    with pytest.raises(ValueError, match="trained"):
        SelfRetrievalModel.from_pretrained(artifact, quantize="int8", trainable_adapter=True)


def test_concurrent_aretrieve_calls_are_batched_and_equal_sequential_calls(tiny_model, corpus):
    from selfretrieval_integrations.retrieval.batching import RequestBatcher

    model = SelfRetrievalModel.from_base(tiny_model, corpus)
    assert model.batcher().max_batch == 16  # merging measured 1.3-1.4x on the 2-core CPU
    model._batcher = RequestBatcher(model, max_batch=16)
    calls = [(q, 1 + i % 3, {"even": True} if i % 2 else None) for i, q in enumerate(QUERIES * 2)]
    expected = [model.retrieve(q, k=k, filter=f) for q, k, f in calls]

    async def together():
        return await asyncio.gather(*(model.aretrieve(q, k=k, filter=f) for q, k, f in calls))

    got = asyncio.run(together())
    for want, have in zip(expected, got, strict=True):
        assert [r.passage_id for r in have] == [r.passage_id for r in want]
        assert [r.score for r in have] == pytest.approx([r.score for r in want], abs=1e-4)
    assert model.batcher().batches < len(calls)  # merged, not one decode per call


def test_a_bad_call_fails_alone_in_its_batch(tiny_model, corpus):
    model = SelfRetrievalModel.from_base(tiny_model, corpus)

    async def together():
        return await asyncio.gather(
            model.aretrieve("rome", k=2),
            model.aretrieve("   ", k=2),
            model.aretrieve("paris", k=2),
            return_exceptions=True,
        )

    good, bad, other = asyncio.run(together())
    assert isinstance(bad, QueryError)
    assert [r.passage_id for r in good] == [r.passage_id for r in model.retrieve("rome", k=2)]
    assert len(other) == 2
    model.batcher().close()
    assert len(asyncio.run(model.aretrieve("paris", k=1))) == 1  # a closed batcher restarts


def test_exact_ranks_keeps_the_first_places_and_assesses_fewer_passages(tiny_model, corpus):
    # The logprob fusion's bound, with the refusal: the tiny model's query likelihood is far
    # below 1, so its bound never bites.
    refusal = RetrievalConfig(fusion=Fusion.LOGPROB, assessment=AssessmentConfig(method="refusal"))
    every = SelfRetrievalModel.from_base(tiny_model, corpus, config=refusal)
    config = replace(every.config, assessment=AssessmentConfig(exact_ranks=1, method="refusal"))
    first = SelfRetrievalModel.from_base(tiny_model, corpus, config=config)
    rows = {}
    for name, model in (("every", every), ("first", first)):
        before = model.assessor.passages_assessed
        rows[name] = [model.retrieve(q, k=6) for q in QUERIES]
        rows[name + "_scored"] = model.assessor.passages_assessed - before
    for full, bounded in zip(rows["every"], rows["first"], strict=True):
        assert bounded[0].passage_id == full[0].passage_id
        assert bounded[0].score == pytest.approx(full[0].score, abs=1e-4)
        assert sorted(r.passage_id for r in bounded) == sorted(r.passage_id for r in full)
        scores = [r.score for r in bounded]
        assert scores == sorted(scores, reverse=True)
        for r in bounded:  # a skipped passage ranks by its generation score, its bound
            if r.relevance is None:
                assert r.score == pytest.approx(r.generation_logprob)
    assert rows["every_scored"] == 6 * len(QUERIES)  # k places exact: every candidate assessed
    assert rows["first_scored"] < rows["every_scored"]
    with pytest.raises(ValueError, match="exact_ranks"):
        AssessmentConfig(exact_ranks=0)
