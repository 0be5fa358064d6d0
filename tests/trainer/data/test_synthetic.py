"""Rule-made questions: an answer-like span asked for by its wh-word, kept when BM25 finds the
passage; in the training set they retrieve their passage and read untrained passages."""

from __future__ import annotations

from selfretrieval_trainer.data import MixConfig
from selfretrieval_trainer.data.synthetic import sentence_questions, synthetic_questions

from .helpers import build_full, trained_labels


def test_each_answer_like_span_is_asked_for():
    questions = sentence_questions("Genghis Khan founded the Mongol Empire in 1206.")
    assert questions == [
        "Genghis Khan founded the Mongol Empire when?",
        "What founded the Mongol Empire in 1206?",
        "Genghis Khan founded the what in 1206?",
    ]
    counted = sentence_questions("Florida had 821,784 residents, more than Georgia.")
    assert "Florida had how many residents, more than Georgia?" in counted
    assert sentence_questions("it rained all day") == []  # nothing to ask for


def test_round_trip_keeps_questions_that_find_their_passage(quickstart):
    corpus = quickstart["corpus"]
    made = synthetic_questions(corpus, range(len(corpus)), per_passage=2, seed=0)
    assert set(made) == set(range(len(corpus)))
    assert all(len(questions) <= 2 for questions in made.values())
    assert sum(map(len, made.values())) > len(corpus)  # most passages keep two
    from selfretrieval_integrations.index import BM25Index

    bm25 = BM25Index(list(corpus))
    for p, questions in made.items():
        for question in questions:
            assert question.endswith("?")
            assert p in bm25.search([question], 3)[0][0]
    assert synthetic_questions(corpus, range(4), per_passage=2, seed=0) == {
        p: made[p] for p in range(4)
    }  # seeded per passage: another subset gives the same questions


def test_training_set_with_synthetic_questions(renderer, quickstart):
    few = dict(list(quickstart["qrels"].items())[:10])  # most passages have no question
    data = {**quickstart, "qrels": few}
    training = build_full(renderer, data, mix=MixConfig(synthetic_questions=2))
    by_kind: dict[str, list] = {}
    for example in training.examples:
        by_kind.setdefault(example.metadata["kind"], []).append(example)
    asked = {e.metadata["passage"] for e in by_kind["question"]}
    assert training.stats["kinds"]["synthetic"] == len(by_kind["synthetic"]) > 0
    reading = by_kind["synthetic_question"]
    assert reading and not {e.metadata["passage"] for e in reading} & asked
    # a synthetic question retrieves its passage with the indexing examples' target
    targets = {}
    for example in by_kind["indexing"]:
        targets[example.metadata["passage"]] = trained_labels(example)
    for example in by_kind["synthetic"]:
        assert trained_labels(example) == targets[example.metadata["passage"]]
    for example in reading:
        assert trained_labels(example)[-1] == renderer.eos_id
    without = build_full(renderer, data, mix=MixConfig())
    assert "synthetic" not in without.stats["kinds"]
