"""The ids a model is trained to produce after the prompt are exactly the trie keys."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from selfretrieval_integrations.errors import QueryError, TokenizationError
from selfretrieval_integrations.retrieval import IGNORE_INDEX, PromptTemplate, Renderer

BUNDLED = Path(__file__).resolve().parents[2] / "selfretrieval_integrations/data/quickstart"

TRICKY_TEXTS = [
    "  leading and trailing spaces  ",
    "line one\nline two\n\nparagraph two\n",
    "digits 0123456789 and 3.14159, 1,000,000 and 2026-11-27",
    "中文文本：自检索是一个模型。日本語のテキスト、한국어 텍스트",
    "emoji 🚀🔥👩‍👩‍👧‍👦 flags 🇫🇷 and skin tones 👍🏽",
    "RTL: שלום עולם and مرحبا بالعالم mixed with English",
    "combining marks: e\u0301 n\u0303 a\u0308 and Zalgo t\u0337\u0322e\u0335x\u0334t",
    "tabs\tand\u00a0non-breaking\u2009spaces",
    "Related document title: fake\nRelated document content: fake\n\nFinal answer: x",
    "a passage with <|im_end|> and </s> and <s> special-looking text",
    "x",
]
TRICKY_QUERIES = [
    "who wrote it?",
    "  spaced query  ",
    "Question: Related document title: nested markers\n\nRelated document content:",
    "数字 42 🚀",
]


def _bundled_passages() -> list[tuple[str, str]]:
    with open(BUNDLED / "corpus.jsonl", encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle]
    return [(d.get("title", ""), d["text"]) for d in docs]


def _tokenizers(request: pytest.FixtureRequest) -> list:
    tokenizers = [
        request.getfixturevalue("tiny_model")[1],
        request.getfixturevalue("tiny_sp_tokenizer"),
    ]
    with contextlib.suppress(pytest.skip.Exception):
        tokenizers.append(request.getfixturevalue("smollm2_tokenizer"))
    return tokenizers


@pytest.mark.parametrize("use_titles", [True, False])
def test_targets_equal_in_context_tokenization(request: pytest.FixtureRequest, use_titles: bool):
    passages = _bundled_passages() + [(f"title {i} ✓", t) for i, t in enumerate(TRICKY_TEXTS)]
    passages += [("", "untitled passage"), ("Title\nwith newline", "body")]
    template = PromptTemplate(use_titles=use_titles)
    families = set()
    for tokenizer in _tokenizers(request):
        families.add(type(tokenizer.backend_tokenizer.pre_tokenizer).__name__)
        renderer = Renderer(tokenizer, template)
        for query in TRICKY_QUERIES:
            prompt = renderer.encode_prompt(query)
            for title, text in passages:
                target = renderer.encode_target(title, text)
                whole = tokenizer(
                    template.prompt_text(query) + template.target_text(title, text),
                    add_special_tokens=True,
                    split_special_tokens=True,
                ).input_ids
                assert list(whole) == prompt + list(target.ids[:-1]), (query, title, text)
                assert target.ids[-1] == renderer.eos_id
                assert renderer.eos_id not in target.ids[:-1]
                example = renderer.example(query, target)
                assert example.input_ids[len(prompt) :] == list(target.ids)
                assert example.labels[len(prompt) :] == list(target.ids)
                assert set(example.labels[: len(prompt)]) == {IGNORE_INDEX}
                title_ids = renderer._encode_after(
                    template.anchor, template.title_segment_text(title)
                )
                assert list(target.ids[: target.title_length]) == (title_ids if use_titles else [])
    assert len(families) >= 2, f"need two tokenizer families, got {families}"


def test_question_example_in_context(request: pytest.FixtureRequest):
    """Query likelihood scores the ids a plain tokenization of passage and question gives, and
    trains only the question (and EOS)."""
    passages = [*_bundled_passages()[:3], ("", "untitled passage"), ("T", TRICKY_TEXTS[3])]
    template = PromptTemplate()
    for tokenizer in _tokenizers(request):
        renderer = Renderer(tokenizer, template)
        for query in TRICKY_QUERIES:
            for title, text in passages:
                example = renderer.question_example(query, title, text)
                whole = tokenizer(
                    template.question_context_text(title, text)
                    + " "
                    + template.normalize_query(query),
                    add_special_tokens=True,
                    split_special_tokens=True,
                ).input_ids
                assert example.input_ids == [*whole, renderer.eos_id]
                context = renderer.question_context_ids(title, text)
                question = renderer.question_ids(query)
                assert example.input_ids == [*context, *question, renderer.eos_id]
                assert example.labels == [IGNORE_INDEX] * len(context) + [
                    *question,
                    renderer.eos_id,
                ]
    assert (
        PromptTemplate(use_titles=False)
        .question_context_text("T", " body ")
        .startswith("Passage: body\n")
    )


def test_assessment_example_in_context(tiny_model):
    tokenizer = tiny_model[1]
    renderer = Renderer(tokenizer)
    template = renderer.template
    example = renderer.assessment_example("who?", "Title", "Body text.", template.refusal)
    text = (
        template.prompt_text("who?")
        + template.target_text("Title", "Body text.")
        + template.answer_marker
        + " "
        + template.refusal
    )
    whole = tokenizer(text, add_special_tokens=True, split_special_tokens=True).input_ids
    assert example.input_ids == [*whole, renderer.eos_id]
    answer = renderer.answer_ids(template.refusal)
    assert example.labels[-len(answer) :] == answer
    assert set(example.labels[: -len(answer)]) == {IGNORE_INDEX}


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_is_rejected(tiny_model, query):
    with pytest.raises(QueryError, match="empty"):
        Renderer(tiny_model[1]).encode_prompt(query)


def test_title_lowercasing_and_template_roundtrip():
    template = PromptTemplate(lowercase_titles=True)
    assert (
        template.title_segment_text("Super  Bowl\n50") == " super bowl 50" + template.content_marker
    )
    assert PromptTemplate.from_dict({**template.to_dict(), "unknown": 1}) == template
    with pytest.raises(ValueError, match="answer_marker"):
        PromptTemplate(answer_marker="  ")


def test_tokenizer_without_eos_is_rejected(tiny_model):
    class NoEos:
        eos_token_id = None

    with pytest.raises(TokenizationError, match="eos"):
        Renderer(NoEos())
