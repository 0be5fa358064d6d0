"""Training data: targets are trie-key prefixes that identify their passage, labels mask the
prompt, negatives are never relevant, everything is deterministic for a seed."""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selfretrieval_trainer.data import (
    MixConfig,
    NegativeSampling,
    answers_from_metadata,
    assessment_examples,
    build_training_set,
    indexing_examples,
    replay_sample,
    split_sentences,
    supervised_examples,
    unique_depths,
)

from selfretrieval_integrations.corpus import (
    ChunkingConfig,
    Corpus,
    cut_words,
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.errors import CorpusError
from selfretrieval_integrations.retrieval import IGNORE_INDEX, PromptTemplate, Renderer, build_trie

TEMPLATE = PromptTemplate()


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return tiny_model[1]


@pytest.fixture(scope="module")
def renderer(tokenizer):
    return Renderer(tokenizer, TEMPLATE)


@pytest.fixture(scope="module")
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


def _build_full(renderer, q, seed=0):
    return build_training_set(
        renderer,
        q["corpus"],
        q["trie"],
        queries=q["queries"],
        qrels=q["qrels"],
        answers=q["answers"],
        mix=MixConfig(negatives="mixed", n_negatives=2, seed=seed),
    )


@pytest.fixture(scope="module")
def full_set(renderer, quickstart):
    return _build_full(renderer, quickstart)


def _prompt_length(example) -> int:
    return next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)


def _labelled(example) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


def _as_tuples(training_set):
    return [(e.input_ids, e.labels, e.metadata) for e in training_set.examples]


# -- sentences ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One two three. Four five six.", ["One two three.", "Four five six."]),
        ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
        ("Pi is 3.14 and e is 2.718. Both are constants.", None),
        (
            "Fruit, e.g. apples, i.e. food. Next one.",
            ["Fruit, e.g. apples, i.e. food.", "Next one."],
        ),
        ("The U.S. Army is old. It began in 1775.", ["The U.S. Army is old.", "It began in 1775."]),
        ("He lived in the U.S. The end came.", ["He lived in the U.S.", "The end came."]),
        ("John F. Kennedy spoke. J. R. R. Tolkien wrote.", None),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("It failed (badly.) Another try.", ["It failed (badly.)", "Another try."]),
        ("这是第一句。这是第二句！真的吗？好", ["这是第一句。", "这是第二句！", "真的吗？", "好"]),
        ("「引用。」後の文。", ["「引用。」", "後の文。"]),
        ("A heading\nThe body text here.\n\nNew paragraph", None),
        (
            "a sentence that is\nhard wrapped here. Next.",
            ["a sentence that is hard wrapped here.", "Next."],
        ),
        ("Yahoo! is a company. Really? Yes!", ["Yahoo! is a company.", "Really?", "Yes!"]),
        ("It costs approx. five euros. See Fig. 3 now.", None),
        ("Wait... What happened?", ["Wait...", "What happened?"]),
        ("1. Preheat the oven. 2. Mix it.", ["1. Preheat the oven.", "2. Mix it."]),
        ("Visit example.com or v2.0.1 today. Ok.", ["Visit example.com or v2.0.1 today.", "Ok."]),
        ("  \n\n ... \n", []),
        ("no punctuation at all", ["no punctuation at all"]),
    ],
)
def test_split_sentences(text, expected):
    if expected is None:
        expected = {
            "Pi is 3.14 and e is 2.718. Both are constants.": [
                "Pi is 3.14 and e is 2.718.",
                "Both are constants.",
            ],
            "John F. Kennedy spoke. J. R. R. Tolkien wrote.": [
                "John F. Kennedy spoke.",
                "J. R. R. Tolkien wrote.",
            ],
            "A heading\nThe body text here.\n\nNew paragraph": [
                "A heading",
                "The body text here.",
                "New paragraph",
            ],
            "It costs approx. five euros. See Fig. 3 now.": [
                "It costs approx. five euros.",
                "See Fig. 3 now.",
            ],
        }[text]
    assert split_sentences(text) == expected


def test_split_sentences_keeps_the_words():
    text = load_corpus(quickstart_dir())[0].text
    assert " ".join(split_sentences(text)).split() == text.split()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "word",
                "Word",
                "U.S.",
                "e.g.",
                "Dr.",
                "3.14",
                "end.",
                "why?",
                "wow!",
                "...",
                "。",
                "中文",
                '"Quoted."',
                "(aside)",
                "\n",
                "\n\n",
                "- ",
                "1.",
                "x",
                "Mr",
                "The",
            ]
        ),
        max_size=40,
    )
)
def test_split_sentences_never_loses_or_reorders_words(pieces):
    text = " ".join(pieces)
    sentences = split_sentences(text)
    assert all(s and s == s.strip() and "\n" not in s for s in sentences)
    out = " ".join(sentences).split()
    # Every word with a letter or digit survives, in order; only punctuation-only bits may go.
    assert [w for w in out if re.search(r"\w", w)] == [
        w for w in text.split() if re.search(r"\w", w)
    ]


