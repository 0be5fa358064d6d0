"""Sentence splitting: the pseudo-queries of indexing examples, offline and deterministic."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selfretrieval_trainer.data import split_sentences

from selfretrieval_integrations.corpus import load_corpus, quickstart_dir


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
