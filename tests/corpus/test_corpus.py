"""Tests of documents, passages, chunking, the corpus and the file loaders."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import time
import unicodedata
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfretrieval_integrations.corpus import (
    MAX_WORD_CHARS,
    ChunkingConfig,
    Corpus,
    Document,
    Passage,
    chunk_document,
    load_beir_qrels,
    load_beir_queries,
    load_beir_query_metadata,
    load_corpus,
    quickstart_dir,
)
from selfretrieval_integrations.errors import CorpusError, SelfRetrievalError

ROOT = Path(__file__).resolve().parents[2]
SQUAD_ZIP = ROOT.parent / "shared" / "data" / "squad-dev-v1.1.zip"

UNICODE_SAMPLES = {
    "cjk": "自然语言处理是人工智能的一个分支。日本語のテキストも大丈夫です。",
    "emoji": "Family 👨\u200d👩\u200d👧\u200d👦, flag 🇫🇷, thumbs 👍🏽 and ❤\ufe0f.",
    "rtl": "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd \u200f and "
    "\u0645\u0631\u062d\u0628\u0627 \u202bembedded\u202c",
    "combining": "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 (decomposed, not NFC).",
}


def words_of(text: str) -> str:
    """All non-whitespace characters in order: what chunking must preserve."""
    return "".join(text.split())


def byte_tokens(text: str) -> list[int]:
    return list(text.encode("utf-8"))


class EncodeTokenizer:
    """Mimics a Hugging Face tokenizer: ``encode`` adds a BOS token unless told not to."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.calls.append({"add_special_tokens": add_special_tokens})
        ids = [ord(ch) for ch in text]
        return [0, *ids] if add_special_tokens else ids


# --------------------------------------------------------------------------------------------------
# Document and Passage
# --------------------------------------------------------------------------------------------------


def test_errors_are_library_errors() -> None:
    assert issubclass(CorpusError, SelfRetrievalError)
    assert issubclass(CorpusError, ValueError)


def test_document_normalises_text_title_and_id() -> None:
    doc = Document(
        id=cast(Any, 7),
        text="  \n Body  with  inner   spaces.\n\nSecond. \n",
        title=" A\n long \r\n title ",
    )
    assert doc.id == "7"
    assert doc.text == "Body  with  inner   spaces.\n\nSecond."
    assert doc.title == "A long title"
    assert doc.metadata == {}


