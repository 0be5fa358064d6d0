"""LangChain adapters on the tiny model: the standard retriever suite, metadata, per-call options,
filters as access control, async without blocking, 16 concurrent calls, reranking, training."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from pydantic import ValidationError
from selfretrieval_trainer.train import TrainingConfig

from selfretrieval_integrations import QueryError, RerankConfig, SelfRetrievalModel, rerank
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.langchain import SelfReranker, SelfRetriever, documents_to_corpus

from .helpers import QUERIES, DecodeProbe, build_model


@pytest.fixture(scope="module")
def model(tiny_model):
    return build_model(tiny_model)


class TestSelfRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's own contract tests, unchanged."""

    @pytest.fixture(autouse=True)
    def _shared_model(self, model):
        type(self).shared_model = model

    @property
    def retriever_constructor(self) -> type[SelfRetriever]:
        return SelfRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"model": self.shared_model}

    @property
    def retriever_query_example(self) -> str:
        return "Which river is the longest?"


def test_documents_carry_ids_metadata_and_scores_in_model_order(model):
    expected = model.retrieve("facts about birds", k=3)
    docs = SelfRetriever(model=model, k=3).invoke("facts about birds")
    assert [d.id for d in docs] == [r.passage_id for r in expected]
    for doc, result in zip(docs, expected, strict=True):
        assert doc.page_content == result.text
        assert doc.metadata["passage_id"] == result.passage_id
        assert doc.metadata["doc_id"] == result.doc_id
        assert doc.metadata["title"] == result.title
        assert doc.metadata["score"] == pytest.approx(result.score)
        assert doc.metadata["rank"] == result.rank
        assert doc.metadata["n"] == result.metadata["n"]  # the passage's own metadata is kept


def test_per_call_options_override_k_and_threshold(model):
    retriever = SelfRetriever(model=model, k=4)
    assert len(retriever.invoke("rivers")) == 4
    assert len(retriever.invoke("rivers", k=2)) == 2
    scores = [d.metadata["score"] for d in retriever.invoke("rivers", k=6)]
    cut = sorted(scores)[len(scores) // 2]
    kept = retriever.invoke("rivers", k=6, score_threshold=cut)
    assert kept and all(d.metadata["score"] >= cut for d in kept)
    assert len(kept) == sum(s >= cut for s in scores)
    strict = SelfRetriever(model=model, k=6, score_threshold=max(scores) + 1)
    assert strict.invoke("rivers") == []
    assert len(strict.invoke("rivers", k=2, score_threshold=min(scores))) == 2


def test_filter_is_enforced_and_a_call_filter_cannot_widen_it(model):
    allowed = {"p0", "p3", "p6", "p9"}  # group "b"
    retriever = SelfRetriever(model=model, k=10, filter={"group": "b"})
    assert {d.id for d in retriever.invoke("anything")} == allowed
    narrowed = retriever.invoke("anything", filter={"n": {"$gte": 6}})
    assert {d.id for d in narrowed} == {"p6", "p9"}
    assert retriever.invoke("anything", filter={"group": "a"}) == []  # both filters apply
    assert {d.id for d in retriever.invoke("anything", filter=lambda p: p.doc_id == "d0")} == {"p0"}
    mask = np.zeros(len(model.store), dtype=bool)
    mask[[0, 1]] = True
    assert {d.id for d in SelfRetriever(model=model, filter=mask).invoke("x")} == {"p0", "p1"}


def test_bad_arguments_are_refused_clearly(model):
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValidationError, match="k must be a positive integer"):
            SelfRetriever(model=model, k=bad)
    with pytest.raises(ValidationError, match=r"unknown filter operator '\$like'"):
        SelfRetriever(model=model, filter={"title": {"$like": "x"}})
    with pytest.raises(ValidationError, match="filter must be a mapping"):
        SelfRetriever(model=model, filter=42)
    with pytest.raises(ValidationError, match="score_threshold must be a number"):
        SelfRetriever(model=model, score_threshold="high")
    with pytest.raises(TypeError, match="model must be a SelfRetrievalModel"):
        SelfRetriever(model="selfretrieval-quickstart")
    retriever = SelfRetriever(model=model)
    with pytest.raises(ValidationError, match="k must be a positive integer"):
        retriever.k = 0  # assignment is validated too
    with pytest.raises(QueryError, match=r"unknown retriever argument\(s\) \['top_k'\]"):
        retriever.invoke("rivers", top_k=2)
    with pytest.raises(QueryError, match="k must be a positive integer"):
        retriever.invoke("rivers", k=0)
    with pytest.raises(QueryError, match="unknown filter operator"):
        retriever.invoke("rivers", filter={"n": {"$between": [1, 2]}})
    with pytest.raises(QueryError, match="query is empty"):
        retriever.invoke("   ")
    with pytest.raises(QueryError, match="boolean array of shape"):
        retriever.invoke("rivers", filter=np.ones(3, dtype=bool))


