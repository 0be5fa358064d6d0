"""Queries and qrels: unknown ids are refused, listed in the message."""

from __future__ import annotations

import pytest
from selfretrieval_trainer.data import assessment_examples, supervised_examples, unique_depths

from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.retrieval import build_trie

from .helpers import TEMPLATE, chunked_corpus


def test_unknown_ids_are_listed(renderer, tokenizer):
    corpus = chunked_corpus()
    depths = unique_depths(build_trie(tokenizer, TEMPLATE, corpus))
    queries = {"q": "question"}
    qrels = {"q": {f"missing{i}": 1 for i in range(7)} | {"paris": 1}}
    with pytest.raises(CorpusError, match=r"7 corpus ids.*'missing0'.*'missing4' and 2 more"):
        supervised_examples(renderer, corpus, queries, qrels, None, depths=depths)
    with pytest.raises(CorpusError, match=r"1 query ids.*'nope'"):
        supervised_examples(renderer, corpus, queries, {"nope": {"paris": 1}}, None, depths=depths)
    with pytest.raises(CorpusError, match="missing0"):
        assessment_examples(renderer, corpus, queries, qrels, None, seed=0)