def test_document_is_frozen_and_hashable() -> None:
    doc = Document(id="a", text="x", metadata={"k": [1, 2]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.text = "y"  # type: ignore[misc]
    assert hash(doc) == hash(Document(id="a", text="x", metadata={"k": [1, 2]}))


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_blank_document_text_is_an_error_naming_the_id(text: str) -> None:
    with pytest.raises(CorpusError, match=r"'doc-9'.*empty or only whitespace"):
        Document(id="doc-9", text=text)


@pytest.mark.parametrize("bad_id", ["", "  ", None, True, 1.5, ["a"]])
def test_bad_document_ids_are_errors(bad_id: object) -> None:
    with pytest.raises(CorpusError, match=r"document id must be a non-empty string"):
        Document(id=bad_id, text="text")  # type: ignore[arg-type]


def test_non_string_text_and_title_are_errors() -> None:
    with pytest.raises(CorpusError, match=r"text of document 'a' must be a string"):
        Document(id="a", text=None)  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match=r"title of document 'a' must be a string"):
        Document(id="a", text="x", title=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"when": object()}, "not JSON-serialisable"),
        ({"x": float("nan")}, "not JSON-serialisable"),
        ({1: "a"}, "non-string keys"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_bad_metadata_is_an_error_naming_the_id(metadata: object, message: str) -> None:
    with pytest.raises(CorpusError, match=rf"'doc-3'.*{message}"):
        Document(id="doc-3", text="x", metadata=metadata)  # type: ignore[arg-type]


def test_metadata_is_a_json_copy() -> None:
    source = {"tags": ("a", "b"), "nested": {"n": 1}}
    doc = Document(id="a", text="x", metadata=source)
    assert doc.metadata == {"tags": ["a", "b"], "nested": {"n": 1}}
    source["nested"]["n"] = 2  # type: ignore[index]
    assert doc.metadata["nested"] == {"n": 1}


def test_document_from_mapping() -> None:
    doc = Document.from_mapping({"_id": 5, "text": "t", "title": None, "metadata": None})
    assert (doc.id, doc.text, doc.title, doc.metadata) == ("5", "t", "", {})
    with pytest.raises(CorpusError, match='no "id"'):
        Document.from_mapping({"text": "t"})
    with pytest.raises(CorpusError, match='no "text"'):
        Document.from_mapping({"id": "a", "body": "t"})
    with pytest.raises(CorpusError, match=r"differ"):
        Document.from_mapping({"id": "a", "_id": "b", "text": "t"})
    with pytest.raises(CorpusError, match=r"unknown keys \['txt'\].*metadata"):
        Document.from_mapping({"id": "a", "text": "t", "txt": "typo"})
    folded = Document.from_mapping(
        {"id": "a", "text": "t", "url": "u", "metadata": {"k": 1}}, extra_to_metadata=True
    )
    assert folded.metadata == {"url": "u", "k": 1}
    with pytest.raises(CorpusError, match=r"Document or a mapping"):
        Document.from_mapping("a text")  # type: ignore[arg-type]


def test_passage_validation_and_mapping() -> None:
    passage = Passage(
        id=cast(Any, 3), doc_id=cast(Any, 1), title="T\nU", text=" body ", metadata={"a": 1}
    )
    assert (passage.id, passage.doc_id, passage.title, passage.text) == ("3", "1", "T U", "body")
    with pytest.raises(CorpusError, match=r"'p1'.*empty or only whitespace"):
        Passage(id="p1", doc_id="d", title="", text=" ")
    with pytest.raises(CorpusError, match=r"document id must be a non-empty string.*'p1'"):
        Passage(id="p1", doc_id="", title="", text="x")
    with pytest.raises(CorpusError, match=r"'p1'.*not JSON-serialisable"):
        Passage(id="p1", doc_id="d", title="", text="x", metadata={"s": {1, 2}})
    own = Passage.from_mapping({"id": "solo", "text": "x"})
    assert own.doc_id == "solo"
    with pytest.raises(CorpusError, match=r"unknown keys"):
        Passage.from_mapping({"id": "p", "text": "x", "doc": "d"})
    with pytest.raises(CorpusError, match='no "text"'):
        Passage.from_mapping({"id": "p"})


# --------------------------------------------------------------------------------------------------
# ChunkingConfig
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_words": 0}, "max_words must be a positive integer"),
        ({"max_words": -5}, "max_words must be a positive integer"),
        ({"max_words": 2.5}, "max_words must be a positive integer"),
        ({"max_words": True}, "max_words must be a positive integer"),
        ({"unit": "chars"}, 'unit must be "words" or "tokens"'),
        ({"unit": "tokens"}, "needs max_tokens"),
        ({"unit": "tokens", "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"max_tokens": 100}, 'only used with unit="tokens"'),
        ({"overlap_words": -1}, "overlap_words must be an integer >= 0"),
        ({"max_words": 10, "overlap_words": 10}, "must be smaller than the chunk limit"),
        ({"unit": "tokens", "max_tokens": 8, "overlap_words": 8}, "smaller than the chunk limit"),
    ],
)
def test_bad_chunking_config(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        ChunkingConfig(**kwargs)


def test_chunking_config_limit() -> None:
    assert ChunkingConfig().limit == 200
    assert ChunkingConfig(unit="tokens", max_tokens=64).limit == 64


# --------------------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------------------


def test_short_document_is_one_verbatim_passage() -> None:
    text = "First  paragraph\twith odd   spacing.\n\n  Second paragraph.\nSame paragraph."
    doc = Document(id="d", text=text, title="T", metadata={"k": "v"})
    [passage] = chunk_document(doc)
    assert passage == Passage(id="d#0", doc_id="d", title="T", text=text, metadata={"k": "v"})


def test_small_paragraphs_are_packed_and_kept_whole() -> None:
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(4)) for i in range(6)]  # 4 words each
    doc = Document(id="d", text="\n\n".join(paragraphs))
    passages = chunk_document(doc, ChunkingConfig(max_words=10))
    assert [p.text for p in passages] == [
        "\n\n".join(paragraphs[0:2]),
        "\n\n".join(paragraphs[2:4]),
        "\n\n".join(paragraphs[4:6]),
    ]
    assert [p.id for p in passages] == ["d#0", "d#1", "d#2"]


def test_blank_lines_with_spaces_and_crlf_separate_paragraphs() -> None:
    doc = Document(id="d", text="one two\r\n \r\nthree four\n\t\n\n\nfive six")
    passages = chunk_document(doc, ChunkingConfig(max_words=2))
    assert [p.text for p in passages] == ["one two", "three four", "five six"]