def test_ainvoke_runs_off_the_event_loop(model, monkeypatch):
    """The decoder waits for a gate that only the running event loop opens: a blocking
    ``_aget_relevant_documents`` would hold the loop and never see it open."""
    retriever = SelfRetriever(model=model, k=2)
    expected = retriever.invoke("volcanoes")
    probe = DecodeProbe(model, monkeypatch)
    probe.gate = threading.Event()

    async def scenario():
        task = asyncio.create_task(retriever.ainvoke("volcanoes"))
        await asyncio.sleep(0.05)  # the task has started; the loop must still be ours
        probe.gate.set()
        return await task

    assert asyncio.run(scenario()) == expected
    assert probe.threads and threading.get_ident() not in probe.threads


def test_sixteen_concurrent_ainvoke_match_sequential_calls_on_one_model(model, monkeypatch):
    retrievers = [SelfRetriever(model=model, k=3) for _ in range(4)]
    sequential = [retrievers[i % 4].invoke(q) for i, q in enumerate(QUERIES)]
    probe = DecodeProbe(model, monkeypatch)

    async def concurrent():
        return await asyncio.gather(*(retrievers[i % 4].ainvoke(q) for i, q in enumerate(QUERIES)))

    results = asyncio.run(concurrent())
    # Merged into batches: the same documents in the same order, scores equal up to the float
    # rounding of a larger batch.
    assert [[_without_score(d) for d in r] for r in results] == [
        [_without_score(d) for d in r] for r in sequential
    ]
    for got, want in zip(results, sequential, strict=True):
        assert [d.metadata["score"] for d in got] == pytest.approx(
            [d.metadata["score"] for d in want], abs=1e-5
        )
    assert probe.calls < len(QUERIES)  # the model's batcher merged them...
    assert len(probe.threads) == 1  # ...and the compute thread decoded, off the event loop...
    assert probe.max_active == 1  # ...one batch at a time
    assert all(r.model is model for r in retrievers)  # one shared model, never copied


def _without_score(document: Document) -> tuple:
    metadata = {key: value for key, value in document.metadata.items() if key != "score"}
    return document.id, document.page_content, metadata


