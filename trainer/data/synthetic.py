"""Synthetic questions: sentences of a passage rewritten as questions, by rule and offline.

Real questions differ from a passage's sentences in one telling way: they leave out the answer
and ask for it. Lewis et al. (2019, arXiv 1906.04980) turn a sentence into a cloze question by
replacing an answer-like span (a date, a number, a name) with the wh-word that asks for it, and
show that such rule-made questions already teach retrieval and reading. Here they give every
passage questions to train on, also the passages that no real question was written for, so that
a model does not learn to prefer the passages that had training questions (DSI-QG, Zhuang et al.
2022; Pradeep et al. 2023 report the largest single gain in generative retrieval from training
on synthetic queries). A question is kept only when BM25 finds its own passage among the first
few (the round-trip check), so a rewrite that lost what identifies its passage is dropped.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from selfretrieval_integrations.corpus import Corpus, count_words
from selfretrieval_integrations.index import BM25Index

from .sentences import split_sentences

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
# Answer-like spans, most specific first, each with the wh-word that asks for it. A span that
# starts the sentence is asked for in place too ("Who founded ..."), which is how rule-made
# cloze questions read (Lewis et al.'s "identity" mapping).
_SPANS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            rf"\b(?:in|on|since|during) (?:(?:{_MONTHS}) )?(?:\d{{1,2}}, )?"
            r"(?:1[0-9]{3}|20[0-9]{2})\b"
        ),
        "when",
    ),
    (
        re.compile(rf"\b(?:(?:{_MONTHS}) (?:\d{{1,2}}, )?)?(?:1[0-9]{{3}}|20[0-9]{{2}})\b"),
        "what year",
    ),
    (re.compile(r"\b\d[\d,.]*(?: (?:million|billion|thousand|hundred|percent|%))?"), "how many"),
    (re.compile(r"\b[A-Z][\w'-]+(?:(?: of| the| de| and)? [A-Z][\w'-]+)*"), "what"),
)
# Capitalised only because they start a sentence: not an answer.
_STARTER_WORDS = (
    "A An The This That These Those It Its In On At As By For From To Of With After Before "
    "When While If Since But And Or He She His Her They Their We There Here However"
)
_STARTERS = frozenset(_STARTER_WORDS.split())


def sentence_questions(sentence: str) -> list[str]:
    """Every cloze question of ``sentence``: one answer-like span replaced by its wh-word."""
    sentence = sentence.strip().rstrip(".!;:")
    questions = []
    seen: set[tuple[int, int]] = set()
    for pattern, wh in _SPANS:
        for match in pattern.finditer(sentence):
            span = match.span()
            first = match.group().split()[0]
            if wh == "what" and first in _STARTERS:
                if len(match.group().split()) == 1:
                    continue
                span = (span[0] + len(first) + 1, span[1])  # "The Mongol Empire" asks for the rest
            if any(a < span[1] and span[0] < b for a, b in seen):
                continue  # inside a span a more specific pattern already asked for
            seen.add(span)
            before, after = sentence[: span[0]].rstrip(), sentence[span[1] :].lstrip()
            asked = wh if before else wh[0].upper() + wh[1:]
            question = " ".join(part for part in (before, asked) if part)
            if after:
                question += after if after[0] in ",;:)" else " " + after
            question = question.rstrip(" ,")
            questions.append(question + "?")
    return questions


def synthetic_questions(
    corpus: Corpus,
    passages: Sequence[int],
    *,
    per_passage: int,
    seed: int,
    min_words: int = 5,
    max_words: int = 50,
    round_trip_depth: int = 3,
) -> dict[int, list[str]]:
    """Up to ``per_passage`` seeded cloze questions of each passage's sentences, each kept only
    when BM25 ranks its own passage within ``round_trip_depth``."""
    drafts: dict[int, list[str]] = {}
    for p in passages:
        passage = corpus[p]
        options = [
            q
            for sentence in dict.fromkeys(split_sentences(passage.text))
            if min_words <= count_words(sentence) <= max_words
            for q in sentence_questions(sentence)
        ]
        rng = random.Random(f"{seed}\x00synthetic\x00{passage.id}")
        rng.shuffle(options)
        drafts[p] = options[: 3 * per_passage]  # spares for the ones the round trip drops
    flat = [(p, q) for p, qs in drafts.items() for q in qs]
    if not flat:
        return {p: [] for p in passages}
    found, _ = BM25Index(list(corpus)).search([q for _, q in flat], round_trip_depth)
    kept: dict[int, list[str]] = {p: [] for p in passages}
    for (p, question), ranked in zip(flat, found, strict=True):
        if p in ranked and len(kept[p]) < per_passage:
            kept[p].append(question)
    return kept
