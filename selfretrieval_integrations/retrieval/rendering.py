"""The one place where prompts, targets, assessment suffixes and answers become text and token ids.

The trie keys and the training targets both come from :meth:`Renderer.encode_target`, so the ids
a model is trained to emit after the prompt are, by construction, the ids the trie allows at
retrieval time. ``tests/retrieval/test_rendering.py`` proves that this also equals tokenizing the
whole example text in one piece, for several tokenizer families.

Layout of one example (the paper's template, with the title made optional)::

    Question: {query}\\n\\nRelated document title: {title}\\nRelated document content: {passage}
    \\n\\nFinal answer: {answer}<eos>

``prompt`` ends right after ``title:``; the ``target`` is `` {title}\\nRelated document content:
{passage}`` followed by the EOS id; the part up to and including ``content:`` is the *title
segment*, whose length in tokens the trie records so that decoding knows where titles end.

Query likelihood (the default self-assessment) reads the passage first and then the question::

    Passage: {title}. {passage}\\nPlease write a question based on this passage.\\nQuestion:
    {query}<eos>

The passage comes first so that its key/value cache does not depend on the query and can be
kept between queries (``context_scoring``); the wording is UPR's (Sachan et al. 2022), so a model
that was never trained on it already scores well (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from selfretrieval_integrations.errors import QueryError, TokenizationError

IGNORE_INDEX = -100
"""Label value that the loss ignores (transformers' convention)."""


@dataclass(frozen=True)
class PromptTemplate:
    """The strings around queries, titles, passages and answers.

    Stored in every artifact's manifest: a model is only ever queried with the template it was
    trained with, never a re-guessed one.
    """

    query_prefix: str = "Question: "
    title_marker: str = "\n\nRelated document title:"
    content_marker: str = "\nRelated document content:"
    untitled_marker: str = "\n\nRelated document content:"
    answer_marker: str = "\n\nFinal answer:"
    refusal: str = "cannot extract answer"
    affirmation: str = "the document answers the question"
    use_titles: bool = True
    lowercase_titles: bool = False
    passage_prefix: str = "Passage:"
    question_marker: str = "\nPlease write a question based on this passage.\nQuestion:"
    """Query likelihood reads ``{passage_prefix} {title}. {passage}{question_marker} {query}``."""

    def __post_init__(self) -> None:
        for name in (
            "title_marker",
            "content_marker",
            "untitled_marker",
            "answer_marker",
            "passage_prefix",
            "question_marker",
        ):
            value = getattr(self, name)
            if not value.strip():
                raise ValueError(f"PromptTemplate.{name} must contain visible text, got {value!r}")
        if not self.refusal.strip():
            raise ValueError("PromptTemplate.refusal must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTemplate:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    # -- text ---------------------------------------------------------------------------------

    @property
    def anchor(self) -> str:
        """The fixed text the prompt ends with; targets are tokenized after it."""
        return self.title_marker if self.use_titles else self.untitled_marker

    def normalize_query(self, query: str) -> str:
        if not isinstance(query, str):
            raise QueryError(f"query must be a string, got {type(query).__name__}")
        cleaned = query.strip()
        if not cleaned:
            raise QueryError("query is empty or whitespace: give a question or some keywords")
        return cleaned

    def prompt_text(self, query: str) -> str:
        return f"{self.query_prefix}{self.normalize_query(query)}{self.anchor}"

    def title_segment_text(self, title: str) -> str:
        if not self.use_titles:
            return ""
        title = " ".join(title.split())
        if self.lowercase_titles:
            title = title.lower()
        return (f" {title}" if title else "") + self.content_marker

    def passage_segment_text(self, text: str) -> str:
        return f" {text}"

    def target_text(self, title: str, text: str) -> str:
        return self.title_segment_text(title) + self.passage_segment_text(text)

    def question_context_text(self, title: str, text: str) -> str:
        """The passage as query likelihood reads it, up to the question marker."""
        title = " ".join(title.split()) if self.use_titles else ""
        if self.lowercase_titles:
            title = title.lower()
        passage = f"{title}. {text.strip()}" if title else text.strip()
        return f"{self.passage_prefix} {passage}{self.question_marker}"


@dataclass(frozen=True)
class EncodedTarget:
    """Token ids of one passage's target, and where its title segment ends."""

    ids: tuple[int, ...]
    title_length: int


@dataclass
class EncodedExample:
    """A training example: ``input_ids`` and ``labels`` (``IGNORE_INDEX`` on the prompt)."""

    input_ids: list[int]
    labels: list[int]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


class Renderer:
    """Turns text into token ids for one tokenizer and one template, the same way everywhere."""

    def __init__(self, tokenizer: Any, template: PromptTemplate | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = template or PromptTemplate()
        eos = tokenizer.eos_token_id
        if eos is None:
            raise TokenizationError(
                f"tokenizer {type(tokenizer).__name__} has no eos_token_id; the trie needs an "
                "end-of-passage token: set tokenizer.eos_token before building a model"
            )
        self.eos_id: int = int(eos)
        self._anchor_cache: dict[str, list[int]] = {}

    # -- low level ----------------------------------------------------------------------------

    def _encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        # split_special_tokens: a passage that contains "<|im_end|>" is text, not an EOS.
        return list(
            self.tokenizer(
                text, add_special_tokens=add_special_tokens, split_special_tokens=True
            ).input_ids
        )

    def cut_to_tokens(self, text: str, limit: int) -> tuple[str, bool]:
        """``text`` cut to its first ``limit`` tokens, and whether it was cut.

        Only a bounded head of the text is tokenized (a token rarely spans more than 64
        characters), so a megabyte of input costs no more than its first few kilobytes.
        """
        head = text[: 64 * limit]
        ids = self._encode(head)
        if len(ids) <= limit and len(head) == len(text):
            return text, False
        return self.tokenizer.decode(ids[:limit]).strip(), True

    def _encode_after(self, anchor: str, text: str) -> list[int]:
        """Ids of ``text`` as tokenized right after ``anchor`` (in context, not on its own)."""
        return self._encode_all_after(anchor, [text])[0]

    def _encode_all_after(self, anchor: str, texts: Sequence[str]) -> list[list[int]]:
        """``_encode_after`` of many texts in one tokenizer call (parallel, little overhead)."""
        anchor_ids = self._anchor_cache.get(anchor)
        if anchor_ids is None:
            anchor_ids = self._anchor_cache[anchor] = self._encode(anchor)
        if not texts:
            return []
        encoded = self.tokenizer(
            [anchor + text for text in texts], add_special_tokens=False, split_special_tokens=True
        ).input_ids
        n = len(anchor_ids)
        for ids in encoded:
            if ids[:n] != anchor_ids:
                raise TokenizationError(
                    f"tokenizer {type(self.tokenizer).__name__} merges the template marker "
                    f"{anchor!r} with the text after it, so targets cannot be tokenized in "
                    "context; choose a PromptTemplate whose markers end with a character that "
                    "never merges (such as ':')"
                )
        return [list(ids[n:]) for ids in encoded]

    # -- public encodings ---------------------------------------------------------------------

    def encode_prompt(self, query: str) -> list[int]:
        """Ids of the prompt, with the tokenizer's BOS if it adds one."""
        return self._encode(self.template.prompt_text(query), add_special_tokens=True)

    def encode_target(self, title: str, text: str) -> EncodedTarget:
        """Ids the model must produce after the prompt for this passage: the trie key.

        Tokenized in one piece after the prompt's anchor, then closed with the EOS id (an id,
        never text, so a passage can not be a token-prefix of another).
        """
        return self.encode_targets([(title, text)])[0]

    def encode_targets(self, passages: Sequence[tuple[str, str]]) -> list[EncodedTarget]:
        """``encode_target`` of many ``(title, text)`` pairs, tokenized in batches."""
        template = self.template
        anchor = template.anchor
        whole = self._encode_all_after(anchor, [template.target_text(t, x) for t, x in passages])
        # Passages of one article share a title: each distinct title is tokenized once.
        title_texts = sorted({template.title_segment_text(t) for t, _ in passages} - {""})
        titles = dict(zip(title_texts, self._encode_all_after(anchor, title_texts), strict=True))
        targets = []
        for (title, _), ids in zip(passages, whole, strict=True):
            title_ids = titles.get(template.title_segment_text(title), [])
            # The title segment ends with ':' and the passage starts with a space, so the
            # tokens of the segment are a prefix of the whole target's tokens.
            if ids[: len(title_ids)] != title_ids:
                raise TokenizationError(
                    f"tokenizer {type(self.tokenizer).__name__} merges the content marker "
                    f"{template.content_marker!r} with the passage text"
                )
            targets.append(EncodedTarget(ids=(*ids, self.eos_id), title_length=len(title_ids)))
        return targets

    def answer_ids(self, answer: str) -> list[int]:
        """Ids of `` {answer}<eos>`` as tokenized after the answer marker."""
        return [*self._encode_after(self.template.answer_marker, f" {answer.strip()}"), self.eos_id]

    def assessment_context_ids(self, title: str, text: str) -> list[int]:
        """Ids after the prompt up to and including the answer marker, for a full passage."""
        template = self.template
        return self._encode_after(
            template.anchor, template.target_text(title, text) + template.answer_marker
        )

    def refusal_ids(self) -> list[int]:
        return self.answer_ids(self.template.refusal)

    def question_context_ids(self, title: str, text: str) -> list[int]:
        """Ids of a passage up to the question marker (with the tokenizer's BOS, if any): the
        context of query likelihood, the same for every query."""
        return self._encode(
            self.template.question_context_text(title, text), add_special_tokens=True
        )

    def question_ids(self, query: str) -> list[int]:
        """Ids of `` {query}`` as tokenized after the question marker (no EOS)."""
        query = self.template.normalize_query(query)
        return self._encode_after(self.template.question_marker, f" {query}")

    # -- training examples ----------------------------------------------------------------------

    def example(
        self,
        query: str,
        target: EncodedTarget,
        *,
        prefix_length: int | None = None,
    ) -> EncodedExample:
        """A retrieval example: prompt, then the target (or its first ``prefix_length`` ids)."""
        prompt = self.encode_prompt(query)
        ids = list(target.ids if prefix_length is None else target.ids[:prefix_length])
        return EncodedExample(input_ids=prompt + ids, labels=[IGNORE_INDEX] * len(prompt) + ids)

    def question_example(self, query: str, title: str, text: str) -> EncodedExample:
        """A query-likelihood example: the passage, then the question (and EOS) it answers, with
        the loss on the question only."""
        context = self.question_context_ids(title, text)
        question = [*self.question_ids(query), self.eos_id]
        return EncodedExample(
            input_ids=context + question, labels=[IGNORE_INDEX] * len(context) + question
        )

    def assessment_example(
        self, query: str, title: str, text: str, answer: str, *, train_passage: bool = False
    ) -> EncodedExample:
        """A self-assessment example: the loss is on the answer (or refusal) only by default."""
        prompt = self.encode_prompt(query)
        context = self.assessment_context_ids(title, text)
        answer_ids = self.answer_ids(answer)
        context_labels = context if train_passage else [IGNORE_INDEX] * len(context)
        return EncodedExample(
            input_ids=prompt + context + answer_ids,
            labels=[IGNORE_INDEX] * len(prompt) + context_labels + answer_ids,
        )
