"""Supervised and answer examples: document ids stand for their passages (those with the
answer when known), the loss of answer examples is on the answer only."""

from __future__ import annotations

from selfretrieval_trainer.data import supervised_examples, unique_depths

from selfretrieval_integrations.retrieval import build_trie

from .helpers import TEMPLATE, chunked_corpus, trained_labels


def test_document_ids_resolve_to_answer_chunks(renderer, tokenizer):
    corpus = chunked_corpus()
    assert corpus.passages_of("paris") == [0, 1, 2]
    depths = unique_depths(build_trie(tokenizer, TEMPLATE, corpus))
    queries = {"q1": "When was the Eiffel Tower completed?", "q2": "What is in Paris?"}
    qrels = {"q1": {"paris": 1}, "q2": {"paris": 1}}
    answers = {"q1": ["1889"]}
    examples = supervised_examples(renderer, corpus, queries, qrels, answers, depths=depths)
    pairs = [(e.metadata["kind"], e.metadata["query"], e.metadata["passage"]) for e in examples]
    assert pairs == [
        ("supervised", "q1", 1),
        ("answer", "q1", 1),
        ("supervised", "q2", 0),
        ("supervised", "q2", 1),
        ("supervised", "q2", 2),
    ]
    answer = examples[1]
    assert trained_labels(answer) == renderer.answer_ids("1889")
    assert answer.input_ids[-len(trained_labels(answer)) :] == renderer.answer_ids("1889")
    # A passage id works too, and relevance 0 is ignored.
    examples = supervised_examples(
        renderer,
        corpus,
        {"q": "Louvre?"},
        {"q": {"paris#2": 1, "rome": 0}},
        None,
        depths=depths,
        full_target=True,
    )
    (only,) = examples
    target = renderer.encode_target(corpus[2].title, corpus[2].text)
    assert trained_labels(only) == list(target.ids)
