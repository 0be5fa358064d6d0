"""The whole training set: deterministic for a seed, the counts of each kind, subsets, the checks
of the trie and the mix, and the replay sample of updates."""

from __future__ import annotations

import pytest
from selfretrieval_trainer.data import MixConfig, build_training_set, replay_sample

from selfretrieval_integrations.corpus import Corpus
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.retrieval import build_trie

from .helpers import TEMPLATE, as_tuples, build_full


def test_build_is_deterministic_for_a_seed(renderer, quickstart, full_set):
    def build(seed):
        return build_full(renderer, quickstart, seed)

    assert as_tuples(build(0)) == as_tuples(full_set)
    assert build(0).stats == full_set.stats
    other = build(1)
    assert as_tuples(other) != as_tuples(full_set)
    assert sorted(map(repr, as_tuples(other))) != sorted(map(repr, as_tuples(full_set)))


def test_build_stats(full_set):
    stats = full_set.stats
    kinds = stats["kinds"]
    assert kinds["supervised"] == 160 and kinds["answer"] == 160  # 80 pairs, repeated twice
    assert kinds["assessment_negative"] == 160
    assert "assessment_positive" not in kinds  # the answer examples are the positives
    assert stats["queries_used"] == 80
    assert stats["queries_skipped_no_qrels"] == 102
    assert stats["examples"] == len(full_set) == sum(kinds.values())
    assert stats["tokens"] == sum(len(e) for e in full_set.examples)
    assert stats["mix"]["negatives"] == "mixed"


@pytest.mark.parametrize(("answer_repeats", "answers", "positives"), [(1, 80, 0), (0, 0, 80)])
def test_answer_repeats(renderer, quickstart, answer_repeats, answers, positives):
    q = quickstart
    mix = MixConfig(supervised_repeats=2, answer_repeats=answer_repeats, n_negatives=1)
    kinds = build_full(renderer, q, mix=mix).stats["kinds"]
    assert kinds["supervised"] == 160  # still repeated twice
    assert kinds.get("answer", 0) == answers
    # without answer examples, the relevant passages become affirmation positives
    assert kinds.get("assessment_positive", 0) == positives


def test_indexing_only_and_subset(renderer, quickstart):
    q = quickstart
    full = build_training_set(renderer, q["corpus"], q["trie"])
    assert set(full.stats["kinds"]) == {"indexing"}
    assert {e.metadata["passage"] for e in full.examples} == set(range(len(q["corpus"])))
    subset = build_training_set(renderer, q["corpus"], q["trie"], passages=[3, 7])
    assert {e.metadata["passage"] for e in subset.examples} == {3, 7}
    by_passage = [e for e in full.examples if e.metadata["passage"] in (3, 7)]
    assert sorted(map(repr, as_tuples(subset))) == sorted(
        repr((e.input_ids, e.labels, e.metadata)) for e in by_passage
    )
    with pytest.raises(CorpusError, match="invalid passage indices"):
        build_training_set(renderer, q["corpus"], q["trie"], passages=[99])


def test_indexing_fraction_with_queries(renderer, quickstart):
    q = quickstart
    mix = MixConfig(indexing_fraction_with_queries=0.5, assessment=False, supervised_repeats=1)
    half = build_training_set(
        renderer, q["corpus"], q["trie"], queries=q["queries"], qrels=q["qrels"], mix=mix
    )
    assert half.stats["kinds"]["indexing"] == round(0.5 * half.stats["indexing_before_sampling"])
    alone = build_training_set(renderer, q["corpus"], q["trie"], mix=mix)
    assert alone.stats["kinds"]["indexing"] == alone.stats["indexing_before_sampling"]


def test_one_passage_corpus(renderer, tokenizer):
    corpus = Corpus.from_passages(
        [{"id": "only", "title": "Solo", "text": "The only passage of this very small corpus."}]
    )
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    result = build_training_set(
        renderer,
        corpus,
        trie,
        queries={"q": "What is the only passage?", "other": "unused question"},
        qrels={"q": {"only": 1}},
        mix=MixConfig(negatives="mixed"),
    )
    assert result.stats["kinds"] == {
        "indexing": 1,
        "supervised": 2,
        "assessment_positive": 1,
        "question": 1,
    }
    assert result.stats["negatives_missing"] == 1
    assert result.stats["queries_skipped_no_qrels"] == 1


def test_trie_of_another_corpus_is_refused(renderer, tokenizer, quickstart):
    corpus = quickstart["corpus"]
    other = Corpus(reversed(list(corpus)))  # the same passages, in another order
    with pytest.raises(CorpusError, match="trie does not hold passage"):
        build_training_set(renderer, other, quickstart["trie"])
    small = Corpus.from_passages([{"id": "x", "text": "one two three four five"}])
    with pytest.raises(CorpusError, match="trie holds"):
        build_training_set(renderer, small, quickstart["trie"])
    with pytest.raises(CorpusError, match="without qrels"):
        build_training_set(renderer, corpus, quickstart["trie"], queries={"q": "x"})


def test_mix_config_validation_and_round_trip():
    mix = MixConfig(negatives="bm25", indexing_per_passage=3, seed=5)
    data = mix.to_dict()
    assert data["negatives"] == "bm25" and data["supervised_repeats"] == 2
    assert MixConfig.from_dict(data) == mix
    with pytest.warns(UserWarning, match="unknown keys"):
        assert MixConfig.from_dict({**data, "future": 1}) == mix
    for bad, match in [
        ({"supervised_repeats": -1}, "supervised_repeats"),
        ({"answer_repeats": -1}, "answer_repeats"),
        ({"n_negatives": 1.5}, "n_negatives"),
        ({"indexing_fraction_with_queries": 1.5}, r"\[0, 1\]"),
        ({"indexing_per_passage": 0}, "indexing_per_passage"),
        ({"max_words": 3}, "max_words"),
        (
            {"indexing": False, "supervised_repeats": 0, "assessment": False, "questions": False},
            "every kind",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            MixConfig(**bad)


def test_replay_sample():
    first = replay_sample(100, 10, seed=3)
    assert first == replay_sample(100, 10, seed=3) == sorted(first)
    assert len(set(first)) == 10 and all(0 <= i < 100 for i in first)
    assert replay_sample(100, 10, seed=4) != first
    assert replay_sample(5, 10, seed=0) == [0, 1, 2, 3, 4]
    assert replay_sample([10, 20, 30], 2, seed=0, exclude=[20]) == [10, 30]
    assert not set(replay_sample(50, 40, seed=1, exclude=range(10))) & set(range(10))
    assert replay_sample(0, 3, seed=0) == []