# -- depths and targets ------------------------------------------------------------------------


def test_unique_depths_are_the_shortest_identifying_prefixes(renderer, quickstart):
    corpus, trie = quickstart["corpus"], quickstart["trie"]
    depths = unique_depths(trie)
    assert depths.shape == (len(corpus),)
    for p, passage in enumerate(corpus):
        ids = renderer.encode_target(passage.title, passage.text).ids
        d = int(depths[p])
        assert d <= len(ids)
        assert p in trie.passage_ids_for_prefix(ids[:d])
        assert trie.passage_ids_for_prefix(ids[: d - 1]).size == 0


def test_retrieval_targets_are_identifying_trie_key_prefixes(renderer, quickstart, full_set):
    corpus, trie = quickstart["corpus"], quickstart["trie"]
    depths = unique_depths(trie)
    leaves = trie.passage_leaves()
    kinds = {"indexing": 0, "supervised": 0}
    for example in full_set.examples:
        kind = example.metadata["kind"]
        if kind not in kinds:
            continue
        kinds[kind] += 1
        p = example.metadata["passage"]
        # The prompt is exactly the masked part: the query's prompt (a sentence of the passage
        # for indexing, the real question for supervised examples).
        if kind == "supervised":
            prompts = [renderer.encode_prompt(quickstart["queries"][example.metadata["query"]])]
        else:
            prompts = [renderer.encode_prompt(s) for s in split_sentences(corpus[p].text)]
        n = next(len(pr) for pr in prompts if example.input_ids[: len(pr)] == pr)
        assert example.labels[:n] == [IGNORE_INDEX] * n
        assert example.labels[n:] == example.input_ids[n:]  # no masking inside the target
        labelled = example.labels[n:]
        target = renderer.encode_target(corpus[p].title, corpus[p].text)
        assert labelled == list(target.ids[: len(labelled)])
        assert len(labelled) == min(len(target.ids), max(int(depths[p]), target.title_length + 8))
        assert len(labelled) >= depths[p]
        # Walking the trie with the target reaches the passage's own leaf.
        assert p in trie.passage_ids_for_prefix(labelled)
        leaf = trie.leaf_node(int(leaves[p]))
        assert labelled[: depths[p]] == trie.path(leaf).tolist()
    assert kinds["indexing"] > 0 and kinds["supervised"] > 0


def test_deep_unique_depth_is_trained_in_full(renderer, tokenizer):
    # Passages that share a long start: a fixed "10 words" target could not tell them apart.
    shared = " ".join(["common"] * 30)
    corpus = Corpus.from_passages(
        [
            {"id": "a", "title": "T", "text": f"{shared} alpha ends here. Another sentence here."},
            {"id": "b", "title": "T", "text": f"{shared} beta ends here. One more sentence here."},
        ]
    )
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    depths = unique_depths(trie)
    examples = indexing_examples(renderer, corpus, depths, seed=0)
    for example in examples:
        p = example.metadata["passage"]
        target = renderer.encode_target(corpus[p].title, corpus[p].text)
        assert depths[p] > target.title_length + 8
        assert len(_labelled(example)) == depths[p]
        assert list(trie.passage_ids_for_prefix(_labelled(example))) == [p]


def test_short_passage_target_stops_at_eos(renderer, tokenizer):
    corpus = Corpus.from_passages([{"id": "x", "title": "A title", "text": "Tiny."}])
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    (example,) = indexing_examples(renderer, corpus, unique_depths(trie), seed=0, extra_tokens=500)
    target = renderer.encode_target("A title", "Tiny.")
    assert _labelled(example) == list(target.ids)
    assert example.metadata == {"kind": "indexing", "passage": 0}


# -- indexing examples --------------------------------------------------------------------------