def test_long_paragraph_is_split_on_sentences() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(10)]
    short = "A short paragraph follows."
    doc = Document(id="d", text=" ".join(sentences) + "\n\n" + short)
    passages = chunk_document(doc, ChunkingConfig(max_words=20))
    texts = [p.text for p in passages]
    # 7-word sentences: two per chunk; the cut paragraph does not mix with the next one.
    assert texts[:5] == [" ".join(sentences[i : i + 2]) for i in range(0, 10, 2)]
    assert texts[5] == short
    assert all(len(t.split()) <= 20 for t in texts)


def test_abbreviation_before_lowercase_is_not_a_sentence_end() -> None:
    text = "We use e.g. tools here. Then more words follow."
    passages = chunk_document(Document(id="d", text=text), ChunkingConfig(max_words=6))
    assert [p.text for p in passages] == ["We use e.g. tools here.", "Then more words follow."]


def test_long_sentence_is_split_on_words() -> None:
    text = " ".join(f"w{i}" for i in range(25))
    passages = chunk_document(Document(id="d", text=text), ChunkingConfig(max_words=10))
    assert [len(p.text.split()) for p in passages] == [10, 10, 5]
    assert " ".join(p.text for p in passages) == text


def test_overlap_only_inside_cut_paragraphs() -> None:
    long_paragraph = " ".join(f"w{i}" for i in range(20))
    doc = Document(id="d", text=long_paragraph + "\n\nnext paragraph here")
    passages = chunk_document(doc, ChunkingConfig(max_words=8, overlap_words=3))
    word_lists = [p.text.split() for p in passages]
    assert word_lists[0] == [f"w{i}" for i in range(8)]
    assert word_lists[1][:3] == ["w5", "w6", "w7"]  # three words repeated
    assert all(len(words) <= 8 for words in word_lists)
    assert word_lists[-1] == ["next", "paragraph", "here"]  # no overlap across paragraphs
    covered = [w for words in word_lists[:-1] for w in words]
    assert sorted(set(covered), key=lambda w: int(w[1:])) == long_paragraph.split()


def test_100k_characters_without_spaces_chunk_fast() -> None:
    text = "abcdefghij" * 10_000
    start = time.perf_counter()
    passages = chunk_document(Document(id="big", text=text))
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert "".join(p.text for p in passages) == text
    assert all(len(p.text) <= 200 * MAX_WORD_CHARS for p in passages)
    assert len(passages) == 25


