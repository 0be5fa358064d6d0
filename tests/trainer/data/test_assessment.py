"""Self-assessment examples: the refusal after negatives, which are never relevant; the answer
or the affirmation after positives."""

from __future__ import annotations

import pytest
from selfretrieval_trainer.data import MixConfig, NegativeSampling, assessment_examples

from selfretrieval_integrations.corpus import Corpus, cut_words

from .helpers import TEMPLATE, chunked_corpus, trained_labels


@pytest.mark.parametrize("negatives", ["same_doc", "bm25", "mixed"])
def test_assessment_labels_and_negatives(renderer, quickstart, negatives):
    q = quickstart
    corpus = q["corpus"]
    examples = assessment_examples(
        renderer,
        corpus,
        q["queries"],
        q["qrels"],
        q["answers"],
        seed=1,
        negatives=negatives,
        n_negatives=2,
    )
    refusal = renderer.refusal_ids()
    counts = {"positive": 0, "negative": 0}
    seen: dict[str, list[int]] = {}
    for example in examples:
        meta = example.metadata
        qid, p = meta["query"], meta["passage"]
        relevant = {corpus.passages_of(doc)[0] for doc in q["qrels"][qid]}
        labelled = trained_labels(example)
        assert example.input_ids[-len(labelled) :] == labelled  # loss on the answer only
        counts[meta["label"]] += 1
        if meta["label"] == "negative":
            assert labelled == refusal
            assert p not in relevant
            text = corpus[p].text.lower()
            assert not any(a.lower() in text for a in q["answers"][qid])
            seen.setdefault(qid, []).append(p)
        else:
            assert p in relevant
            passage_text = cut_words(corpus[p].text, 300)
            answer = next(
                (a for a in q["answers"][qid] if a.lower() in passage_text.lower()),
                q["answers"][qid][0],
            )
            assert labelled == renderer.answer_ids(answer)
    assert counts == {"positive": 80, "negative": 160}
    assert all(len(set(ps)) == len(ps) for ps in seen.values())  # distinct within a query
    if negatives == "bm25":
        assert {e.metadata.get("source") for e in examples} - {None} <= {"bm25", "random"}


def test_positives_without_answers_get_the_affirmation(renderer, quickstart):
    q = quickstart
    examples = assessment_examples(
        renderer, q["corpus"], q["queries"], q["qrels"], None, seed=0, n_negatives=0
    )
    assert len(examples) == 80
    affirmation = renderer.answer_ids(TEMPLATE.affirmation)
    assert all(trained_labels(e) == affirmation for e in examples)


def test_assessment_passages_are_cut_like_at_retrieval(renderer):
    words = " ".join(f"w{i}" for i in range(400))
    corpus = Corpus.from_passages(
        [{"id": "a", "title": "A", "text": words}, {"id": "b", "title": "B", "text": words + "."}]
    )
    (positive, negative) = assessment_examples(
        renderer, corpus, {"q": "query"}, {"q": {"a": 1}}, None, seed=0, max_passage_words=20
    )
    context = renderer.assessment_context_ids("A", cut_words(words, 20))
    prompt = renderer.encode_prompt("query")
    assert positive.input_ids[len(prompt) : len(prompt) + len(context)] == context
    assert negative.metadata["source"] == "random" and negative.metadata["passage"] == 1


def test_same_doc_negatives_avoid_the_answer(renderer):
    corpus = chunked_corpus()
    examples = assessment_examples(
        renderer,
        corpus,
        {"q": "When was the Eiffel Tower completed?"},
        {"q": {"paris": 1}},
        {"q": ["1889"]},
        seed=0,
        n_negatives=2,
    )
    negatives = {e.metadata["passage"]: e.metadata["source"] for e in examples[1:]}
    assert examples[0].metadata["passage"] == 1
    assert negatives == {0: "same_doc", 2: "same_doc"}


def test_negative_sampling_enum_and_errors():
    assert MixConfig(negatives="bm25").negatives is NegativeSampling.BM25
    with pytest.raises(ValueError, match="negatives must be one of"):
        MixConfig(negatives="random")