@pytest.fixture(scope="module")
def bm25_like_docs():
    """Documents from a retriever that is not Self-Retrieval (an in-memory vector store)."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(
        [
            Document(page_content=f"Note {i} on {topic}.", metadata={"title": topic.title()})
            for i, topic in enumerate(["rivers", "planets", "birds", "bridges", "tides"])
        ]
    )
    return store.as_retriever(search_kwargs={"k": 5}).invoke("planets")


def test_reranker_reorders_any_retrievers_documents_with_rerank(model, bm25_like_docs):
    docs = bm25_like_docs
    originals = [d.model_copy(deep=True) for d in docs]
    out = SelfReranker(model=model, top_n=3).compress_documents(docs, "planets")
    pairs = [(d.metadata["title"], d.page_content) for d in docs]
    expected = rerank(model, "planets", pairs, top_n=3)
    assert [d.page_content for d in out] == [docs[r.index].page_content for r in expected]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [r.score for r in expected]
    )
    assert [d.metadata["self_assessment"] for d in out] == pytest.approx(
        [r.relevance for r in expected]
    )
    assert docs == originals  # copies were annotated, the inputs are untouched
    by_assessment = SelfReranker(model=model, top_n=None, config=RerankConfig(method="assessment"))
    ranked = by_assessment.compress_documents(docs, "planets")
    assert len(ranked) == len(docs)
    relevance = [d.metadata["self_assessment"] for d in ranked]
    assert relevance == sorted(relevance, reverse=True)
    assert asyncio.run(by_assessment.acompress_documents(docs, "planets")) == ranked


def test_reranker_refuses_bad_input(model):
    with pytest.raises(ValidationError, match="top_n must be a positive integer"):
        SelfReranker(model=model, top_n=0)
    reranker = SelfReranker(model=model)
    with pytest.raises(TypeError, match="LangChain Document"):
        reranker.compress_documents(["plain text"], "q")
    with pytest.raises(QueryError, match="query is empty"):
        reranker.compress_documents([Document(page_content="x")], "")
    assert reranker.compress_documents([], "q") == []


LC_DOCS = [
    Document(
        id=f"doc{i}", page_content=f"Fact {i} is about item {i * 7}.", metadata={"title": f"T{i}"}
    )
    for i in range(5)
]


def test_documents_become_a_corpus_with_ids_titles_and_metadata():
    docs = [
        Document(id="a", page_content="First text.", metadata={"title": "A", "lang": "en"}),
        Document(page_content="Second text.", metadata={"lang": "de"}),
    ]
    corpus = documents_to_corpus(docs)
    first, second = list(corpus)
    assert (first.id, first.doc_id, first.title, first.metadata) == (
        "a#0",
        "a",
        "A",
        {"lang": "en"},
    )
    assert (second.doc_id, second.title) == ("doc-1", "")
    with pytest.raises(TypeError, match="a single Document"):
        documents_to_corpus(docs[0])
    with pytest.raises(TypeError, match="expected LangChain Document objects, got str"):
        documents_to_corpus(["text"])
    with pytest.raises(ValueError, match="no LangChain Document objects given"):
        documents_to_corpus([])
    with pytest.raises(CorpusError, match="JSON"):
        documents_to_corpus([Document(page_content="x", metadata={"when": object()})])


def test_from_documents_zero_shot_shares_nothing_but_the_given_model(tiny_model):
    retriever = SelfRetriever.from_documents(LC_DOCS, base_model=tiny_model, train=False, k=2)
    docs = retriever.invoke("item 14")
    assert len(docs) == 2 and {d.metadata["doc_id"] for d in docs} <= {f"doc{i}" for i in range(5)}
    assert retriever.model.model is tiny_model[0]  # the loaded weights, not a copy
    with pytest.raises(ValueError, match="only used with train=True"):
        SelfRetriever.from_documents(LC_DOCS, base_model=tiny_model, train=False, queries={})


def test_from_documents_trains_with_the_trainer_and_reloads(tmp_path):
    config = TrainingConfig(epochs=1, batch_size=8, save_steps=1000)
    out = tmp_path / "artifact"
    retriever = SelfRetriever.from_documents(
        LC_DOCS, base_model="tiny", out=out, training_config=config, device="cpu", k=2
    )
    assert retriever.model.manifest["training"]["examples"] > 0
    reloaded = SelfRetriever.from_pretrained(out, device="cpu", dtype="float32", k=2)
    assert [d.id for d in reloaded.invoke("item 14")] == [d.id for d in retriever.invoke("item 14")]
    temporary = SelfRetriever.from_documents(
        LC_DOCS[:2], base_model="tiny", training_config=config, device="cpu", k=1
    )
    assert isinstance(temporary.model, SelfRetrievalModel)
    assert temporary.model.manifest["training"]["examples"] > 0
    assert len(temporary.invoke("item 7")) == 1