def test_100k_characters_of_prose_chunk_fast() -> None:
    sentence = "The quick brown fox jumps over the lazy dog again. "
    text = (sentence * (100_000 // len(sentence) + 1))[:100_000]
    start = time.perf_counter()
    passages = chunk_document(Document(id="big", text=text), ChunkingConfig(max_words=50))
    assert time.perf_counter() - start < 1.0
    assert all(len(p.text.split()) <= 50 for p in passages)
    assert words_of("".join(p.text for p in passages)) == words_of(text)


def test_100k_characters_in_tokens_mode_chunk_fast() -> None:
    text = "x" * 100_000
    config = ChunkingConfig(unit="tokens", max_tokens=256)
    start = time.perf_counter()
    passages = chunk_document(Document(id="big", text=text), config, tokenizer=byte_tokens)
    assert time.perf_counter() - start < 1.0
    assert "".join(p.text for p in passages) == text
    assert all(len(byte_tokens(p.text)) <= 256 for p in passages)


def test_cjk_without_spaces_counts_each_character() -> None:
    text = "自然语言处理。" * 100  # 700 characters, no spaces
    passages = chunk_document(Document(id="zh", text=text), ChunkingConfig(max_words=50))
    assert "".join(p.text for p in passages) == text
    assert all(len(p.text) <= 50 for p in passages)
    assert all(p.text.endswith("。") for p in passages)  # cut at sentence ends


def test_long_runs_are_never_cut_inside_a_character_cluster() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"
    text = ("e\u0301" * 15 + family) * 20  # one long run without spaces
    passages = chunk_document(Document(id="d", text=text), ChunkingConfig(max_words=3))
    assert "".join(p.text for p in passages) == text
    for passage in passages:
        first = passage.text[0]
        assert unicodedata.category(first) not in ("Mn", "Mc", "Me")
        assert first != "\u200d"
        assert passage.text[-1] != "\u200d"


def test_tokens_mode_needs_a_tokenizer() -> None:
    config = ChunkingConfig(unit="tokens", max_tokens=16)
    with pytest.raises(CorpusError, match=r"needs a tokenizer.*'d'"):
        chunk_document(Document(id="d", text="text"), config)
    with pytest.raises(CorpusError, match=r"needs a tokenizer"):
        Corpus.from_documents([{"id": "d", "text": "text"}], config)
    with pytest.raises(CorpusError, match=r"callable str -> list\[int\]"):
        chunk_document(Document(id="d", text="text"), config, tokenizer=42)  # type: ignore[arg-type]


def test_tokens_mode_with_callable_tokenizer() -> None:
    paragraphs = ["Alpha beta gamma.", "Delta epsilon.", "Zeta eta theta iota kappa lambda mu."]
    doc = Document(id="d", text="\n\n".join(paragraphs))
    passages = chunk_document(doc, ChunkingConfig(unit="tokens", max_tokens=36), byte_tokens)
    assert [p.text for p in passages] == ["\n\n".join(paragraphs[:2]), paragraphs[2]]
    assert all(len(byte_tokens(p.text)) <= 36 for p in passages)


def test_tokens_mode_with_encode_tokenizer_skips_special_tokens() -> None:
    tokenizer = EncodeTokenizer()
    text = "abcd efgh"  # 9 characters: fits 9 tokens only without the BOS token
    config = ChunkingConfig(unit="tokens", max_tokens=9)
    passages = chunk_document(Document(id="d", text=text), config, tokenizer=tokenizer)
    assert [p.text for p in passages] == [text]
    assert tokenizer.calls and all(not call["add_special_tokens"] for call in tokenizer.calls)


def test_tokens_mode_cuts_a_long_word_between_characters() -> None:
    config = ChunkingConfig(unit="tokens", max_tokens=4)
    passages = chunk_document(Document(id="d", text="abcdefghij"), config, tokenizer=byte_tokens)
    assert [p.text for p in passages] == ["abcd", "efgh", "ij"]
    # A single character over the limit cannot be cut: it becomes a passage of its own.
    config = ChunkingConfig(unit="tokens", max_tokens=2)
    passages = chunk_document(Document(id="d", text="a😀b"), config, tokenizer=byte_tokens)
    assert [p.text for p in passages] == ["a", "😀", "b"]


def test_chunk_document_rejects_wrong_arguments() -> None:
    with pytest.raises(CorpusError, match=r"needs a Document"):
        chunk_document({"id": "d", "text": "x"})  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match=r"ChunkingConfig or None"):
        chunk_document(Document(id="d", text="x"), {"max_words": 3})  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(
            ["ab", "b", " ", ".", "!", "?", "\n", "\t", "\n\n", "。", "語", "e\u0301", "A"]
        ),
        min_size=1,
        max_size=120,
    )
    .map("".join)
    .filter(lambda s: s.strip()),
    max_words=st.integers(min_value=1, max_value=12),
)
def test_chunking_properties(text: str, max_words: int) -> None:
    doc = Document(id="d", text=text)
    passages = chunk_document(doc, ChunkingConfig(max_words=max_words))
    position = 0
    for i, passage in enumerate(passages):
        assert passage.id == f"d#{i}"
        found = doc.text.find(passage.text, position)  # a verbatim slice, in order
        assert found >= position
        position = found + len(passage.text)
        assert passage.text == passage.text.strip()
    assert words_of("".join(p.text for p in passages)) == words_of(doc.text)


# --------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------


def small_corpus() -> Corpus:
    return Corpus.from_documents(
        [
            Document(id="a", text="Alpha text.", title="Title A", metadata={"lang": "en"}),
            {"id": "b", "text": "Beta one.\n\nBeta two.", "title": "Title B"},
            {"_id": 3, "text": "Gamma."},
        ],
        ChunkingConfig(max_words=2),
    )


def test_corpus_lookup() -> None:
    corpus = small_corpus()
    assert len(corpus) == 4
    assert corpus.passage_ids == ("a#0", "b#0", "b#1", "3#0")
    assert [p.id for p in corpus] == list(corpus.passage_ids)
    assert corpus[1].text == "Beta one."
    assert corpus[-1].id == "3#0"
    assert corpus.get("b#1").text == "Beta two."
    assert corpus.index_of("3#0") == 3
    assert "a#0" in corpus and "zzz" not in corpus
    assert corpus.doc_ids() == ["a", "b", "3"]
    assert corpus.passages_of("b") == [1, 2]
    assert corpus[0].metadata == {"lang": "en"}
    assert repr(corpus) == "Corpus(4 passages from 3 documents)"
    with pytest.raises(CorpusError, match=r"no passage with id 'b'.*'<doc_id>#<i>'"):
        corpus.get("b")
    with pytest.raises(CorpusError, match=r"no passage with id"):
        corpus.index_of("nope")
    with pytest.raises(CorpusError, match=r"no document with id 'nope'"):
        corpus.passages_of("nope")
    with pytest.raises(TypeError, match=r"corpus.get\(passage_id\)"):
        corpus["a#0"]  # type: ignore[index]
    with pytest.raises(IndexError):
        corpus[4]


