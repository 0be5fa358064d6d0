"""LlamaIndex adapters on the tiny model: nodes, MetadataFilters, async without blocking, 16
concurrent calls, the reranker's events, persistence, a query engine with a mock LLM, training,
and one model serving both frameworks."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import Document, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from pydantic import Field, ValidationError
from selfretrieval_trainer.train import TrainingConfig

from selfretrieval_integrations import ArtifactError, QueryError, rerank
from selfretrieval_integrations.llama_index import (
    SETTINGS_FILE,
    SelfReranker,
    SelfRetriever,
    nodes_to_corpus,
)

from .helpers import QUERIES, DecodeProbe, build_model


@pytest.fixture(scope="module")
def model(tiny_model):
    return build_model(tiny_model)


def ids(nodes):
    return [n.node.node_id for n in nodes]


def test_nodes_carry_passage_ids_metadata_source_and_scores(model):
    expected = model.retrieve("bridges", k=3)
    nodes = SelfRetriever(model, similarity_top_k=3).retrieve("bridges")
    assert ids(nodes) == [r.passage_id for r in expected]
    for node, result in zip(nodes, expected, strict=True):
        assert isinstance(node, NodeWithScore) and isinstance(node.node, TextNode)
        assert node.score == pytest.approx(result.score)
        assert node.node.text == result.text
        assert node.node.ref_doc_id == result.doc_id
        meta = node.node.metadata
        assert (meta["passage_id"], meta["doc_id"], meta["title"]) == (
            result.passage_id,
            result.doc_id,
            result.title,
        )
        assert meta["group"] == result.metadata["group"]
        assert "passage_id" not in node.node.get_content(metadata_mode="llm")  # ids hidden


def test_metadata_filters_restrict_generation(model):
    def retrieve(filters):
        return set(ids(SelfRetriever(model, similarity_top_k=12, filters=filters).retrieve("q")))

    gt = MetadataFilters(filters=[MetadataFilter(key="n", value=8, operator=FilterOperator.GT)])
    assert retrieve(gt) == {"p9", "p10", "p11"}
    either = MetadataFilters(
        filters=[
            MetadataFilter(key="doc_id", value="d0"),
            MetadataFilter(key="tags", value=["even"], operator=FilterOperator.ALL),
        ],
        condition=FilterCondition.OR,
    )
    assert retrieve(either) == {"p0", "p1", "p3", "p5", "p7", "p9", "p11"}
    nested_not = MetadataFilters(
        filters=[
            MetadataFilter(key="group", value="a"),
            MetadataFilters(
                filters=[MetadataFilter(key="title", value="ivers", operator="text_match")]
            ),
        ],
        condition=FilterCondition.NOT,
    )
    assert retrieve(nested_not) == {"p3", "p6", "p9"}  # group b and not about rivers
    assert retrieve({"group": "b", "n": {"$lt": 5}}) == {"p0", "p3"}  # the library's own form
    none = MetadataFilters(filters=[MetadataFilter(key="missing", value=1)])
    assert retrieve(none) == set()


def test_bad_arguments_are_refused_clearly(model):
    for bad in (0, True, 1.5):
        with pytest.raises(QueryError, match="similarity_top_k must be a positive integer"):
            SelfRetriever(model, similarity_top_k=bad)
    with pytest.raises(QueryError, match="filter must be a mapping"):
        SelfRetriever(model, filters="group = a")
    with pytest.raises(QueryError, match="is empty"):
        SelfRetriever(model, filters=MetadataFilters(filters=[]))
    with pytest.raises(QueryError, match="needs a list"):
        SelfRetriever(
            model,
            filters=MetadataFilters(filters=[MetadataFilter(key="t", value="x", operator="any")]),
        )
    with pytest.raises(QueryError, match="score_threshold must be a number"):
        SelfRetriever(model, score_threshold="0.5")
    with pytest.raises(TypeError, match="model must be a SelfRetrievalModel"):
        SelfRetriever(None)
    with pytest.raises(QueryError, match="query is empty"):
        SelfRetriever(model).retrieve("")


def test_aretrieve_runs_off_the_event_loop(model, monkeypatch):
    retriever = SelfRetriever(model, similarity_top_k=2)
    expected = ids(retriever.retrieve("planets"))
    probe = DecodeProbe(model, monkeypatch)
    probe.gate = threading.Event()

    async def scenario():
        task = asyncio.create_task(retriever.aretrieve("planets"))
        await asyncio.sleep(0.05)  # a blocking _aretrieve would hold the loop here
        probe.gate.set()
        return await task

    assert ids(asyncio.run(scenario())) == expected
    assert probe.threads and threading.get_ident() not in probe.threads


def test_sixteen_concurrent_aretrieve_match_sequential_calls_on_one_model(model, monkeypatch):
    retriever = SelfRetriever(model, similarity_top_k=3)
    sequential = [retriever.retrieve(q) for q in QUERIES]
    probe = DecodeProbe(model, monkeypatch)

    async def concurrent():
        return await asyncio.gather(*(retriever.aretrieve(q) for q in QUERIES))

    results = asyncio.run(concurrent())
    assert [ids(r) for r in results] == [ids(r) for r in sequential]
    for got, want in zip(results, sequential, strict=True):  # up to a larger batch's rounding
        assert [n.score for n in got] == pytest.approx([n.score for n in want], abs=1e-5)
    assert probe.calls < len(QUERIES)  # merged by the model's batcher
    assert len(probe.threads) == 1  # decoded on the compute thread
    assert probe.max_active == 1  # one batch at a time


class Recorder(BaseEventHandler):
    events: list = Field(default_factory=list)

    def handle(self, event, **kwargs):
        self.events.append(event)


@pytest.fixture
def recorded_events():
    root = get_dispatcher()
    handler = Recorder()
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers.remove(handler)


def test_reranker_uses_rerank_emits_events_and_keeps_inputs(model, recorded_events):
    nodes = [
        NodeWithScore(node=TextNode(id_=f"n{i}", text=t, metadata={"title": t.split()[0]}), score=1)
        for i, t in enumerate(["Rivers flow.", "Planets orbit.", "Birds fly.", "Tides turn."])
    ]
    debug = LlamaDebugHandler()
    reranker = SelfReranker(model, top_n=2, callback_manager=CallbackManager([debug]))
    out = reranker.postprocess_nodes(nodes, query_str="planets")
    pairs = [(n.node.metadata["title"], n.node.text) for n in nodes]
    expected = rerank(model, "planets", pairs, scores=[n.score for n in nodes])
    assert ids(out) == [nodes[r.index].node.node_id for r in expected[:2]]
    assert [n.score for n in out] == pytest.approx([r.score for r in expected[:2]])
    assert all(n.score == 1 for n in nodes)  # new NodeWithScore objects, inputs untouched
    start = [e for e in recorded_events if isinstance(e, ReRankStartEvent)]
    end = [e for e in recorded_events if isinstance(e, ReRankEndEvent)]
    assert len(start) == 1 and start[0].top_n == 2 and len(start[0].nodes) == 4
    assert len(end) == 1 and ids(end[0].nodes) == ids(out)
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 1
    again = asyncio.run(reranker.apostprocess_nodes(nodes, QueryBundle("planets")))
    assert ids(again) == ids(out)


def test_reranker_refuses_a_missing_query_and_bad_top_n(model):
    reranker = SelfReranker(model)
    node = NodeWithScore(node=TextNode(text="x"))
    with pytest.raises(QueryError, match="needs the query"):
        reranker.postprocess_nodes([node])
    assert reranker.postprocess_nodes([], query_str="q") == []
    with pytest.raises(ValidationError, match="top_n must be a positive integer"):
        SelfReranker(model, top_n=0)
    with pytest.raises(TypeError, match="model must be a SelfRetrievalModel"):
        SelfReranker("model")


def test_persist_and_from_persist_dir_round_trip(model, tmp_path):
    filters = MetadataFilters(filters=[MetadataFilter(key="group", value="a")])
    retriever = SelfRetriever(model, similarity_top_k=3, filters=filters, score_threshold=-1e9)
    retriever.persist(tmp_path / "r")
    loaded = SelfRetriever.from_persist_dir(tmp_path / "r", device="cpu", dtype="float32")
    assert loaded.similarity_top_k == 3 and loaded.score_threshold == -1e9
    assert loaded.filters == filters
    assert ids(loaded.retrieve("rivers")) == ids(retriever.retrieve("rivers"))
    override = SelfRetriever.from_persist_dir(tmp_path / "r", similarity_top_k=1, filters=None)
    assert len(override.retrieve("rivers")) == 1
    SelfRetriever(model, filters={"n": {"$lt": 4}}).persist(tmp_path / "m")
    assert SelfRetriever.from_persist_dir(tmp_path / "m").filters == {"n": {"$lt": 4}}
    with pytest.raises(QueryError, match="cannot persist a function filter"):
        SelfRetriever(model, filters=lambda p: True).persist(tmp_path / "c")
    (tmp_path / "m" / SETTINGS_FILE).write_text(json.dumps({"filters": {"mapping": 1, "x": 2}}))
    with pytest.raises(ArtifactError, match="not a valid settings file"):
        SelfRetriever.from_persist_dir(tmp_path / "m")
    (tmp_path / "m" / SETTINGS_FILE).unlink()  # any artifact folder loads, with defaults
    assert SelfRetriever.from_persist_dir(tmp_path / "m").similarity_top_k == 4


def test_retriever_and_reranker_inside_a_query_engine_with_a_mock_llm(model):
    engine = RetrieverQueryEngine.from_args(
        SelfRetriever(model, similarity_top_k=4),
        llm=MockLLM(max_tokens=5),
        node_postprocessors=[SelfReranker(model, top_n=2)],
    )
    response = engine.query("Which bird flies highest?")
    assert len(response.source_nodes) == 2
    assert set(ids(response.source_nodes)) <= {f"p{i}" for i in range(12)}
    assert isinstance(response.response, str) and response.response
    async_response = asyncio.run(engine.aquery("Which bird flies highest?"))
    assert ids(async_response.source_nodes) == ids(response.source_nodes)


def test_documents_and_nodes_become_a_corpus():
    docs = [
        Document(id_="a", text="Para one.\n\nPara two.", metadata={"title": "A", "lang": "en"}),
        TextNode(id_="n1", text="A node.", metadata={"title": "N"}),
    ]
    docs[1].relationships = {"1": docs[0].as_related_node_info()}  # SOURCE -> document "a"
    from selfretrieval_integrations import ChunkingConfig

    passages = list(nodes_to_corpus(docs, chunking=ChunkingConfig(max_words=2)))
    assert [(p.id, p.doc_id, p.title) for p in passages] == [
        ("a#0", "a", "A"),
        ("a#1", "a", "A"),
        ("n1", "a", "N"),
    ]
    assert passages[0].metadata == {"lang": "en"}
    with pytest.raises(TypeError, match="a single Document"):
        nodes_to_corpus(docs[0])
    with pytest.raises(TypeError, match="got str"):
        nodes_to_corpus(["text"])


def test_from_documents_trains_with_the_trainer(tmp_path):
    docs = [
        Document(
            id_=f"doc{i}", text=f"Fact {i} is about item {i * 7}.", metadata={"title": f"T{i}"}
        )
        for i in range(4)
    ]
    config = TrainingConfig(epochs=1, batch_size=8, save_steps=1000)
    retriever = SelfRetriever.from_documents(
        docs, base_model="tiny", out=tmp_path / "a", training_config=config, device="cpu"
    )
    assert retriever.model.manifest["training"]["examples"] > 0
    assert {n.node.ref_doc_id for n in retriever.retrieve("item 7")} <= {d.doc_id for d in docs}
    loaded = SelfRetriever.from_persist_dir(tmp_path / "a", device="cpu", dtype="float32")
    assert ids(loaded.retrieve("item 7")) == ids(retriever.retrieve("item 7"))


def test_one_loaded_model_serves_both_frameworks(model):
    from selfretrieval_integrations.langchain import SelfRetriever as LangChainRetriever

    weights = [p.data_ptr() for p in model.model.parameters()]
    lc = LangChainRetriever(model=model, k=3)
    li = SelfRetriever(model, similarity_top_k=3)
    li_reranker = SelfReranker(model)
    assert lc.model is li.model is li_reranker.model is model
    assert [d.id for d in lc.invoke("rivers")] == ids(li.retrieve("rivers"))
    assert [p.data_ptr() for p in model.model.parameters()] == weights
