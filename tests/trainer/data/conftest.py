"""Fixtures of the training-data tests: the tiny tokenizer and the bundled corpus with its trie,
queries, qrels and answers, built once per session (tests must not change them)."""

from __future__ import annotations

import pytest
from selfretrieval_trainer.data import answers_from_metadata

from selfretrieval_integrations.corpus import (
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.retrieval import Renderer, build_trie

from .helpers import TEMPLATE, build_full


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    return tiny_model[1]


@pytest.fixture(scope="session")
def renderer(tokenizer):
    return Renderer(tokenizer, TEMPLATE)


@pytest.fixture(scope="session")
def quickstart(tokenizer):
    folder = quickstart_dir()
    corpus = load_corpus(folder)
    return {
        "corpus": corpus,
        "trie": build_trie(tokenizer, TEMPLATE, corpus),
        "queries": load_beir_queries(folder),
        "qrels": load_beir_qrels(folder, "train"),
        "answers": answers_from_metadata(load_beir_query_metadata(folder)),
    }


@pytest.fixture(scope="session")
def full_set(renderer, quickstart):
    """Every kind of example of the bundled corpus (mixed negatives, two per pair)."""
    return build_full(renderer, quickstart)