def test_corpus_is_immutable() -> None:
    corpus = small_corpus()
    ids = corpus.passages_of("b")
    ids.append(99)
    assert corpus.passages_of("b") == [1, 2]
    with pytest.raises(AttributeError):
        corpus.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Corpus.from_documents([]),
        lambda: Corpus.from_passages([]),
        lambda: Corpus([]),
    ],
)
def test_empty_corpus_is_an_error(build: Any) -> None:
    with pytest.raises(
        CorpusError, match=r"corpus is empty: give at least one document with non-empty text"
    ):
        build()


def test_empty_document_in_a_corpus_is_an_error() -> None:
    with pytest.raises(CorpusError, match=r"'empty-one'.*empty or only whitespace"):
        Corpus.from_documents([{"id": "ok", "text": "x"}, {"id": "empty-one", "text": "  "}])


def test_duplicate_document_ids_are_named() -> None:
    docs = [{"id": f"d{i % 8}", "text": "t"} for i in range(16)]
    with pytest.raises(CorpusError, match=r"duplicate document ids: 'd0', .*'d4' and 3 more \(8"):
        Corpus.from_documents(docs)
    with pytest.raises(CorpusError, match=r"duplicate document ids: '1'"):
        Corpus.from_documents([{"id": 1, "text": "a"}, {"id": "1", "text": "b"}])


def test_duplicate_passage_ids_are_named() -> None:
    passages = [{"id": "p1", "text": "a"}, {"id": "p2", "text": "b"}, {"id": "p1", "text": "c"}]
    with pytest.raises(CorpusError, match=r"duplicate passage ids: 'p1' \(1 ids"):
        Corpus.from_passages(passages)


def test_identical_texts_under_different_ids_are_kept() -> None:
    corpus = Corpus.from_documents([{"id": "x", "text": "Same."}, {"id": "y", "text": "Same."}])
    assert len(corpus) == 2
    assert corpus.get("x#0").text == corpus.get("y#0").text == "Same."


def test_from_passages_keeps_ids() -> None:
    corpus = Corpus.from_passages(
        [
            Passage(id="p-9", doc_id="doc", title="T", text="one"),
            {"id": "p-1", "doc_id": "doc", "text": "two"},
            {"id": 5, "text": "three"},
        ]
    )
    assert corpus.passage_ids == ("p-9", "p-1", "5")
    assert corpus.passages_of("doc") == [0, 1]
    assert corpus.get("5").doc_id == "5"


def test_single_objects_instead_of_iterables_are_errors() -> None:
    with pytest.raises(CorpusError, match=r"wrap it in a list"):
        Corpus.from_documents(cast(Any, {"id": "a", "text": "x"}))
    with pytest.raises(CorpusError, match=r"wrap it in a list"):
        Corpus.from_documents("some text")  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match=r"wrap it in a list"):
        Corpus.from_passages(Passage(id="p", doc_id="d", title="", text="x"))  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match=r"takes Passage objects"):
        Corpus([{"id": "p", "text": "x"}])  # type: ignore[list-item]


def test_checksum_is_stable_and_sensitive() -> None:
    corpus = small_corpus()
    # A fixed value: it must not change across runs, platforms or Python versions.
    assert corpus.checksum() == "52f43c59676b9405cfa031966925517d3eb27d9c71c58e830225ef267b440400"
    assert small_corpus().checksum() == corpus.checksum()
    reordered = Corpus(list(corpus)[::-1])
    assert reordered.checksum() != corpus.checksum()
    changed = Corpus([*list(corpus)[:-1], dataclasses.replace(corpus[-1], text="Gamma!")])
    assert changed.checksum() != corpus.checksum()
    meta = Corpus([*list(corpus)[:-1], dataclasses.replace(corpus[-1], metadata={"k": 1})])
    assert meta.checksum() != corpus.checksum()


def test_checksum_ignores_metadata_key_order() -> None:
    first = Corpus.from_passages([{"id": "p", "text": "x", "metadata": {"a": 1, "b": 2}}])
    second = Corpus.from_passages([{"id": "p", "text": "x", "metadata": {"b": 2, "a": 1}}])
    assert first.checksum() == second.checksum()