def test_indexing_queries_are_sentences_in_range(renderer, tokenizer):
    text = (
        "Short one. This sentence has exactly seven words in it. "
        + " ".join(f"W{i}" for i in range(60))
        + ". Another fine sentence of enough words here."
    )
    corpus = Corpus.from_passages(
        [{"id": "p", "title": "", "text": text}, {"id": "q", "text": "Too short. Also short."}]
    )
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    examples = indexing_examples(renderer, corpus, unique_depths(trie), seed=0)
    prompts = [tokenizer.decode(e.input_ids[: _prompt_length(e)]) for e in examples]
    by_passage = [e.metadata["passage"] for e in examples]
    assert by_passage == [0, 0, 1]
    assert "This sentence has exactly seven words in it." in prompts[0]
    assert "Another fine sentence of enough words here." in prompts[1]
    assert "Too short." in prompts[2]  # none in range: the first sentence
    assert "Also short" not in prompts[2]
    sampled = indexing_examples(renderer, corpus, unique_depths(trie), seed=0, max_per_passage=1)
    assert [e.metadata["passage"] for e in sampled] == [0, 1]


def test_long_first_sentence_fallback_is_cut(renderer, tokenizer):
    words = [f"word{i}" for i in range(80)]
    corpus = Corpus.from_passages([{"id": "p", "title": "T", "text": " ".join(words)}])
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    (example,) = indexing_examples(renderer, corpus, unique_depths(trie), seed=0, max_words=50)
    prompt = renderer.encode_prompt(" ".join(words[:50]))
    assert example.input_ids[: len(prompt)] == prompt


# -- supervised and answer examples -----------------------------------------------------------


def _chunked_corpus() -> Corpus:
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


def test_document_ids_resolve_to_answer_chunks(renderer, tokenizer):
    corpus = _chunked_corpus()
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
    assert _labelled(answer) == renderer.answer_ids("1889")
    assert answer.input_ids[-len(_labelled(answer)) :] == renderer.answer_ids("1889")
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
    assert _labelled(only) == list(target.ids)


def test_unknown_ids_are_listed(renderer, tokenizer):
    corpus = _chunked_corpus()
    depths = unique_depths(build_trie(tokenizer, TEMPLATE, corpus))
    queries = {"q": "question"}
    qrels = {"q": {f"missing{i}": 1 for i in range(7)} | {"paris": 1}}
    with pytest.raises(CorpusError, match=r"7 corpus ids.*'missing0'.*'missing4' and 2 more"):
        supervised_examples(renderer, corpus, queries, qrels, None, depths=depths)
    with pytest.raises(CorpusError, match=r"1 query ids.*'nope'"):
        supervised_examples(renderer, corpus, queries, {"nope": {"paris": 1}}, None, depths=depths)
    with pytest.raises(CorpusError, match="missing0"):
        assessment_examples(renderer, corpus, queries, qrels, None, seed=0)


# -- assessment examples ----------------------------------------------------------------------


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
        labelled = _labelled(example)
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
    assert all(_labelled(e) == affirmation for e in examples)


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
    corpus = _chunked_corpus()
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


# -- the whole set ----------------------------------------------------------------------------


def test_build_is_deterministic_for_a_seed(renderer, quickstart, full_set):
    def build(seed):
        return _build_full(renderer, quickstart, seed)

    assert _as_tuples(build(0)) == _as_tuples(full_set)
    assert build(0).stats == full_set.stats
    other = build(1)
    assert _as_tuples(other) != _as_tuples(full_set)
    assert sorted(map(repr, _as_tuples(other))) != sorted(map(repr, _as_tuples(full_set)))


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
    kinds = build_training_set(
        renderer,
        q["corpus"],
        q["trie"],
        queries=q["queries"],
        qrels=q["qrels"],
        answers=q["answers"],
        mix=mix,
    ).stats["kinds"]
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
    assert sorted(map(repr, _as_tuples(subset))) == sorted(
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
        ({"indexing": False, "supervised_repeats": 0, "assessment": False}, "every kind"),
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


def test_smollm2_targets_match_the_trie(request):
    tokenizer = None
    with contextlib.suppress(pytest.skip.Exception):
        tokenizer = request.getfixturevalue("smollm2_tokenizer")
    if tokenizer is None:
        pytest.skip("SmolLM2 tokenizer not available")
    corpus = load_corpus(quickstart_dir())
    trie = build_trie(tokenizer, TEMPLATE, corpus)
    renderer = Renderer(tokenizer, TEMPLATE)
    result = build_training_set(renderer, corpus, trie, mix=MixConfig(indexing_per_passage=2))
    depths = unique_depths(trie)
    for example in result.examples:
        labelled = _labelled(example)
        assert len(labelled) >= depths[example.metadata["passage"]]
        assert example.metadata["passage"] in trie.passage_ids_for_prefix(labelled)
    assert np.all(depths > 0)
