"""Deleting and adding through the framework retrievers: they act on the shared model."""

from __future__ import annotations

import pytest

from selfretrieval_integrations import ArtifactError

from .helpers import build_model

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")


def test_langchain_delete_takes_effect_on_the_next_call_for_every_retriever(tiny_model):
    from selfretrieval_integrations.langchain import SelfRetriever

    model = build_model(tiny_model)
    retriever, other = SelfRetriever(model=model, k=12), SelfRetriever(model=model, k=12)
    assert "d1" in {d.metadata["doc_id"] for d in retriever.invoke("rivers")}
    assert retriever.delete(["d1", "p0"]) == 3
    for each in (retriever, other):
        found = {d.metadata["doc_id"] for d in each.invoke("rivers")}
        assert found and found.isdisjoint({"d1"}) and "p0" not in {d.id for d in each.invoke("x")}


def test_llama_index_delete_ref_doc_and_nodes(tiny_model):
    from llama_index.core.schema import QueryBundle

    from selfretrieval_integrations.llama_index import SelfRetriever

    retriever = SelfRetriever(build_model(tiny_model), similarity_top_k=12)
    assert retriever.delete_ref_doc("d2") == 2
    assert retriever.delete_nodes(["p0"]) == 1
    nodes = retriever.retrieve(QueryBundle("planets"))
    assert {n.node.metadata["doc_id"] for n in nodes}.isdisjoint({"d2"})
    assert "p0" not in {n.node.node_id for n in nodes}


def test_adding_needs_an_artifact_to_train_into(tiny_model):
    from langchain_core.documents import Document

    from selfretrieval_integrations.langchain import SelfRetriever

    retriever = SelfRetriever(model=build_model(tiny_model))
    with pytest.raises(ArtifactError, match="save_pretrained"):
        retriever.add_documents([Document(page_content="new text", id="new")])