def test_without_documents() -> None:
    corpus = small_corpus()
    smaller = corpus.without_documents(["b"])
    assert smaller.passage_ids == ("a#0", "3#0")
    assert smaller.index_of("3#0") == 1
    assert len(corpus) == 4  # unchanged
    assert corpus.without_documents("a").doc_ids() == ["b", "3"]
    assert corpus.without_documents(cast(Any, [3])).doc_ids() == ["a", "b"]
    with pytest.raises(CorpusError, match=r"unknown document ids 'nope'"):
        corpus.without_documents(["a", "nope"])
    with pytest.raises(CorpusError, match=r"corpus is empty"):
        corpus.without_documents(["a", "b", "3"])


def test_with_documents() -> None:
    corpus = small_corpus()
    bigger = corpus.with_documents([{"id": "c", "text": "Cee one two three"}], ChunkingConfig(3))
    assert bigger.passage_ids == (*corpus.passage_ids, "c#0", "c#1")
    assert bigger.get("c#1").text == "three"
    assert len(corpus) == 4
    with pytest.raises(CorpusError, match=r"already in the corpus: 'a'.*without_documents"):
        corpus.with_documents([{"id": "a", "text": "new"}])
    replaced = corpus.without_documents("a").with_documents([{"id": "a", "text": "new"}])
    assert replaced.get("a#0").text == "new"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    docs = [
        Document(id=name, text=text, title=f"{name} title")
        for name, text in UNICODE_SAMPLES.items()
    ]
    docs.append(Document(id="meta", text="x", metadata={"n": [1, {"k": None}], "f": 1.5}))
    corpus = Corpus.from_documents(docs)
    path = corpus.to_jsonl(tmp_path / "sub" / "passages.jsonl")
    raw = path.read_text(encoding="utf-8")
    assert "自然语言处理" in raw  # UTF-8, not \u escapes
    assert len(raw.splitlines()) == len(corpus)
    assert set(json.loads(raw.splitlines()[0])) == {"id", "doc_id", "title", "text", "metadata"}
    loaded = Corpus.from_jsonl(path)
    assert loaded == corpus
    assert loaded.checksum() == corpus.checksum()
    assert not list(path.parent.glob("*.tmp"))


def test_from_jsonl_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no passages file"):
        Corpus.from_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p", "doc_id": "d", "text": "x"}\n\n{"id": "q", "text": \n', "utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl, line 3: not valid JSON"):
        Corpus.from_jsonl(bad)
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"id": "p", "doc_id": "d", "text": "x"}\n{"id": "q", "text": " "}\n', "utf-8")
    with pytest.raises(CorpusError, match=r"blank.jsonl, line 2: .*'q'.*empty"):
        Corpus.from_jsonl(blank)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", "utf-8")
    with pytest.raises(CorpusError, match=r"corpus is empty"):
        Corpus.from_jsonl(empty)


@pytest.mark.parametrize("name", sorted(UNICODE_SAMPLES))
def test_unicode_is_kept_verbatim(name: str, tmp_path: Path) -> None:
    text = UNICODE_SAMPLES[name]
    corpus = Corpus.from_documents([Document(id=f"{name}-é", text=text, title=text)])
    [passage] = list(corpus)
    assert passage.text == text
    assert passage.title == text
    assert passage.id == f"{name}-é#0"
    if name == "combining":
        assert passage.text != unicodedata.normalize("NFC", text)
    assert Corpus.from_jsonl(corpus.to_jsonl(tmp_path / "c.jsonl")) == corpus


# --------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------


def test_bundled_corpus_loads() -> None:
    folder = quickstart_dir()
    corpus = load_corpus(folder)
    assert len(corpus) == 32
    assert len(corpus.doc_ids()) == 32
    titles = {p.title for p in corpus}
    assert titles == {"Teacher", "Computational complexity theory", "Oxygen", "Genghis Khan"}
    assert corpus.passage_ids[0] == "Teacher_0#0"
    assert corpus[0].metadata == {"article": "Teacher", "paragraph": 0}
    assert load_corpus(folder).checksum() == corpus.checksum()
    assert (folder / "ATTRIBUTION.md").is_file()

    queries = load_beir_queries(folder)
    metadata = load_beir_query_metadata(folder / "queries.jsonl")
    assert len(queries) == len(metadata) > 64
    assert all(text == text.strip() and text for text in queries.values())
    assert all(meta["answers"] for meta in metadata.values())

    train = load_beir_qrels(folder, "train")
    test = load_beir_qrels(folder, "test")
    assert train and test
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(queries)
    doc_ids = set(corpus.doc_ids())
    for qrels in (train, test):
        assert all(set(docs) <= doc_ids and set(docs.values()) == {1} for docs in qrels.values())
    tested = {doc for docs in test.values() for doc in docs}
    assert tested == doc_ids  # every paragraph has at least one test question


