"""Helpers of the training-data tests."""

from __future__ import annotations

from selfretrieval_trainer.data import MixConfig, build_training_set

from selfretrieval_integrations.corpus import ChunkingConfig, Corpus
from selfretrieval_integrations.retrieval import IGNORE_INDEX, PromptTemplate

TEMPLATE = PromptTemplate()


def build_full(renderer, q, seed=0, mix=None):
    """The quickstart's training set with queries, qrels and answers (mixed negatives unless
    ``mix`` says otherwise)."""
    return build_training_set(
        renderer,
        q["corpus"],
        q["trie"],
        queries=q["queries"],
        qrels=q["qrels"],
        answers=q["answers"],
        mix=mix or MixConfig(negatives="mixed", n_negatives=2, seed=seed),
    )


def prompt_length(example) -> int:
    return next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)


def trained_labels(example) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


def as_tuples(training_set):
    return [(e.input_ids, e.labels, e.metadata) for e in training_set.examples]


def chunked_corpus() -> Corpus:
    paragraphs = [
        "Paris is the capital and largest city of France with many residents.",
        "The Eiffel Tower was completed in 1889 for the World Fair in Paris.",
        "The Louvre is the most visited museum in the world and holds the Mona Lisa.",
    ]
    return Corpus.from_documents(
        [
            {"id": "paris", "title": "Paris", "text": "\n\n".join(paragraphs)},
            {"id": "rome", "title": "Rome", "text": "Rome is the capital city of Italy today."},
            {"id": "oslo", "title": "Oslo", "text": "Oslo is the capital of Norway in the north."},
        ],
        ChunkingConfig(max_words=15),
    )