def test_bundled_corpus_matches_the_script(tmp_path: Path) -> None:
    if not SQUAD_ZIP.is_file():
        pytest.skip(f"{SQUAD_ZIP} is missing; see benchmarks/make_bundled_corpus.py to get it")
    script = load_script()
    assert script.main(["--source", str(SQUAD_ZIP), "--out", str(tmp_path)]) == 0
    bundled = quickstart_dir()
    for relative in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"):
        assert (tmp_path / relative).read_bytes() == (bundled / relative).read_bytes(), relative


def test_script_explains_how_to_get_a_missing_zip(tmp_path: Path) -> None:
    script = load_script()
    with pytest.raises(SystemExit, match=r"(?s)not found.*curl -L"):
        script.main(["--source", str(tmp_path / "missing.zip"), "--out", str(tmp_path)])


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_bundled_corpus", ROOT / "benchmarks" / "make_bundled_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_beir_folder_folds_extra_keys_into_metadata(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "T", "text": "one", "metadata": {"a": 1}, "url": "u"},
            {"_id": 2, "title": "", "text": "two"},
        ],
    )
    corpus = load_corpus(tmp_path)
    assert corpus.passage_ids == ("d1#0", "2#0")
    assert corpus[0].metadata == {"a": 1, "url": "u"}


def test_load_jsonl_file_of_documents(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "docs.jsonl",
        [{"id": "a", "text": "word " * 30}, "", {"_id": "b", "text": "short", "title": "B"}],
    )
    corpus = load_corpus(path, ChunkingConfig(max_words=10))
    assert corpus.passage_ids == ("a#0", "a#1", "a#2", "b#0")
    assert corpus.get("b#0").title == "B"


def test_load_folder_of_text_files(tmp_path: Path) -> None:
    (tmp_path / "notes" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "intro.md").write_text("Preamble.\n\n## The *Intro* ##\n\nBody text.", "utf-8")
    (tmp_path / "notes" / "plain.txt").write_text("\ufeffJust text, no heading.", "utf-8")
    (tmp_path / "notes" / "deep" / "code.md").write_text(
        "```\n# not a heading\n```\n# Real heading\ntext", "utf-8"
    )
    (tmp_path / ".hidden" / "skip.md").write_text("# Hidden", "utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    corpus = load_corpus(tmp_path)
    assert corpus.doc_ids() == ["intro", "notes/deep/code", "notes/plain"]
    assert corpus.get("intro#0").title == "The *Intro*"
    assert corpus.get("intro#0").text == "Preamble.\n\n## The *Intro* ##\n\nBody text."
    assert corpus.get("notes/plain#0").title == "plain"
    assert corpus.get("notes/plain#0").text == "Just text, no heading."  # BOM dropped
    assert corpus.get("notes/deep/code#0").title == "Real heading"
    assert corpus.get("notes/plain#0").metadata == {"path": "notes/plain.txt"}


def test_text_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one", "utf-8")
    (tmp_path / "a.md").write_text("two", "utf-8")
    with pytest.raises(CorpusError, match=r"both get the document id 'a'"):
        load_corpus(tmp_path)
    (tmp_path / "a.md").unlink()
    (tmp_path / "empty.txt").write_text("  \n", "utf-8")
    with pytest.raises(CorpusError, match=r"empty.txt: .*'empty'.*empty or only whitespace"):
        load_corpus(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"caf\xe9")
    with pytest.raises(CorpusError, match=r"empty.txt is not UTF-8"):
        load_corpus(tmp_path)


def test_load_corpus_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no such file or folder.*BEIR folder"):
        load_corpus(tmp_path / "missing")
    with pytest.raises(CorpusError, match=r"without corpus.jsonl.*accepted are a BEIR folder"):
        load_corpus(tmp_path)
    csv = tmp_path / "docs.csv"
    csv.write_text("id,text\n1,x\n", "utf-8")
    with pytest.raises(CorpusError, match=r"cannot tell the layout.*.jsonl file of documents"):
        load_corpus(csv)


def test_load_corpus_bad_lines(tmp_path: Path) -> None:
    good = {"_id": "a", "text": "x"}
    path = write_lines(tmp_path / "bad.jsonl", [good, good | {"_id": "b"}, '{"_id": "c", "text"'])
    with pytest.raises(CorpusError, match=r"bad.jsonl, line 3: not valid JSON .*column"):
        load_corpus(path)
    path = write_lines(tmp_path / "list.jsonl", [good, ["not", "an", "object"]])
    with pytest.raises(CorpusError, match=r"list.jsonl, line 2: expected a JSON object"):
        load_corpus(path)
    path = write_lines(tmp_path / "noid.jsonl", [good, {"text": "x"}])
    with pytest.raises(CorpusError, match=r"noid.jsonl, line 2: .*no \"id\""):
        load_corpus(path)
    path = write_lines(tmp_path / "dup.jsonl", [good, good])
    with pytest.raises(CorpusError, match=r"duplicate document ids: 'a'"):
        load_corpus(path)
    path = write_lines(tmp_path / "meta.jsonl", [good | {"metadata": [1]}])
    with pytest.raises(CorpusError, match=r"line 1: .*must be a mapping"):
        load_corpus(path)
    path = write_lines(tmp_path / "none.jsonl", [""])
    with pytest.raises(CorpusError, match=r"corpus is empty"):
        load_corpus(path)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"not UTF-8"):
        load_corpus(path)


def test_load_queries_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no queries file.*queries.jsonl"):
        load_beir_queries(tmp_path)
    write_lines(
        tmp_path / "queries.jsonl", [{"_id": "q1", "text": " Why? "}, {"id": 2, "text": "How"}]
    )
    assert load_beir_queries(tmp_path) == {"q1": "Why?", "2": "How"}
    assert load_beir_query_metadata(tmp_path) == {"q1": {}, "2": {}}
    write_lines(tmp_path / "dup.jsonl", [{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}])
    with pytest.raises(CorpusError, match=r"line 2: duplicate query id 'q1'"):
        load_beir_queries(tmp_path / "dup.jsonl")
    write_lines(tmp_path / "blank.jsonl", [{"_id": "q1", "text": "  "}])
    with pytest.raises(CorpusError, match=r"line 1: query 'q1' needs a non-empty string"):
        load_beir_queries(tmp_path / "blank.jsonl")
    write_lines(tmp_path / "noid.jsonl", [{"text": "a"}])
    with pytest.raises(CorpusError, match='line 1: a query needs a non-empty "_id"'):
        load_beir_queries(tmp_path / "noid.jsonl")


def test_load_qrels(tmp_path: Path) -> None:
    qrels_dir = tmp_path / "qrels"
    qrels_dir.mkdir()
    (qrels_dir / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n\nq2\td1\t0\n", "utf-8"
    )
    assert load_beir_qrels(tmp_path, "dev") == {"q1": {"d1": 1, "d2": 2}, "q2": {"d1": 0}}
    (qrels_dir / "noheader.tsv").write_text("q1\td1\t1\n", "utf-8")
    assert load_beir_qrels(tmp_path, "noheader") == {"q1": {"d1": 1}}


def test_load_qrels_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no such folder"):
        load_beir_qrels(tmp_path / "missing", "test")
    with pytest.raises(CorpusError, match=r"has no qrels/"):
        load_beir_qrels(tmp_path, "test")
    qrels_dir = tmp_path / "qrels"
    qrels_dir.mkdir()
    with pytest.raises(CorpusError, match=r"has no .tsv files"):
        load_beir_qrels(tmp_path, "test")
    (qrels_dir / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq\td\t1\n", "utf-8")
    (qrels_dir / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq\td\t1\n", "utf-8")
    with pytest.raises(CorpusError, match=r"no qrels for split 'test'.*\['dev', 'train'\]"):
        load_beir_qrels(tmp_path, "test")
    with pytest.raises(CorpusError, match=r"plain name"):
        load_beir_qrels(tmp_path, "../train")
    (qrels_dir / "bad.tsv").write_text("query-id\tcorpus-id\tscore\nq d 1\n", "utf-8")
    with pytest.raises(CorpusError, match=r"bad.tsv, line 2: expected 3 tab-separated fields"):
        load_beir_qrels(tmp_path, "bad")
    (qrels_dir / "score.tsv").write_text("q\td\thigh\n", "utf-8")
    with pytest.raises(CorpusError, match=r"score.tsv, line 1: the score must be an integer"):
        load_beir_qrels(tmp_path, "score")
    (qrels_dir / "clash.tsv").write_text("q\td\t1\nq\td\t0\n", "utf-8")
    with pytest.raises(CorpusError, match=r"line 2: .*already judged 1, now 0"):
        load_beir_qrels(tmp_path, "clash")


def test_small_inputs_show_no_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_corpus(quickstart_dir())
    load_beir_queries(quickstart_dir())
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
